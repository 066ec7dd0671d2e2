"""One entry point: simulate(model_or_layers, arch) -> Report."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Union

from .ir import progress
from .config import DEFAULT_ARCH, ArchSpec, load_arch
from .energy import EnergyModel, EnergyTable
from .engine import run
from .ir.errors import ArchsimError
from .gc_pause import gc_paused
from .report import Report, build_report


def to_layers(model_or_layers, example_input=None, formats=None) -> list:
    """Accepts a zoo model name, an nn.Module (with `example_input`), or a list
    of LayerSpecs, and returns the LayerSpecs."""
    from archsim.ir.layer_spec import LayerSpec

    if isinstance(model_or_layers, str):
        from workloads import zoo

        if model_or_layers not in zoo.MODELS:
            raise ArchsimError(f"unknown model (known: {', '.join(sorted(zoo.MODELS))})", field="model")
        with progress.spinner(f"building {model_or_layers}"):
            model = zoo.build(model_or_layers)
        example_input = zoo.default_input(model_or_layers) if example_input is None else example_input
        model_or_layers = model
    if isinstance(model_or_layers, (list, tuple)):
        if not all(isinstance(l, LayerSpec) for l in model_or_layers):
            raise ArchsimError("a list of layers must hold LayerSpec objects", field="layers")
        # a traced Workload keeps its DAG (non-GEMM operators, tensors) beside the layers
        return model_or_layers if hasattr(model_or_layers, "ops") else list(model_or_layers)
    from workloads.compile import trace

    if example_input is None:
        raise ArchsimError("simulating an nn.Module needs example_input", field="example_input")
    with progress.spinner("tracing (torch.fx)"):
        return trace(model_or_layers, example_input, formats=formats)


def format_label(fmt) -> str:
    """'vq:k=256,d=16': the format's name, its first parameter and every
    parameter that differs from its default (the --weights spelling)."""
    import dataclasses

    params = []
    for i, f in enumerate(dataclasses.fields(fmt)):
        v = getattr(fmt, f.name)
        if i == 0 or f.default is dataclasses.MISSING or v != f.default:
            params.append(f"{f.name}={v:g}" if isinstance(v, float) else f"{f.name}={v}")
    return fmt.name + (":" + ",".join(params) if params else "")


def describe_weights(layers) -> str:
    """The weight formats of the layers, e.g. 'dense:bits=8' or
    'vq:k=256,d=16 (20 layers); dense:bits=8 (1 layer)'."""
    counts: dict[str, int] = {}
    for L in layers:
        if L.op != "matmul" and L.fmt is not None:
            label = format_label(L.fmt)
            counts[label] = counts.get(label, 0) + 1
    if len(counts) > 4:  # many per-layer variants: say which kinds
        kinds: dict[str, int] = {}
        for label, n in counts.items():
            kinds[label.split(":")[0]] = kinds.get(label.split(":")[0], 0) + n
        counts = kinds
    if len(counts) == 1:
        return next(iter(counts))
    return "; ".join(f"{k} ({n} layer{'s' if n > 1 else ''})" for k, n in counts.items())


def _workload_name(model_or_layers) -> str:
    if isinstance(model_or_layers, str):
        return model_or_layers
    if isinstance(model_or_layers, (list, tuple)):
        return f"{len(model_or_layers)} layers"
    return type(model_or_layers).__name__


def simulate(model_or_layers, arch: Union[str, Path, ArchSpec] = DEFAULT_ARCH, *, example_input=None,
             formats=None, overrides: Iterable[str] = (), energy_table: str | Path | None = None,
             trace: str | Path | None = None, trace_layers: Iterable[str] | None = None,
             workload: str | None = None, weights: str | None = None, tiles=None) -> Report:
    """Compile (if needed), tile, simulate and cost a model on an architecture.

    model_or_layers: zoo name ('resnet18'), nn.Module (+ example_input) or list[LayerSpec]
    arch:            built-in name, YAML path, or ArchSpec; `overrides` are 'path.to.field=value'
    formats:         {module name: WeightFormat} from a compression result
    trace:           write a Chrome/Perfetto timeline here (archsim.timeline); `trace_layers` limits it
    workload, weights: what the report says was simulated (default: the zoo
                     name or class name, and the layers' weight formats)
    tiles:           a archsim.tiling.TileCache, to reuse the tile graph of an
                     earlier call that maps the layers the same way (sweeps)
    """
    from archsim.tiling import tile

    overrides = list(overrides)
    if not isinstance(arch, ArchSpec):
        arch = load_arch(arch, overrides)
    elif overrides:
        arch = arch.with_overrides(overrides)
    layers = to_layers(model_or_layers, example_input, formats)
    # One garbage-collector pause over tiling and simulation, and the graph
    # dropped inside it: the collector never has to scan its node dicts.
    with gc_paused():
        with progress.over(layers, "tiling") as walked:
            graph = tiles.tile(walked, arch) if tiles is not None else tile(walked, arch)
        timeline = None
        if trace is not None:
            from .timeline import Timeline

            names = {L.name for L in layers}
            unknown = sorted(set(trace_layers or ()) - names)
            if unknown:
                raise ArchsimError(f"no layer named {unknown[0]!r} to trace", field="--trace-layers")
            timeline = Timeline(arch.clock_mhz, arch.dram.bandwidth_bytes_per_cycle, trace_layers)
        with progress.spinner(f"simulating {graph.number_of_nodes():,} tile operations"):
            stats = run(graph, arch, timeline)
        del graph
    if timeline is not None:
        timeline.write(trace)
    table = EnergyTable.load(energy_table) if energy_table else EnergyTable.for_arch(arch)
    return build_report(stats, arch, EnergyModel(arch, table),
                        workload=workload if workload is not None else _workload_name(model_or_layers),
                        weights=weights if weights is not None else describe_weights(layers),
                        overrides=overrides)
