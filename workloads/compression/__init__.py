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
    if num_threads is None:
        return fn(model, calib=calib, seed=seed, **params)
    prev = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        return fn(model, calib=calib, seed=seed, **params)
    finally:
        torch.set_num_threads(prev)


__all__ = ["compress", "METHODS", "CompressionResult", "CompressionError", "finetune_result", "check_storage"]
