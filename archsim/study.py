"""Study files: a design-space exploration as a YAML, schema-checked like an
architecture (unknown keys are errors, every mistake names file and field).

    name: r18_arrays
    workload: {model: resnet18}            # or {topology: file.csv}, {onnx: model.onnx}, or {checkpoint: fmnist_cnn}
                                           # (trained, with its test set; finetune_steps: 200
                                           # fine-tunes each compression setting before scoring it)
    archs: [sa32_ws]                       # base architectures
    space:                                 # any architecture field, by its dotted path
      pe_array.rows: {choices: [16, 32, 64]}
      buffers.weight.capacity_bytes: {log_range: [16384, 262144], integer: true}
      dram.bandwidth_bytes_per_cycle: {range: [6.4, 51.2]}
    compression:                           # optional: method and its parameters
      method: {choices: [none, vq, mvq]}
      params:
        vq: {k: {choices: [64, 256]}, d: {choices: [4, 8]}}
        mvq: {n: {choices: [1, 2]}, m: {choices: [4]}, k: {choices: [256]}, d: {choices: [16]}}
    objectives: [latency, energy]          # latency, energy, edp, area, accuracy
    constraints: ["area <= 2.0", "accuracy >= fp32 - 1"]
    sampler: auto                          # auto: NSGA-II for several objectives, TPE for one; grid; random
    trials: 100

An LLM study (archsim.llm.simulate_llm: prefill, then decode with a KV
cache; hardware only, formats built from their names) names an LLM preset
and the same numbers as `archsim run --model NAME --prompt --generate
--batch --kv --weights`, and searches weight and KV-cache formats by name:

    workload: {llm: tinyllama-1.1b, prompt: 128, generate: 32, batch: 1, kv: int8, weights: int8}
    archs: [llm_edge]                      # defaults: prompt 512, generate 128, kv int8, weights int8
    space:
      dram.bandwidth_bytes_per_cycle: {choices: [6.4, 12.8, 25.6]}
    compression:                           # either or both; each replaces the workload's fixed value
      weights: {choices: [int8, int4, aqlm-2x8, lcvq]}     # archsim.ir.formats.LLM_WEIGHT_FORMATS
      kv: {choices: [int8, int4]}                          # archsim.llm.KV_FORMATS
    objectives: [tpot, energy_per_token]   # ttft, tpot, tokens_per_s (maximised), energy_per_token,
                                           # prefill_energy, area
    constraints: ["tpot <= 50", "area <= 20"]
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Optional, Union

import yaml
from pydantic import Field, NonNegativeInt, PositiveInt, ValidationError, field_validator, model_validator

from .ir.errors import ArchsimError
from .hw.pe_kind import ComponentSpec

OBJECTIVES = {  # name -> (metric key, direction)
    "latency": ("latency_ms", "minimize"),
    "energy": ("energy_uj", "minimize"),
    "edp": ("edp_uj_ms", "minimize"),
    "area": ("area_mm2", "minimize"),
    "accuracy": ("accuracy", "maximize"),
    # LLM workloads (archsim.llm.LLMReport)
    "ttft": ("ttft_ms", "minimize"),
    "tpot": ("tpot_ms", "minimize"),
    "tokens_per_s": ("tokens_per_s", "maximize"),
    "energy_per_token": ("energy_per_token_uj", "minimize"),
    "prefill_energy": ("prefill_energy_uj", "minimize"),
}
OBJECTIVE_LABELS = {"latency": "latency (ms)", "energy": "energy (µJ)", "edp": "energy-delay product (µJ·ms)",
                    "area": "area (mm²)", "accuracy": "top-1 accuracy (%)",
                    "ttft": "time to first token (ms)", "tpot": "time per output token (ms)",
                    "tokens_per_s": "tokens/s", "energy_per_token": "energy per output token (µJ)",
                    "prefill_energy": "prefill energy (µJ)"}
CNN_OBJECTIVES = ("latency", "energy", "edp", "area", "accuracy")
LLM_OBJECTIVES = ("ttft", "tpot", "tokens_per_s", "energy_per_token", "prefill_energy", "area")
ObjectiveName = Literal["latency", "energy", "edp", "area", "accuracy",
                        "ttft", "tpot", "tokens_per_s", "energy_per_token", "prefill_energy"]
_CONSTRAINT = re.compile(r"^\s*(" + "|".join(sorted(OBJECTIVES, key=len, reverse=True))
                         + r")\s*(<=|>=)\s*(fp32\s*-\s*)?([0-9.eE+-]+)\s*$")
# the defaults of `archsim run --model <LLM preset>`
LLM_DEFAULTS = {"prompt": 512, "generate": 128, "kv": "int8", "weights": "int8"}


class Param(ComponentSpec):
    """One searched dimension: exactly one of choices, range, log_range."""
    choices: Optional[list[Union[int, float, str, bool]]] = None
    range: Optional[tuple[float, float]] = None
    log_range: Optional[tuple[float, float]] = None
    integer: bool = Field(False, description="integer values (ranges only)")

    @model_validator(mode="after")
    def _one_kind(self):
        given = [k for k in ("choices", "range", "log_range") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of choices, range, log_range")
        if self.choices is not None and not self.choices:
            raise ValueError("choices must not be empty")
        lohi = self.range or self.log_range
        if lohi is not None and not lohi[0] < lohi[1]:
            raise ValueError("a range needs low < high")
        if self.log_range is not None and self.log_range[0] <= 0:
            raise ValueError("a log range needs low > 0")
        return self


class Workload(ComponentSpec):
    model: Optional[str] = None
    llm: Optional[str] = Field(None, description="an LLM preset (workloads.zoo.llm; `archsim list`): prefill + "
                                                 "decode by archsim.llm.simulate_llm, hardware only")
    topology: Optional[str] = None
    onnx: Optional[str] = Field(None, description="an ONNX file (workloads.onnx_import): hardware only")
    checkpoint: Optional[Literal["fmnist_cnn", "resnet20_fmnist", "vit_fmnist"]] = Field(
        None, description="a trained model shipped with archsim; its real test set gives accuracy")
    batch: PositiveInt = 1
    eval_images: PositiveInt = Field(2000, description="test images scored per compression setting")
    calib_batches: PositiveInt = Field(4, description="training batches of 256 handed to compress()")
    finetune_steps: NonNegativeInt = Field(
        0, description="steps of the shared compression-aware fine-tuning (batches of 128 training "
                       "images) per compression setting, before it is scored; accuracy studies only")
    # LLM workloads only (the flags of `archsim run --model <LLM preset>`; defaults in LLM_DEFAULTS)
    prompt: Optional[PositiveInt] = Field(None, description="LLM: prompt tokens of the prefill (default 512)")
    generate: Optional[PositiveInt] = Field(None, description="LLM: tokens generated, the first by the prefill "
                                                              "(default 128)")
    kv: Optional[str] = Field(None, description="LLM: KV-cache format, a key of archsim.llm.KV_FORMATS "
                                                "(default int8)")
    weights: Optional[str] = Field(None, description="LLM: weight format of every linear, a name of "
                                                     "archsim.ir.formats.LLM_WEIGHT_FORMATS (default int8)")

    @model_validator(mode="after")
    def _one_source(self):
        given = [k for k in ("model", "topology", "onnx", "checkpoint", "llm") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of model, topology, onnx, checkpoint, llm")
        return self

    def llm_value(self, key: str):
        """prompt, generate, kv or weights of an LLM workload, with its default."""
        v = getattr(self, key)
        return LLM_DEFAULTS[key] if v is None else v


class Compression(ComponentSpec):
    method: Optional[Param] = Field(None, description="compression methods (workloads.compression); "
                                                      "CNN workloads")
    params: dict[str, dict[str, Param]] = {}
    weights: Optional[Param] = Field(None, description="LLM workloads: weight formats by name "
                                                       "(archsim.ir.formats.LLM_WEIGHT_FORMATS)")
    kv: Optional[Param] = Field(None, description="LLM workloads: KV-cache formats (archsim.llm.KV_FORMATS)")


class Study(ComponentSpec):
    name: str
    workload: Workload
    archs: list[str] = ["sa32_ws"]
    space: dict[str, Param] = {}
    compression: Optional[Compression] = None
    objectives: list[ObjectiveName] = ["latency", "energy"]
    constraints: list[str] = []
    sampler: Literal["auto", "nsga2", "tpe", "grid", "random"] = "auto"
    trials: PositiveInt = 50
    seed: int = 0
    storage: Optional[str] = Field(None, description="SQLAlchemy URL; default sqlite:///<out>/<name>.db")
    path: Optional[str] = Field(None, exclude=True)

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v):
        if not v:
            raise ValueError("name at least one")
        if len(set(v)) != len(v):
            raise ValueError("each objective at most once")
        return v

    @field_validator("constraints")
    @classmethod
    def _constraints(cls, v):
        for c in v:
            if not _CONSTRAINT.match(c):
                raise ValueError(f"constraint {c!r} must look like 'area <= 2.0' or 'accuracy >= fp32 - 1'")
        return v

    def all_params(self) -> dict[str, Param]:
        """Every searched dimension by its name: 'arch' (when several bases),
        arch fields, 'method' and '<method>.<param>'."""
        out = {}
        if len(self.archs) > 1:
            out["arch"] = Param(choices=list(self.archs))
        out.update(self.space)
        if self.compression is not None:
            if self.compression.method is not None:
                out["method"] = self.compression.method
            for m, params in self.compression.params.items():
                for k, p in params.items():
                    out[f"{m}.{k}"] = p
            for k in ("weights", "kv"):
                if getattr(self.compression, k) is not None:
                    out[k] = getattr(self.compression, k)
        return out

    @property
    def is_llm(self) -> bool:
        return self.workload.llm is not None

    def needs_accuracy(self) -> bool:
        return "accuracy" in self.objectives or any(c.strip().startswith("accuracy") for c in self.constraints)

    def parsed_constraints(self) -> list[tuple[str, str, bool, float]]:
        """(objective, '<=' or '>=', relative to FP32?, value) per constraint."""
        out = []
        for c in self.constraints:
            m = _CONSTRAINT.match(c)
            out.append((m.group(1), m.group(2), m.group(3) is not None, float(m.group(4))))
        return out


def study_dir() -> Path:
    """The built-in studies, installed with the architectures."""
    from .config import ARCH_DIR

    return ARCH_DIR / "studies"


def study_names() -> list[str]:
    return sorted(q.stem for q in study_dir().glob("*.yaml"))


def resolve_study_path(name_or_path: str | Path) -> Path:
    """A study file's path, or a built-in study by its name or the start of
    its name (`fmnist` is fmnist_hw_x_compression), from any directory."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    if p.is_dir():
        raise ArchsimError("is a folder; expected a study YAML or a built-in study's name", file=str(p))
    names = study_names()
    hits = [n for n in names if n == str(name_or_path)] or [n for n in names if n.startswith(str(name_or_path))]
    if len(hits) == 1:
        return study_dir() / f"{hits[0]}.yaml"
    if hits:
        raise ArchsimError(f"several built-in studies start so: {', '.join(hits)}", file=str(p))
    raise ArchsimError("no such study file, nor a built-in study" + _did_you_mean(str(name_or_path), names),
                       file=str(p))


def load_study(path: str | Path) -> Study:
    p = resolve_study_path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ArchsimError(f"malformed YAML ({getattr(e, 'problem', None) or e})", file=str(p), field="<root>") from None
    if not isinstance(data, dict):
        raise ArchsimError("top level must be a mapping", file=str(p), field="<root>")
    try:
        study = Study.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(x) for x in err["loc"]) or "<root>"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise ArchsimError(msg, file=str(p), field=field) from None
    study.path = str(p)
    _check_objectives_fit(study)
    if study.sampler == "grid":
        for key, prm in study.all_params().items():
            if prm.choices is None:
                raise ArchsimError(f"the grid sampler needs choices; {key} has a range", file=str(p), field="sampler")
    if study.needs_accuracy() and study.workload.checkpoint is None:
        raise ArchsimError("accuracy needs a trained model: set workload.checkpoint", file=str(p),
                           field="workload.checkpoint")
    check_study(study)
    return study


def _check_objectives_fit(study: Study) -> None:
    """An LLM objective on a CNN workload, or a CNN one on an LLM, is one
    line naming the objective (or constraint)."""
    src = study.path
    llm = study.is_llm
    fits, kind, other = (LLM_OBJECTIVES, "an LLM workload (workload.llm)", "CNN") if llm else \
        (CNN_OBJECTIVES, "a CNN workload", "LLM")
    for i, o in enumerate(study.objectives):
        if o not in fits:
            raise ArchsimError(f"{o} is an {other} objective; {kind} takes {', '.join(fits)}", file=src,
                               field=f"objectives.{i}")
    for i, (o, *_) in enumerate(study.parsed_constraints()):
        if o not in fits:
            raise ArchsimError(f"{o} is an {other} metric; {kind} takes {', '.join(fits)}", file=src,
                               field=f"constraints.{i}")


def _did_you_mean(word: str, known) -> str:
    import difflib

    close = difflib.get_close_matches(str(word), [str(k) for k in known], n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(map(str, known)))})"


def _values(p: Param) -> list:
    return list(p.choices) if p.choices is not None else list(p.range or p.log_range)


def check_study(study: Study) -> None:
    """Everything a study names, checked before any point runs, each mistake
    one line naming the study file and the field: the workload, each base
    architecture, each searched field and value on each of them, each
    compression method and parameter, and that some base architecture runs
    each method's weights. An LLM study: _check_llm_study."""
    src = study.path
    w = study.workload
    if study.is_llm:
        return _check_llm_study(study)
    for key in ("prompt", "generate", "kv", "weights"):
        if getattr(w, key) is not None:
            raise ArchsimError(f"{key} applies to LLM workloads (workload.llm) only", file=src,
                               field=f"workload.{key}")
    if study.compression is not None:
        for key in ("weights", "kv"):
            if getattr(study.compression, key) is not None:
                raise ArchsimError(f"searches LLM {key} formats and applies to LLM workloads (workload.llm) "
                                   f"only; a CNN's compression is method and params", file=src,
                                   field=f"compression.{key}")
        if study.compression.method is None:
            raise ArchsimError("give the compression methods to search, e.g. {choices: [none, vq]}", file=src,
                               field="compression.method")
    if w.model is not None:
        from workloads import zoo

        if w.model not in zoo.MODELS:
            raise ArchsimError(f"unknown model {w.model!r}" + _did_you_mean(w.model, zoo.MODELS), file=src,
                               field="workload.model")
    if w.topology is not None and not Path(w.topology).is_file():
        raise ArchsimError(f"no such topology file {w.topology!r}", file=src, field="workload.topology")
    if w.onnx is not None and not Path(w.onnx).is_file():
        raise ArchsimError(f"no such ONNX file {w.onnx!r}", file=src, field="workload.onnx")
    bases = _check_archs_and_space(study)
    if study.compression is not None:
        _check_compression(study, bases)


def _check_llm_study(study: Study) -> None:
    """An LLM study: the preset, prompt + generate within its positions,
    each weight and KV format by name, that some base architecture runs each
    weight format, and that no CNN-only field is set."""
    from archsim.ir.formats import LLM_WEIGHT_FORMATS, llm_weight_format
    from archsim.llm import KV_FORMATS
    from workloads.zoo.llm import ALIASES, PRESETS

    from .hw.compat import arch_formats

    src = study.path
    w = study.workload
    if w.llm not in PRESETS and w.llm not in ALIASES:
        raise ArchsimError(f"unknown LLM preset {w.llm!r}" + _did_you_mean(w.llm, [*PRESETS, *ALIASES]), file=src,
                           field="workload.llm")
    cfg = PRESETS[ALIASES.get(w.llm, w.llm)]
    for key in ("eval_images", "calib_batches", "finetune_steps"):
        if key in w.model_fields_set:
            raise ArchsimError(f"{key} applies to accuracy studies of a trained CNN, not to an LLM workload",
                               file=src, field=f"workload.{key}")
    prompt, generate = w.llm_value("prompt"), w.llm_value("generate")
    if prompt + generate > cfg.max_pos:
        raise ArchsimError(f"prompt + generate = {prompt + generate} exceeds {cfg.name}'s {cfg.max_pos} "
                           f"positions", file=src, field="workload.generate")
    per_token = [o for o in study.objectives if o in ("tpot", "tokens_per_s", "energy_per_token")]
    per_token += [o for o, *_ in study.parsed_constraints() if o in ("tpot", "tokens_per_s", "energy_per_token")]
    if per_token and generate < 2:
        raise ArchsimError(f"{per_token[0]} is measured on the decode steps: generate must be >= 2", file=src,
                           field="workload.generate")
    c = study.compression
    if c is not None:
        if c.method is not None or c.params:
            raise ArchsimError("an LLM workload searches weight formats by name (compression.weights, "
                               "compression.kv), not compression methods", file=src,
                               field="compression.method" if c.method is not None else "compression.params")
        if c.weights is None and c.kv is None:
            raise ArchsimError("give compression.weights or compression.kv (or both)", file=src,
                               field="compression")
    known = {"weights": LLM_WEIGHT_FORMATS, "kv": list(KV_FORMATS)}
    choices = {}
    for key in ("weights", "kv"):
        searched = getattr(c, key) if c is not None else None
        if searched is None:
            choices[key], field = [w.llm_value(key)], f"workload.{key}"
        elif searched.choices is None:
            raise ArchsimError(f"{key} formats are names: give choices, not a range", file=src,
                               field=f"compression.{key}")
        else:
            choices[key], field = list(searched.choices), f"compression.{key}"
        for v in choices[key]:
            if v not in known[key]:
                raise ArchsimError(f"unknown {'weight' if key == 'weights' else 'KV'} format {v!r}"
                                   + _did_you_mean(v, known[key]), file=src, field=field)
    bases = _check_archs_and_space(study)
    for v in choices["weights"]:
        fmt = llm_weight_format(v, cfg.dim).name
        if not any(fmt in arch_formats(a) for a in bases.values()):
            field = "compression.weights" if c is not None and c.weights is not None else "workload.weights"
            raise ArchsimError(f"{v}: no base architecture runs {fmt} weights ({', '.join(study.archs)}; "
                               f"`archsim list` shows which architecture runs which format)",
                               file=src, field=field)
    act = [a.pe_array.act_bits for a in bases.values()]
    act += [int(v) for v in _values(study.space["pe_array.act_bits"])] if "pe_array.act_bits" in study.space else []
    for v in choices["kv"]:
        if KV_FORMATS[v].bits > max(act):
            field = "compression.kv" if c is not None and c.kv is not None else "workload.kv"
            raise ArchsimError(f"a {v} KV cache has {KV_FORMATS[v].bits}-bit elements; no base architecture "
                               f"multiplies activations of more than {max(act)} bits (pe_array.act_bits)",
                               file=src, field=field)


def _check_archs_and_space(study: Study) -> dict:
    """Each base architecture loads, and each searched field and value loads
    on each of them: {name: ArchSpec}."""
    from .config import ARCH_DIR, load_arch

    src = study.path
    bases = {}
    for i, name in enumerate(study.archs):
        try:
            bases[name] = load_arch(name)
        except ArchsimError as e:
            known = [q.stem for q in ARCH_DIR.glob("*.yaml")]
            raise ArchsimError(f"{e.message}{_did_you_mean(name, known) if not Path(name).exists() else ''}",
                               file=src, field=f"archs.{i}") from None
    for key, prm in study.space.items():
        for name in study.archs:
            for v in _values(prm):
                v = int(v) if prm.integer and prm.choices is None else v
                try:
                    load_arch(name, [f"{key}={v}"], flag="space")
                except ArchsimError as e:
                    raise ArchsimError(f"{key}={v} on {name}: {e.message}", file=src, field=f"space.{key}") from None
    return bases


def _check_compression(study: Study, bases: dict) -> None:
    import inspect

    from .hw.compat import arch_formats
    from workloads.compression import METHODS

    src = study.path
    for m in study.compression.method.choices or []:
        if m != "none" and m not in METHODS:
            raise ArchsimError(f"unknown compression method {m!r}" + _did_you_mean(m, ["none", *METHODS]),
                               file=src, field="compression.method")
        fmt = {"none": "dense", "int": "dense"}.get(m, m)
        if not any(fmt in arch_formats(a) for a in bases.values()):
            raise ArchsimError(f"{m}: no base architecture runs {fmt} weights ({', '.join(study.archs)}; "
                               f"`archsim list` shows which architecture runs which format)",
                               file=src, field="compression.method")
    for m, params in study.compression.params.items():
        if m not in METHODS:
            raise ArchsimError(f"unknown compression method {m!r}" + _did_you_mean(m, METHODS), file=src,
                               field=f"compression.params.{m}")
        takes = [q for q in inspect.signature(METHODS[m]).parameters if q not in ("model", "calib", "seed")]
        for k in params:
            if k not in takes:
                raise ArchsimError(f"{m} takes no parameter {k!r}" + _did_you_mean(k, takes), file=src,
                                   field=f"compression.params.{m}.{k}")
