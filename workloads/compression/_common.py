"""Shared pieces of the compression methods: the result object, the weight
layout ("rows" along the input-channel direction), quantizers, k-means, the
per-layer driver and the calibration fine-tuning loop.

Weight layout. Every method that cuts weights into sub-vectors or groups runs
along the input-channel direction (the reduction dimension a PE row consumes):
  * Linear [O, I]          -> rows [O, I]
  * Conv2d [O, I, kh, kw]  -> permute to [O, kh, kw, I], rows [O*kh*kw, I]
  * Conv1d [O, I, k]       -> permute to [O, k, I],      rows [O*k, I]
  * depthwise-like convs with I (per group) == 1 have no input-channel run, so
    the run is the kernel window instead: rows [O, kh*kw].
When a method's unit (d, M, G) does not divide the run length, each row is
zero-padded at its end (`pad_cols`); the padding is cut off again before the
weights go back into the layer, and the formats count the padded storage.
"""
from __future__ import annotations

import copy
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from archsim.ir import progress
from archsim.ir.errors import ArchsimError


# Layers every weight method compresses; anything else keeps its weights.
COMPRESSIBLE = (nn.Conv1d, nn.Conv2d, nn.Linear)


class CompressionError(ArchsimError, ValueError):
    """A user mistake in a compression call (unknown method or parameter, a
    value out of range, missing calibration data). It is the project's one
    user-error type (the CLI prints it in one line) and, for callers that
    think in Python terms, a ValueError. `field` names the parameter."""


@dataclass
class CompressionResult:
    """What `compress()` returns (see the contract in compression/__init__.py)."""

    model: nn.Module
    formats: dict  # qualified module name -> WeightFormat
    info: dict = field(default_factory=dict)
    # per-layer state a method's reconstruction needs (codebooks, indices,
    # masks, signs, shift sets, ...): what workloads.compression.finetune trains
    state: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------
# layout
# ----------------------------------------------------------------------------

def to_rows(w: torch.Tensor) -> torch.Tensor:
    """Weight tensor -> 2-D [rows, run] with the run along the input channels
    (see the module docstring)."""
    if w.dim() == 2:
        return w
    if w.dim() in (3, 4):
        if w.shape[1] == 1:  # depthwise: run along the kernel window
            return w.reshape(w.shape[0], -1)
        perm = (0, 2, 1) if w.dim() == 3 else (0, 2, 3, 1)
        return w.permute(*perm).reshape(-1, w.shape[1])
    raise CompressionError(f"unsupported weight rank {w.dim()} (shape {tuple(w.shape)})", field="model")


def from_rows(rows: torch.Tensor, shape) -> torch.Tensor:
    """Inverse of `to_rows` for a weight of `shape` (rows must be unpadded)."""
    shape = tuple(shape)
    if len(shape) == 2:
        return rows.reshape(shape).contiguous()
    if shape[1] == 1:
        return rows.reshape(shape).contiguous()
    o, i = shape[0], shape[1]
    if len(shape) == 3:
        return rows.reshape(o, shape[2], i).permute(0, 2, 1).contiguous()
    return rows.reshape(o, shape[2], shape[3], i).permute(0, 3, 1, 2).contiguous()


def run_len_of(shape) -> int:
    """Length of the run (input-channel direction) of a weight of `shape`."""
    shape = tuple(shape)
    if len(shape) == 2:
        return shape[1]
    return math.prod(shape[2:]) if shape[1] == 1 else shape[1]


def pad_cols(rows: torch.Tensor, multiple: int, value: float = 0.0) -> torch.Tensor:
    """Pad each row at its end to a multiple of `multiple` columns."""
    extra = (-rows.shape[1]) % multiple
    if extra == 0:
        return rows
    return F.pad(rows, (0, extra), value=value)


# ----------------------------------------------------------------------------
# quantizers
# ----------------------------------------------------------------------------

def sym_scale(x: torch.Tensor, bits: int, per_channel: bool = False) -> torch.Tensor:
    """Scale of a symmetric signed quantizer with levels -(2^(b-1)-1)..2^(b-1)-1
    (the restricted range keeps zero exact and the grid symmetric): one scale
    for the tensor, or one per output channel (dim 0, broadcastable shape).
    An all-zero slice gets scale 1 so it quantizes to zeros without 0/0."""
    qmax = 2 ** (bits - 1) - 1
    if per_channel:
        amax = x.detach().abs().reshape(x.shape[0], -1).amax(dim=1).reshape(channel_shape(x))
    else:
        amax = x.detach().abs().max()
    scale = amax / qmax
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def quant_sym(x: torch.Tensor, bits: Optional[int], scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Symmetric uniform fake-quantization with one scale for the tensor
    (or the given broadcastable scale). bits None or >= 32: unchanged."""
    if bits is None or bits >= 32:
        return x
    qmax = 2 ** (bits - 1) - 1
    if scale is None:
        scale = sym_scale(x, bits)
    return torch.clamp(torch.round(x / scale), -qmax, qmax) * scale


def quant_unsigned(x: torch.Tensor, bits: Optional[int]) -> torch.Tensor:
    """Unsigned uniform fake-quantization of a non-negative tensor, levels
    0..2^b-1 times one scale (used for SSVQ's magnitude codebook)."""
    if bits is None or bits >= 32:
        return x
    qmax = 2 ** bits - 1
    amax = x.max()
    scale = amax / qmax if amax > 0 else torch.ones((), dtype=x.dtype)
    return torch.clamp(torch.round(x / scale), 0, qmax) * scale


def channel_shape(w: torch.Tensor) -> tuple:
    """Broadcast shape of a per-output-channel scale for weight `w`."""
    return (w.shape[0],) + (1,) * (w.dim() - 1)


# ----------------------------------------------------------------------------
# k-means
# ----------------------------------------------------------------------------

class faiss_threads:
    """Run faiss with `n` OpenMP threads inside the block, then restore. At
    these sizes (<= 65536 training points, d <= 16) OpenMP's fork/barrier
    cost beats the gain, and on shared cores its threads spin: measured on
    the 2-core box under load, k-means of 600k x 4 points to 256 codewords
    took 0.13 s with 1 thread and 0.83 s with 2 (same centroids)."""

    def __init__(self, n: int = 1):
        self.n = n

    def __enter__(self):
        import faiss
        self.prev = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(self.n)

    def __exit__(self, *exc):
        import faiss
        faiss.omp_set_num_threads(self.prev)


def kmeans_faiss(x: torch.Tensor, k: int, niter: int = 20, seed: int = 0,
                 max_points_per_centroid: int = 256) -> torch.Tensor:
    """Plain L2 k-means with faiss (much faster than sklearn or torch here).
    faiss trains on a seeded random subsample of k*max_points_per_centroid
    points (its default, 256, is plenty for 256 codewords); callers then
    assign every point. If there are no more points than k the points
    themselves are the codebook (exact). Returns centroids [k', d], k' <= k."""
    import faiss  # imported here so that the other methods work without it

    x = x.detach().float().contiguous()
    n, d = x.shape
    if n <= k:
        return x.clone()
    km = faiss.Kmeans(d, k, niter=niter, seed=seed, verbose=False,
                      min_points_per_centroid=1,  # no "too few points" warning
                      max_points_per_centroid=max_points_per_centroid)
    with faiss_threads(1):
        km.train(np.ascontiguousarray(x.numpy(), dtype=np.float32))
    return torch.from_numpy(np.array(km.centroids, dtype=np.float32))


def assign_nearest(x: torch.Tensor, codebook: torch.Tensor, chunk_rows: int = 65536) -> torch.Tensor:
    """Index of the nearest codeword (L2) for every row of x. faiss's exact
    flat search is about 20x faster than a torch matmul + argmin here (d is
    small, so the torch version is memory-bound); the torch path (in chunks,
    ties to the lower index) is the fallback without faiss."""
    x = x.detach().float().contiguous()
    codebook = codebook.detach().float().contiguous()
    try:
        import faiss
    except ImportError:
        faiss = None
    if faiss is not None:
        index = faiss.IndexFlatL2(codebook.shape[1])
        index.add(codebook.numpy())
        with faiss_threads(1):
            _, idx = index.search(x.numpy(), 1)
        return torch.from_numpy(idx[:, 0].astype(np.int64))
    cn = (codebook * codebook).sum(1)
    out = torch.empty(x.shape[0], dtype=torch.long)
    for s in range(0, x.shape[0], chunk_rows):
        # ||x||^2 is the same for all codewords, so it is left out
        out[s:s + chunk_rows] = torch.addmm(cn, x[s:s + chunk_rows], codebook.T, beta=1, alpha=-2).argmin(1)
    return out


# ----------------------------------------------------------------------------
# per-layer driver
# ----------------------------------------------------------------------------

def target_layers(model: nn.Module, skip_layers: Iterable[str] = ()) -> list:
    """(qualified name, module) of every Conv/Linear with a weight, in
    named_modules() order, minus those named in skip_layers."""
    skip = set(skip_layers)
    unknown = skip - {n for n, _ in model.named_modules()}
    if unknown:
        raise CompressionError(f"names no module: {sorted(unknown)}", field="skip_layers")
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, COMPRESSIBLE) and n not in skip]


def summarize(method: str, params: dict, formats: dict, sq_err: dict, n_w: dict, t0: float) -> dict:
    """The result's info dict: model-wide and per-layer figures. Storage counts
    everything the formats count (payload + side data) for the compressed
    layers only; biases stay FP32 and are not counted."""
    tot_n = sum(n_w.values())
    tot_bits = sum(formats[k].storage_bits(n_w[k]) for k in formats)
    tot_err = sum(sq_err.values())
    layers = {k: {"n_weights": n_w[k], "weight_mse": sq_err[k] / n_w[k],
                  "bits_per_weight": formats[k].bits_per_weight(n_w[k]),
                  "format": formats[k].describe()} for k in formats}
    return {
        "method": method,
        "params": dict(params),
        "wall_s": time.perf_counter() - t0,
        "n_weights": tot_n,
        "storage_bits": tot_bits,
        "weight_mse": tot_err / tot_n if tot_n else 0.0,
        "bits_per_weight": tot_bits / tot_n if tot_n else 0.0,
        "compression_vs_fp32": 32 * tot_n / tot_bits if tot_bits else float("inf"),
        "compression_vs_int8": 8 * tot_n / tot_bits if tot_bits else float("inf"),
        "layers": layers,
    }


def compress_weights(model: nn.Module, method: str, params: dict,
                     layer_fn: Callable, seed: int = 0,
                     skip_layers: Iterable[str] = ()) -> tuple:
    """Run `layer_fn(weight, layer_seed) -> (w_hat, fmt, extra)` on every target
    layer of a deep copy of `model` and put w_hat in place. Each layer gets its
    own seed (seed + position) so that layers do not share random streams.
    Returns (new_model, formats, sq_err, n_w, extras, t0)."""
    t0 = time.perf_counter()
    new = copy.deepcopy(model)
    formats, sq_err, n_w, extras = {}, {}, {}, {}
    with torch.no_grad():
        targets = target_layers(new, skip_layers)
        for i, (name, mod) in enumerate(progress.bar(targets, desc=f"compressing ({method})", unit="layer")):
            w = mod.weight.detach().float().clone()  # copy_ below must not change it
            w_hat, fmt, extra = layer_fn(w, seed + i)
            assert w_hat.shape == w.shape, (name, w_hat.shape, w.shape)
            mod.weight.copy_(w_hat.to(mod.weight.dtype))
            formats[name] = fmt
            sq_err[name] = float(((w_hat - w) ** 2).sum())
            n_w[name] = w.numel()
            extras[name] = extra
    return new, formats, sq_err, n_w, extras, t0


# ----------------------------------------------------------------------------
# calibration fine-tuning
# ----------------------------------------------------------------------------

def calib_batches(calib, steps: int):
    """Yield `steps` (inputs, labels) batches, cycling over `calib`. Streams:
    a generator (even an endless one) is read only as far as it is needed."""
    n = 0
    for b in itertools.islice(itertools.cycle(calib), steps):
        n += 1
        yield b[0], b[1]
    if steps > 0 and n == 0:
        raise CompressionError("is empty", field="calib")


def finetune(model: nn.Module, build_weights: Callable[[], dict], params: list,
             calib, steps: int, lr: float, after_step: Optional[Callable[[int], None]] = None,
             seed: int = 0) -> list:
    """Short calibration fine-tune of the compression parameters only.

    build_weights() returns {"<module>.weight": tensor} rebuilt from the
    trainable `params` (codebooks, sign latents, latent weights; a list of
    tensors or of Adam parameter groups) with
    straight-through estimators where there is rounding; the model runs with
    those weights through torch.func.functional_call, so the model's own
    parameters stay frozen. The model is in eval mode: BatchNorm keeps its
    statistics (a few calibration batches would only disturb them).
    Loss: cross-entropy against the batch labels. Returns the loss per step."""
    from torch.func import functional_call

    torch.manual_seed(seed)  # nothing random should happen, but pin it anyway
    was_training = model.training
    model.eval()
    opt = torch.optim.Adam(params, lr=lr)
    losses = []
    for step, (x, y) in enumerate(progress.bar(calib_batches(calib, steps), total=steps, desc="fine-tuning",
                                               unit="step")):
        opt.zero_grad(set_to_none=True)
        out = functional_call(model, build_weights(), (x,), strict=False)
        loss = F.cross_entropy(out, y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if after_step is not None:
            after_step(step)
    model.train(was_training)
    return losses


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """round() forward, identity gradient."""
    return x + (torch.round(x) - x).detach()
