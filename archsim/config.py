"""ArchSpec: the accelerator, loaded from YAML and validated by pydantic
before anything runs. Every user mistake becomes an ArchsimError naming the
file and the dotted field (e.g. `buffers.weight.capacity_bytes`)."""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import (BaseModel, Field, PositiveInt, SerializeAsAny, ValidationError, field_validator,
                      model_validator)

from .ir.errors import ArchsimError
from .hw.pe_kind import ComponentSpec, PESpec


def _arch_dir() -> Path:
    # Installed (pip install .): package data archsim/arch_configs. Checkout or
    # editable install: arch_configs/ at the top of the repository.
    installed = Path(__file__).resolve().parent / "arch_configs"
    return installed if installed.is_dir() else Path(__file__).resolve().parent.parent / "arch_configs"


ARCH_DIR = _arch_dir()
DEFAULT_ARCH = "sa32_ws"


# Unknown keys are errors: a typo in a YAML must never be silently ignored;
# NaN and infinity are never a size, a rate or a clock (ComponentSpec's config).
_Strict = ComponentSpec


class DRAMSpec(_Strict):
    kind: str = "dram"
    type: str = Field("lpddr4", description="row `dram_<type>` of the energy table")
    bandwidth_bytes_per_cycle: float = Field(gt=0)
    latency_cycles: int = Field(100, ge=0)
    energy_pj_per_bit: Optional[float] = Field(None, gt=0, description="overrides the table")
    source: str = ""


def _dram_spec(value, clock_mhz: float):
    """The `dram:` block is a plug-in: `kind: dram` (default) is DRAMSpec,
    another kind brings its own Spec (e.g. banked_dram). A kind that maps
    DRAM clocks to accelerator cycles (`bind_clock`) gets the architecture's
    clock."""
    spec = _plugin_spec("dram", "dram", DRAMSpec, "dram", value)
    if hasattr(spec, "bind_clock"):
        spec.bind_clock(clock_mhz)
    return spec


class BufferSpec(_Strict):
    kind: str = "sram"
    capacity_bytes: PositiveInt
    word_bits: PositiveInt = 64
    ports: PositiveInt = 2
    double_buffered: bool = True
    source: str = ""

    @property
    def tile_limit_bytes(self) -> int:
        """The largest tile: half the buffer when double buffered."""
        return self.capacity_bytes // 2 if self.double_buffered else self.capacity_bytes


class BuffersSpec(_Strict):
    weight: BufferSpec
    input: BufferSpec
    output: BufferSpec


# What a shared memory level can hold. Private buffers hold tiles of one
# operand each (`buffers:`); a shared level holds whole tensors, chosen by
# the allocator (archsim.allocator): a layer's weights, activation tensors
# between their producer and last consumer, spilled partial sums, side data,
# an LLM's KV cache (kv: persistent across decode steps).
TENSOR_ROLES = ("weights", "activations", "psums", "side", "kv")
PRIVATE_BUFFERS = ("weight", "input", "output")


class MemoryLevelSpec(_Strict):
    """A shared on-chip level between DRAM and the private buffers (e.g. a
    global buffer). Transfers from it to the levels below share its port
    bandwidth; tensors the allocator keeps in it are read from it instead of
    DRAM."""
    name: str = Field(min_length=1)
    kind: str = "sram"
    capacity_bytes: PositiveInt
    word_bits: PositiveInt = 64
    bytes_per_cycle: float = Field(gt=0, description="port bandwidth to the levels below it")
    latency_cycles: int = Field(2, ge=0, description="cycles from a read request to its data")
    parent: str = Field("dram", description="the level above it: 'dram' or another level's name")
    serves: list[Literal["weights", "activations", "psums", "side", "kv"]] = Field(min_length=1)
    quotas: dict[Literal["weights", "activations", "psums", "side", "kv"], float] = Field(
        default_factory=dict, description="share of the capacity each role may hold (each 0..1, sum <= 1)")
    source: str = ""


class MemorySpec(_Strict):
    levels: list[MemoryLevelSpec] = Field(default_factory=list, description="shared levels, outermost first")
    retain_activations: bool = Field(False, description="keep a layer's output on chip for its consumers "
                                     "when a level serving activations has room for its whole lifetime")
    pin_weights: bool = Field(False, description="keep weights and side data in a level serving them across "
                              "the whole run (batches after the first read them from chip)")


class VectorUnitSpec(_Strict):
    """Runs the non-GEMM operators (elementwise, activations, pooling, norms,
    softmax): `lanes` elements per cycle for an operator of cost 1; an
    operator class costs `op_cycles[class]` lane-cycles per element (per
    element of its window for pooling and norms)."""
    kind: str = "vector"
    lanes: PositiveInt
    op_cycles: dict[str, float] = Field(default_factory=dict, description="lane-cycles per element, per operator "
                                        "class; classes not listed cost 1")
    fused: list[str] = Field(default_factory=list, description="operator classes fused into the PE array's "
                             "write-back when they directly follow a GEMM (no cycles, priced per element)")
    buffer_bytes: PositiveInt = Field(8192, description="bytes of one streamed tile of an operand")
    source: str = ""


class CodebookSpec(_Strict):
    kind: str = "codebook"
    entries: PositiveInt
    width_bits: PositiveInt = Field(description="bits per entry (one codeword)")
    lookups_per_cycle: PositiveInt
    reload_cycles: int = Field(0, ge=0, description="fixed cost per codebook (re)load")
    overflow: Literal["refuse", "stream", "cache"] = Field(
        "refuse", description="a layer codebook of more than `entries` codewords: refused, streamed through "
                              "the buffer for every decode tile, or cached (archsim/hw/codebook.py)")
    source: str = ""


class DecoderSpec(_Strict):
    """Base of the decoder kinds' blocks (archsim/hw/decoder.py)."""
    kind: str = "vq_decoder"
    vectors_per_cycle: PositiveInt
    latency_cycles: int = Field(1, ge=0)
    source: str = ""


class _NestedSpecError(Exception):
    """A plug-in block failed its own schema; load_arch_dict names the field."""

    def __init__(self, block: str, error: ValidationError, spec_cls: type):
        self.block, self.error, self.spec_cls = block, error, spec_cls


def _plugin_spec(role: str, block: str, base: type, default_kind: str, value):
    """Validate a plug-in block against the Spec of the class its `kind` names."""
    if isinstance(value, base) or not isinstance(value, dict):
        return value  # an instance is already valid; pydantic reports a non-mapping
    from .hw.registry import lookup

    kind = value.get("kind", default_kind)
    cls = lookup(role, kind, field=f"{block}.kind")
    spec_cls = getattr(cls, "Spec", base)
    try:
        return spec_cls.model_validate(value)
    except ValidationError as e:
        raise _NestedSpecError(block, e, spec_cls) from None


class EnergySpec(_Strict):
    table: str = Field("default", description="'default' or a path to a CSV like archsim/data/energy_45nm.csv")
    node_nm: PositiveInt = 45


class ArchSpec(_Strict):
    name: str
    description: str = ""
    source: str = ""
    clock_mhz: float = Field(1000.0, gt=0)
    dram: SerializeAsAny[ComponentSpec]  # DRAMSpec, or the Spec of the class `kind` names
    buffers: BuffersSpec
    memory: MemorySpec = MemorySpec()
    vector_unit: Optional[VectorUnitSpec] = None
    codebook: Optional[CodebookSpec] = None
    # plug-in blocks: the class named by `kind` brings its own schema
    decoder: Optional[SerializeAsAny[DecoderSpec]] = None
    pe_array: SerializeAsAny[PESpec]
    energy: EnergySpec = EnergySpec()
    # where it was loaded from, for error messages; not a YAML key
    path: Optional[str] = Field(None, exclude=True)

    @field_validator("pe_array", mode="before")
    @classmethod
    def _pe_kind(cls, v):
        return _plugin_spec("pe_array", "pe_array", PESpec, "systolic", v)

    @field_validator("dram", mode="before")
    @classmethod
    def _dram_kind(cls, v, info):
        return _dram_spec(v, info.data.get("clock_mhz", 1000.0))

    @field_validator("decoder", mode="before")
    @classmethod
    def _decoder_kind(cls, v):
        return _plugin_spec("decoder", "decoder", DecoderSpec, "vq_decoder", v)

    @model_validator(mode="after")
    def _memory_hierarchy(self):
        _check_memory(self.memory)
        return self

    def level(self, name: str) -> MemoryLevelSpec:
        return next(lv for lv in self.memory.levels if lv.name == name)

    def with_overrides(self, overrides: list[str]) -> "ArchSpec":
        return load_arch_dict(self.model_dump(), overrides, source=self.path or self.name)


def _check_memory(mem: MemorySpec):
    """Parents exist and form a tree rooted at DRAM; names are unique; quotas
    add up to at most the capacity; a requested behaviour has a level that
    serves it. Each failure names its field."""
    names = [lv.name for lv in mem.levels]
    for i, lv in enumerate(mem.levels):
        if lv.name in PRIVATE_BUFFERS + ("dram", "codebook") or names.index(lv.name) != i:
            raise ArchsimError(f"level name {lv.name!r} is taken (by another level, a private buffer or dram)",
                               field=f"memory.levels.{i}.name")
        if lv.parent != "dram" and lv.parent not in names:
            raise ArchsimError(f"parent {lv.parent!r} is no level (known: dram, {', '.join(names)})",
                               field=f"memory.levels.{i}.parent")
        for role, q in lv.quotas.items():
            if not 0 <= q <= 1:
                raise ArchsimError(f"quota {q} is not a share between 0 and 1", field=f"memory.levels.{i}.quotas.{role}")
            if role not in lv.serves:
                raise ArchsimError(f"quota for {role!r}, which the level does not serve",
                                   field=f"memory.levels.{i}.quotas.{role}")
        if sum(lv.quotas.values()) > 1 + 1e-9:
            raise ArchsimError(f"quotas add up to {sum(lv.quotas.values()):g}, over 1", field=f"memory.levels.{i}.quotas")
    parent = {lv.name: lv.parent for lv in mem.levels}
    for i, lv in enumerate(mem.levels):
        seen, cur = {lv.name}, lv.parent
        while cur != "dram":
            if cur in seen:
                raise ArchsimError(f"parents form a cycle through {cur!r}", field=f"memory.levels.{i}.parent")
            seen.add(cur)
            cur = parent[cur]
    served = {role for lv in mem.levels for role in lv.serves}
    if mem.retain_activations and "activations" not in served:
        raise ArchsimError("no memory level serves activations", field="memory.retain_activations")
    if mem.pin_weights and "weights" not in served:
        raise ArchsimError("no memory level serves weights", field="memory.pin_weights")


def _set_dotted(d: dict, dotted: str, value, source: str):
    keys = dotted.split(".")
    cur = d
    for i, k in enumerate(keys[:-1]):
        if isinstance(cur, list) and k.isdigit() and int(k) < len(cur):  # e.g. memory.levels.0.capacity_bytes
            cur = cur[int(k)]
            continue
        if not isinstance(cur, dict) or k not in cur or cur[k] is None:
            if isinstance(cur, dict) and cur.get(k) is None and i < len(keys) - 1:
                cur[k] = {}
            else:
                raise ArchsimError("no such field to override", file=source, field=".".join(keys[: i + 1]))
        cur = cur[k]
    if not isinstance(cur, dict):
        raise ArchsimError("no such field to override", file=source, field=dotted)
    cur[keys[-1]] = value


def _note_override(spec: BaseModel, dotted: str, raw: str):
    """Say in the `source` of the block an override changed (the nearest
    enclosing block that has a `source` field, at worst the architecture's)
    that the value came from --set, e.g. 'ArrayHeight 32; rows=64 from --set'."""
    keys = dotted.split(".")
    if keys[-1] == "source":
        return
    blocks = [spec]
    for k in keys[:-1]:
        blocks.append(getattr(blocks[-1], k, None))
    for depth in range(len(blocks) - 1, -1, -1):
        b = blocks[depth]
        if isinstance(b, BaseModel) and "source" in type(b).model_fields:
            note = f"{'.'.join(keys[depth:])}={raw.strip()} from --set"
            b.source = f"{b.source}; {note}" if b.source else note
            return


def parse_override(text: str, flag: str = "--set") -> tuple[str, object]:
    if not isinstance(text, str) or "=" not in text:
        raise ArchsimError(f"override {text!r} must look like path.to.field=value", field=flag)
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ArchsimError(f"override {text!r} must look like path.to.field=value", field=flag)
    # YAML scalars: 32 -> int, 1.5 -> float, ws -> str, true -> bool
    try:
        return key, yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ArchsimError(f"value is not valid YAML ({getattr(e, 'problem', None) or e})",
                           file=f"{flag} {text}", field=key) from None


def _schema_fields(loc: tuple) -> list[str]:
    """Field names of the schema model at `loc` (a pydantic error location
    minus its last item); [] when the path leads to no model. Unions (e.g. a
    block chosen by `kind`) give the fields of all their models."""
    import typing

    from pydantic import BaseModel as _BM

    def models(ann):
        if isinstance(ann, type) and issubclass(ann, _BM):
            return [ann]
        out = []
        for a in typing.get_args(ann):
            out += models(a)
        return out

    current = [ArchSpec]
    for part in loc:
        nxt = []
        for m in current:
            f = m.model_fields.get(str(part))
            if f is not None:
                nxt += models(f.annotation)
        current = nxt or current  # not a field (e.g. a union's tag in the location): same models
    names = []
    for m in current:
        names += [n for n in m.model_fields if n != "path" and n not in names]
    return names


def _did_you_mean(loc: tuple, model=None) -> str:
    import difflib

    names = list(model.model_fields) if model is not None else _schema_fields(tuple(loc[:-1]))
    near = difflib.get_close_matches(str(loc[-1]), names, n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


# No size, rate or clock comes near this; a larger number (YAML reads 1e400 as
# an int) would overflow the float arithmetic of tiling and energy.
MAX_NUMBER = 1e15


def _numbers(d, prefix=""):
    """(dotted field, value) of every int or float in a nested mapping."""
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _numbers(v, f"{prefix}{k}.")
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        yield prefix[:-1], d


def load_arch_dict(data: dict, overrides: list[str] | None = None, source: str = "<dict>",
                   flag: str = "--set") -> ArchSpec:
    """Validate `data` after applying `overrides` ('path.to.field=value').
    An error in a field that an override set names the override (`flag`
    and its text) instead of the file."""
    data = copy.deepcopy(data)
    data.pop("path", None)
    applied = []  # (dotted key, override text), in order
    for ov in overrides or []:
        key, value = parse_override(ov, flag)
        _set_dotted(data, key, value, f"{flag} {ov}")
        applied.append((key, ov))
    for field, value in _numbers(data):
        # (NaN and infinity get the schema's own message)
        if (isinstance(value, int) or math.isfinite(value)) and abs(value) > MAX_NUMBER:
            where = next((f"{flag} {ov}" for key, ov in reversed(applied) if key == field), source)
            shown = f"a {len(str(abs(value)))}-digit number" if isinstance(value, int) else f"{value:.3g}"
            raise ArchsimError(f"{shown} is too large (at most {MAX_NUMBER:.0e})", file=where, field=field)
    prefix, fields_of = (), None
    try:
        spec = ArchSpec.model_validate(data)
    except ArchsimError as e:
        raise ArchsimError(e.message, file=e.file or source, field=e.field) from None
    except (ValidationError, _NestedSpecError) as e:
        if isinstance(e, _NestedSpecError):  # a plug-in block: its own class's schema
            prefix, fields_of, e = (e.block,), e.spec_cls, e.error
        errors = e.errors()
        # an unknown key first: a misspelled required key also shows up as
        # "Field required" for the right name, which hides the typo
        err = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])
        loc = prefix + tuple(err["loc"])
        field = ".".join(str(p) for p in loc)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + _did_you_mean(loc, fields_of if len(loc) == 2 else None)
        where = source
        for key, ov in reversed(applied):
            if field == key or field.startswith(key + ".") or key.startswith(field + "."):
                where = f"{flag} {ov}"
                break
        raise ArchsimError(msg, file=where, field=field) from None
    for ov in overrides or []:
        key, _ = parse_override(ov, flag)
        _note_override(spec, key, ov.split("=", 1)[1])
    spec.path = source
    return spec


def resolve_arch_path(name_or_path: str | Path) -> Path:
    try:
        p = Path(name_or_path)
        if p.is_dir():
            raise ArchsimError("is a directory, expected an architecture YAML file", file=str(name_or_path))
        if p.exists():
            return p
        cand = ARCH_DIR / f"{name_or_path}.yaml"
        if cand.is_file():
            return cand
    except (OSError, ValueError) as e:  # a name the OS cannot take (NUL byte, too long)
        raise ArchsimError(f"not a usable file name ({e})", file=repr(str(name_or_path))) from None
    known = ", ".join(sorted(q.stem for q in ARCH_DIR.glob("*.yaml")))
    raise ArchsimError(f"no such architecture file (built-in: {known})", file=str(name_or_path))


def arch_dict_from_scalesim_cfg(path: Path) -> dict:
    """A SCALE-Sim .cfg as an archsim architecture: array, dataflow and SRAM
    sizes from the file; DRAM from the built-in default (SCALE-Sim's CALC mode
    has no DRAM channel to copy; USER mode's Bandwidth, in words per cycle,
    becomes bytes per cycle at 8-bit words)."""
    from .ir.scalesim_cfg import read_scalesim_cfg

    cfg = read_scalesim_cfg(path)
    data = yaml.safe_load(resolve_arch_path(DEFAULT_ARCH).read_text())
    data["name"] = cfg.run_name
    data["description"] = f"imported from SCALE-Sim config {path.name}"
    data["source"] = f"SCALE-Sim .cfg {path}"
    # SCALE-Sim's own loop order: partial sums spill (the fidelity comparison)
    data["pe_array"].update(rows=cfg.rows, cols=cfg.cols, dataflow=cfg.dataflow, psum_overflow="spill")
    if cfg.sparsity_support and cfg.dataflow == "ws":
        # SCALE-Sim v3 runs each layer at its topology's N:M on a weight-stationary array
        data["pe_array"].update(kind="nm_systolic", any_pattern=True)
    for buf, kb in (("input", cfg.ifmap_sram_kb), ("weight", cfg.filter_sram_kb), ("output", cfg.ofmap_sram_kb)):
        data["buffers"][buf]["capacity_bytes"] = kb * 1024
        data["buffers"][buf]["source"] = f"{path.name}"
    if cfg.interface_bandwidth == "USER" and cfg.bandwidth:
        data["dram"]["bandwidth_bytes_per_cycle"] = cfg.bandwidth
        data["dram"]["source"] = f"{path.name} Bandwidth (words/cycle, 8-bit words)"
    return data


def load_arch(name_or_path: str | Path = DEFAULT_ARCH, overrides: list[str] | None = None,
              flag: str = "--set") -> ArchSpec:
    """Load an architecture YAML (a path, or the name of a built-in in
    arch_configs/), or a SCALE-Sim .cfg file. `flag` names where the
    overrides came from in error messages (--set, --grid)."""
    path = resolve_arch_path(name_or_path)
    if path.suffix == ".cfg":
        return load_arch_dict(arch_dict_from_scalesim_cfg(path), overrides, source=str(path), flag=flag)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ArchsimError(f"cannot read architecture file: {e.strerror}", file=str(path)) from None
    except UnicodeDecodeError as e:
        raise ArchsimError(f"not UTF-8 text (byte {e.start})", file=str(path), field="<encoding>") from None
    except RecursionError:
        raise ArchsimError("YAML nested too deeply", file=str(path), field="YAML") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "YAML"
        raise ArchsimError(f"malformed YAML ({getattr(e, 'problem', e)})", file=str(path), field=where) from None
    if not isinstance(data, dict):
        raise ArchsimError("top level must be a mapping", file=str(path), field="<root>")
    return load_arch_dict(data, overrides, source=str(path), flag=flag)
