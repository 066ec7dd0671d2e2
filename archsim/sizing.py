"""Up-front size checks of a command-line run or a study: what would take
hours or more memory than the machine has is refused before any work, in one
line naming the field to change (the Python API has no such limits)."""
from __future__ import annotations

import dataclasses

from .ir.errors import ArchsimError

# Most PE-array folds one command may tile and simulate: every fold is at
# least one SimPy event and a few TileGraph nodes (about 1 KiB each), so far
# beyond this a run takes hours and tens of GiB instead of failing.
# (ResNet-50 on a 32x32 ws array: about 25 thousand.)
MAX_FOLDS = 2_000_000

# Live float32 tensors while a batch is traced (torch.fx shape propagation):
# a layer's input and output, and a residual branch held beside them.
_LIVE_TENSORS = 3


def pe_kind(arch):
    from .hw import registry

    return registry.create("pe_array", arch.pe_array.kind, arch.pe_array, arch, source=arch.path,
                           field="pe_array.kind")


def fold_estimate(layers, arch) -> int:
    """The layers' fold chunks on `arch`, roughly, as its PE kind estimates them."""
    pe = pe_kind(arch)
    return sum(pe.fold_estimate(L) for L in layers)


def check_folds(layers, arch, source: str, field: str) -> None:
    pe = pe_kind(arch)
    total = 0
    for L in layers:
        total += pe.fold_estimate(L)
        if total > MAX_FOLDS:
            raise ArchsimError(f"more than {MAX_FOLDS:,} PE-array folds up to layer {L.name} on a "
                               f"{arch.pe_array.rows}x{arch.pe_array.cols} array: too large to simulate "
                               f"from the command line", file=source, field=field)


def available_bytes() -> int:
    import psutil

    return psutil.virtual_memory().available


def trace_bytes(layers_b1, batch: int) -> int:
    """Memory to trace the model at `batch`, from its batch-1 layers: the
    largest layer's input and output activations (float32), a few alive at once."""
    per = max(((L.in_elems or L.M * L.K) + L.M * L.N) * L.groups for L in layers_b1)
    return _LIVE_TENSORS * 4 * per * batch


def at_batch(layers_b1, batch: int) -> list:
    """The batch-1 layers with `batch` times the output pixels (for estimates)."""
    return [dataclasses.replace(L, M=L.M * batch, in_elems=None if L.in_elems is None else L.in_elems * batch)
            for L in layers_b1]


def check_batch(layers_b1, batch: int, archs, source: str, field: str) -> None:
    """Refuse a batch whose trace does not fit in memory, or whose folds on
    any of `archs` are too many to simulate, naming `field`."""
    need, have = trace_bytes(layers_b1, batch), available_bytes()
    if need > have // 2:
        raise ArchsimError(f"batch {batch} needs about {need / 2**30:.1f} GiB to trace, and "
                           f"{have / 2**30:.1f} GiB are free: use a smaller batch", file=source, field=field)
    scaled = at_batch(layers_b1, batch)
    for arch in archs:
        folds = fold_estimate(scaled, arch)
        if folds > MAX_FOLDS:
            raise ArchsimError(f"batch {batch} is about {folds:,} PE-array folds on {arch.name} "
                               f"(at most {MAX_FOLDS:,} run from the command line): use a smaller batch",
                               file=source, field=field)
