"""One entry point: simulate(model_or_layers, arch) -> Report."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Union

from .config import DEFAULT_ARCH, ArchSpec, load_arch
from .energy import EnergyModel, EnergyTable
from .engine import run
from .errors import ArchsimError
from .report import Report, build_report


def to_layers(model_or_layers, example_input=None, formats=None) -> list:
    """Accepts a zoo model name, an nn.Module (with `example_input`), or a list
    of LayerSpecs, and returns the LayerSpecs."""
    from workloads.layer_spec import LayerSpec

    if isinstance(model_or_layers, str):
        from workloads import zoo

        if model_or_layers not in zoo.MODELS:
            raise ArchsimError(f"unknown model (known: {', '.join(sorted(zoo.MODELS))})", field="model")
        model = zoo.build(model_or_layers)
        example_input = zoo.default_input(model_or_layers) if example_input is None else example_input
        model_or_layers = model
    if isinstance(model_or_layers, (list, tuple)):
        if not all(isinstance(l, LayerSpec) for l in model_or_layers):
            raise ArchsimError("a list of layers must hold LayerSpec objects", field="layers")
        return list(model_or_layers)
    from workloads.compile import trace

    if example_input is None:
        raise ArchsimError("simulating an nn.Module needs example_input", field="example_input")
    return trace(model_or_layers, example_input, formats=formats)


def simulate(model_or_layers, arch: Union[str, Path, ArchSpec] = DEFAULT_ARCH, *, example_input=None,
             formats=None, overrides: Iterable[str] = (), energy_table: str | Path | None = None,
             trace: str | Path | None = None, trace_layers: Iterable[str] | None = None) -> Report:
    """Compile (if needed), tile, simulate and cost a model on an architecture.

    model_or_layers: zoo name ('resnet18'), nn.Module (+ example_input) or list[LayerSpec]
    arch:            built-in name, YAML path, or ArchSpec; `overrides` are 'path.to.field=value'
    formats:         {module name: WeightFormat} from a compression result
    trace:           write a Chrome/Perfetto timeline here (archsim.timeline); `trace_layers` limits it
    """
    from workloads.tiling import tile

    if not isinstance(arch, ArchSpec):
        arch = load_arch(arch, list(overrides))
    elif overrides:
        arch = arch.with_overrides(list(overrides))
    layers = to_layers(model_or_layers, example_input, formats)
    graph = tile(layers, arch)
    timeline = None
    if trace is not None:
        from .timeline import Timeline

        names = {L.name for L in layers}
        unknown = sorted(set(trace_layers or ()) - names)
        if unknown:
            raise ArchsimError(f"no layer named {unknown[0]!r} to trace", field="--trace-layers")
        timeline = Timeline(arch.clock_mhz, arch.dram.bandwidth_bytes_per_cycle, trace_layers)
    stats = run(graph, arch, timeline)
    if timeline is not None:
        timeline.write(trace)
    table = EnergyTable.load(energy_table) if energy_table else EnergyTable.for_arch(arch)
    return build_report(stats, arch, EnergyModel(arch, table))
