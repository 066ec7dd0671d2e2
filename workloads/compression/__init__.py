"""Compression methods on real weights. One module per method.

Contract (every method follows it):

    result = compress(model, method, calib=None, seed=0, **params)

  * `model` is an nn.Module; it is not modified (methods work on a deep copy).
  * `calib` is calibration data where the method needs it (PQ activations,
    SSVQ / SWIS retraining): an iterable of (inputs, labels) batches.
  * result.model   : the compressed module; its forward pass uses the
                     reconstructed weights (PQ: the lookup tables).
  * result.formats : {module qualified name (as in model.named_modules()):
                      WeightFormat} for every compressed Conv2d / Linear.
  * result.info    : method, params, wall_s, weight_mse, bits_per_weight.

Methods (`METHODS`; parameters and defaults are on each function):
  int    uniform.compress_int    INTb per-output-channel symmetric (b=8)
  trunc  uniform.compress_trunc  INT8 truncated to its top b bits (b=4)
  nm     nm.compress_nm          N:M magnitude pruning (2:4), INT8 values
  vq     vq.compress_vq          k-means VQ (k=256, d=4), faiss
  mvq    mvq.compress_mvq        N:M + masked k-means (2:4, k=256, d=16)
  ssvq   ssvq.compress_ssvq      sign split + |W| VQ + learnable frozen signs
  pq     pq.compress_pq          PQA product quantization of activations
  swis   swis.compress_swis      shared weight bit sparsity (G=8, N=3 of 8)
  aqlm   aqlm.compress_aqlm      additive VQ, M codebooks (AQLM 2x8: M=2, k=256, d=8)
  lcvq   aqlm.compress_lcvq      large-codebook VQ (2^16 x 8), optional residual codebook

Fine-tuning (all methods, one loop): finetune.finetune_result(result,
teacher, calib, steps); result.state holds what it trains.

info also holds n_weights, storage_bits, compression_vs_fp32 / _int8 and a
per-layer breakdown ("layers"). Storage counts everything the formats store
(indices, codebooks, masks, signs, shift tables, prototypes, LUTs, scales)
for the compressed layers; biases stay FP32 and are not counted.
"""
from __future__ import annotations

import inspect

import torch

from ._common import CompressionError, CompressionResult
from .aqlm import compress_aqlm, compress_lcvq
from .mvq import compress_mvq
from .nm import compress_nm
from .pq import compress_pq
from .ssvq import compress_ssvq
from .swis import compress_swis
from .uniform import compress_int, compress_trunc
from .vq import compress_vq
from .finetune import check_storage, finetune_result

METHODS = {
    "int": compress_int,
    "trunc": compress_trunc,
    "nm": compress_nm,
    "vq": compress_vq,
    "mvq": compress_mvq,
    "ssvq": compress_ssvq,
    "pq": compress_pq,
    "swis": compress_swis,
    "aqlm": compress_aqlm,
    "lcvq": compress_lcvq,
}


def compress(model, method: str, calib=None, seed: int = 0, num_threads=None, **params) -> CompressionResult:
    """Compress `model` with `method` (a key of METHODS); see the module
    docstring for the contract. num_threads: torch intra-op threads for this
    call only (None: leave torch's setting). On small or shared CPUs 1 is
    often fastest: on the 2-core development box under load, masked k-means
    of 147k x 16 to 256 codewords took 3.1 s with 1 thread and 8-15 s with 2.
    Results are bit-for-bit reproducible for a given seed and thread count."""
    try:
        fn = METHODS[method]
    except KeyError:
        raise CompressionError(f"unknown compression method {method!r}; known: {sorted(METHODS)}",
                               field="method") from None
    accepted = set(inspect.signature(fn).parameters) - {"model", "calib", "seed"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise CompressionError(f"{method} takes no parameter {unknown[0]!r}; it takes {sorted(accepted)}",
                               field=unknown[0])
    _check_params(method, fn, params)
    prev = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        return fn(model, calib=calib, seed=seed, **params)
    except CompressionError:
        raise
    except ValueError as e:
        # a WeightFormat (or a helper) refused a combination of parameters: name the one it mentions
        named = next((k for k in params if k in str(e)), None)
        raise CompressionError(f"{method}: {e}", field=named or "params") from None
    finally:
        torch.set_num_threads(prev)


# Bounds of the integer parameters, by name: (lowest, highest). The highest
# values are far above any published setting and far below sizes that would
# exhaust memory (a 10^12-element codeword). Other int parameters: 1..2^20.
_INT_BOUNDS = {
    "scale_bits": (0, 64), "finetune_steps": (0, 10 ** 7), "steps": (0, 10 ** 7), "retrain_steps": (0, 10 ** 7),
    "n_min": (0, 64), "niter": (0, 10 ** 5), "bits": (1, 32), "source_bits": (1, 32), "value_bits": (1, 32),
    "codebook_bits": (1, 32), "weight_bits": (1, 32), "proto_bits": (1, 32), "lut_bits": (1, 32),
    "k": (1, 1 << 16), "d": (1, 1 << 12), "n": (1, 1 << 12), "m": (1, 1 << 12), "Ls": (1, 1 << 12),
    "Np": (1, 1 << 16), "group_size": (1, 1 << 12), "residual_k": (0, 1 << 16),
}
# float parameters: finite and within (lowest, highest)
_FLOAT_BOUNDS = {"flip_rate_start": (0.0, 1.0), "flip_rate_end": (0.0, 1.0), "shared_bits": (0.0, 64.0)}


def _check_params(method: str, fn, params: dict) -> None:
    """Types and ranges of the parameters, from each method's signature
    (annotations `int`, `float`, `bool`, `str`, `Optional[...]`), before any
    work: a bad one is a CompressionError naming it."""
    import math
    import numbers

    sig = inspect.signature(fn).parameters
    for name, value in params.items():
        ann = sig[name].annotation
        if not isinstance(ann, str):
            continue
        if ann.startswith("Optional["):
            if value is None:
                continue
            ann = ann[len("Optional["):-1]
        where = f"{method}: {name}"
        if ann == "int":
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise CompressionError(f"{where}: expected an integer, got {value!r}", field=name)
            lo, hi = _INT_BOUNDS.get(name, (1, 1 << 20))
            if not lo <= value <= hi:
                raise CompressionError(f"{where}: must be in {lo}..{hi}, got {value!r}", field=name)
        elif ann == "float":
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise CompressionError(f"{where}: expected a finite number, got {value!r}", field=name)
            lo, hi = _FLOAT_BOUNDS.get(name, (0.0, math.inf))
            if not lo <= value <= hi:
                raise CompressionError(f"{where}: must be in [{lo}, {hi}], got {value!r}", field=name)
        elif ann == "bool":
            if not isinstance(value, bool):
                raise CompressionError(f"{where}: expected true or false, got {value!r}", field=name)
        elif ann == "Union[str, Callable]":
            if not (isinstance(value, str) or callable(value)):
                raise CompressionError(f"{where}: expected a name or a callable, got {value!r}", field=name)
        elif ann == "str":
            if not isinstance(value, str):
                raise CompressionError(f"{where}: expected text, got {value!r}", field=name)


__all__ = ["compress", "METHODS", "CompressionResult", "CompressionError", "finetune_result", "check_storage"]
