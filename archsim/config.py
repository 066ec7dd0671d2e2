"""ArchSpec: the accelerator, loaded from YAML and validated by pydantic
before anything runs. Every user mistake becomes an ArchsimError naming the
file and the dotted field (e.g. `buffers.weight.capacity_bytes`)."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError

from .errors import ArchsimError


def _arch_dir() -> Path:
    # Installed (pip install .): package data archsim/arch_configs. Checkout or
    # editable install: arch_configs/ at the top of the repository.
    installed = Path(__file__).resolve().parent / "arch_configs"
    return installed if installed.is_dir() else Path(__file__).resolve().parent.parent / "arch_configs"


ARCH_DIR = _arch_dir()
DEFAULT_ARCH = "sa32_ws"


class _Strict(BaseModel):
    # Unknown keys are errors: a typo in a YAML must never be silently ignored.
    model_config = ConfigDict(extra="forbid")


class DRAMSpec(_Strict):
    kind: str = "dram"
    type: str = Field("lpddr4", description="row `dram_<type>` of the energy table")
    bandwidth_bytes_per_cycle: float = Field(gt=0)
    latency_cycles: int = Field(100, ge=0)
    energy_pj_per_bit: Optional[float] = Field(None, gt=0, description="overrides the table")
    source: str = ""


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


class CodebookSpec(_Strict):
    kind: str = "codebook"
    entries: PositiveInt
    width_bits: PositiveInt = Field(description="bits per entry (one codeword)")
    lookups_per_cycle: PositiveInt
    reload_cycles: int = Field(0, ge=0, description="fixed cost per codebook (re)load")
    source: str = ""


class DecoderSpec(_Strict):
    kind: str = "vq_decoder"
    vectors_per_cycle: PositiveInt
    latency_cycles: int = Field(1, ge=0)
    source: str = ""


class PEArraySpec(_Strict):
    kind: str = "systolic"
    rows: PositiveInt
    cols: PositiveInt
    dataflow: Literal["ws", "os", "is"] = "ws"
    weight_bits: PositiveInt = 8
    act_bits: PositiveInt = 8
    acc_bits: PositiveInt = 32
    psum_overflow: Literal["spill", "tile_outputs"] = Field(
        "spill", description="ws/is, when a column fold's partial sums exceed the output buffer: "
        "spill them to DRAM (SCALE-Sim's loop order) or tile the outputs and refill the array per block")
    source: str = ""


class EnergySpec(_Strict):
    table: str = Field("default", description="'default' or a path to a CSV like archsim/data/energy_45nm.csv")
    node_nm: PositiveInt = 45


class ArchSpec(_Strict):
    name: str
    description: str = ""
    source: str = ""
    clock_mhz: float = Field(1000.0, gt=0)
    dram: DRAMSpec
    buffers: BuffersSpec
    codebook: Optional[CodebookSpec] = None
    decoder: Optional[DecoderSpec] = None
    pe_array: PEArraySpec
    energy: EnergySpec = EnergySpec()
    # where it was loaded from, for error messages; not a YAML key
    path: Optional[str] = Field(None, exclude=True)

    def with_overrides(self, overrides: list[str]) -> "ArchSpec":
        return load_arch_dict(self.model_dump(), overrides, source=self.path or self.name)


def _set_dotted(d: dict, dotted: str, value, source: str):
    keys = dotted.split(".")
    cur = d
    for i, k in enumerate(keys[:-1]):
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


def parse_override(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise ArchsimError(f"override {text!r} must look like path.to.field=value", field="--set")
    key, raw = text.split("=", 1)
    # YAML scalars: 32 -> int, 1.5 -> float, ws -> str, true -> bool
    return key.strip(), yaml.safe_load(raw)


def load_arch_dict(data: dict, overrides: list[str] | None = None, source: str = "<dict>") -> ArchSpec:
    data = copy.deepcopy(data)
    data.pop("path", None)
    for ov in overrides or []:
        key, value = parse_override(ov)
        _set_dotted(data, key, value, source)
    try:
        spec = ArchSpec.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        raise ArchsimError(msg, file=source, field=field) from None
    for ov in overrides or []:
        key, _ = parse_override(ov)
        _note_override(spec, key, ov.split("=", 1)[1])
    spec.path = source
    return spec


def resolve_arch_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.exists():
        return p
    cand = ARCH_DIR / f"{name_or_path}.yaml"
    if cand.exists():
        return cand
    known = ", ".join(sorted(q.stem for q in ARCH_DIR.glob("*.yaml")))
    raise ArchsimError(f"no such architecture file (built-in: {known})", file=str(name_or_path))


def arch_dict_from_scalesim_cfg(path: Path) -> dict:
    """A SCALE-Sim .cfg as an archsim architecture: array, dataflow and SRAM
    sizes from the file; DRAM from the built-in default (SCALE-Sim's CALC mode
    has no DRAM channel to copy; USER mode's Bandwidth, in words per cycle,
    becomes bytes per cycle at 8-bit words)."""
    from workloads.scalesim_import import read_scalesim_cfg

    cfg = read_scalesim_cfg(path)
    data = yaml.safe_load(resolve_arch_path(DEFAULT_ARCH).read_text())
    data["name"] = cfg.run_name
    data["description"] = f"imported from SCALE-Sim config {path.name}"
    data["source"] = f"SCALE-Sim .cfg {path}"
    data["pe_array"].update(rows=cfg.rows, cols=cfg.cols, dataflow=cfg.dataflow)
    for buf, kb in (("input", cfg.ifmap_sram_kb), ("weight", cfg.filter_sram_kb), ("output", cfg.ofmap_sram_kb)):
        data["buffers"][buf]["capacity_bytes"] = kb * 1024
        data["buffers"][buf]["source"] = f"{path.name}"
    if cfg.interface_bandwidth == "USER" and cfg.bandwidth:
        data["dram"]["bandwidth_bytes_per_cycle"] = cfg.bandwidth
        data["dram"]["source"] = f"{path.name} Bandwidth (words/cycle, 8-bit words)"
    return data


def load_arch(name_or_path: str | Path = DEFAULT_ARCH, overrides: list[str] | None = None) -> ArchSpec:
    """Load an architecture YAML (a path, or the name of a built-in in
    arch_configs/), or a SCALE-Sim .cfg file."""
    path = resolve_arch_path(name_or_path)
    if path.suffix == ".cfg":
        return load_arch_dict(arch_dict_from_scalesim_cfg(path), overrides, source=str(path))
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "YAML"
        raise ArchsimError(f"malformed YAML ({getattr(e, 'problem', e)})", file=str(path), field=where) from None
    if not isinstance(data, dict):
        raise ArchsimError("top level must be a mapping", file=str(path), field="<root>")
    return load_arch_dict(data, overrides, source=str(path))
