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
}
OBJECTIVE_LABELS = {"latency": "latency (ms)", "energy": "energy (µJ)", "edp": "energy-delay product (µJ·ms)",
                    "area": "area (mm²)", "accuracy": "top-1 accuracy (%)"}
_CONSTRAINT = re.compile(r"^\s*(latency|energy|edp|area|accuracy)\s*(<=|>=)\s*(fp32\s*-\s*)?([0-9.eE+-]+)\s*$")


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

    @model_validator(mode="after")
    def _one_source(self):
        given = [k for k in ("model", "topology", "onnx", "checkpoint") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of model, topology, onnx, checkpoint")
        return self


class Compression(ComponentSpec):
    method: Param
    params: dict[str, dict[str, Param]] = {}


class Study(ComponentSpec):
    name: str
    workload: Workload
    archs: list[str] = ["sa32_ws"]
    space: dict[str, Param] = {}
    compression: Optional[Compression] = None
    objectives: list[Literal["latency", "energy", "edp", "area", "accuracy"]] = ["latency", "energy"]
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
            out["method"] = self.compression.method
            for m, params in self.compression.params.items():
                for k, p in params.items():
                    out[f"{m}.{k}"] = p
        return out

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
    if study.sampler == "grid":
        for key, prm in study.all_params().items():
            if prm.choices is None:
                raise ArchsimError(f"the grid sampler needs choices; {key} has a range", file=str(p), field="sampler")
    if study.needs_accuracy() and study.workload.checkpoint is None:
        raise ArchsimError("accuracy needs a trained model: set workload.checkpoint", file=str(p),
                           field="workload.checkpoint")
    check_study(study)
    return study


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
    each method's weights."""
    import inspect

    from .config import ARCH_DIR, load_arch
    from .hw.compat import arch_formats

    src = study.path
    w = study.workload
    if w.model is not None:
        from workloads import zoo

        if w.model not in zoo.MODELS:
            raise ArchsimError(f"unknown model {w.model!r}" + _did_you_mean(w.model, zoo.MODELS), file=src,
                               field="workload.model")
    if w.topology is not None and not Path(w.topology).is_file():
        raise ArchsimError(f"no such topology file {w.topology!r}", file=src, field="workload.topology")
    if w.onnx is not None and not Path(w.onnx).is_file():
        raise ArchsimError(f"no such ONNX file {w.onnx!r}", file=src, field="workload.onnx")
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
    if study.compression is None:
        return
    from workloads.compression import METHODS

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
