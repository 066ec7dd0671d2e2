"""Uniform baselines: INTb per-output-channel symmetric quantization and
weight truncation (dropping the low bits of the INT8 weight, the baseline SWIS
compares against).

Both store one FP32 scale per output channel (`scale_bits`, counted as side
data).
"""
from __future__ import annotations

import torch

from archsim.ir.formats import DenseFormat, TruncFormat
from ._common import CompressionError, CompressionResult, compress_weights, summarize, sym_scale


def quantize_int_tensor(w: torch.Tensor, bits: int = 8) -> tuple:
    """Symmetric per-output-channel INTb: q = clamp(round(w / s), -(2^(b-1)-1),
    2^(b-1)-1), s = max|w_channel| / (2^(b-1)-1). Returns (w_hat, q, scale);
    |w - w_hat| <= s/2 everywhere (no clipping: the max maps to qmax)."""
    if not 2 <= bits <= 16:
        raise CompressionError(f"must be in 2..16, got {bits}", field="bits")
    qmax = 2 ** (bits - 1) - 1
    scale = sym_scale(w, bits, per_channel=True)
    q = torch.clamp(torch.round(w / scale), -qmax, qmax)
    return q * scale, q, scale


def truncate_tensor(w: torch.Tensor, bits: int = 4, source_bits: int = 8) -> tuple:
    """Weight truncation: quantize to INT`source_bits` (per channel), then keep
    the sign and the bits-1 most significant of the source_bits-1 magnitude
    bits; the dropped low bits become zero (rounding toward zero, the plain
    truncation a bit-serial design gets by skipping the last cycles).
    Returns (w_hat, q_trunc, scale)."""
    if not 2 <= bits <= source_bits:
        raise CompressionError(f"must be in 2..source_bits={source_bits}, got {bits}", field="bits")
    _, q, scale = quantize_int_tensor(w, source_bits)
    drop = source_bits - bits
    mag = q.abs().to(torch.int64)
    mag = (mag >> drop) << drop
    qt = torch.sign(q) * mag.to(q.dtype)
    return qt * scale, qt, scale


def compress_int(model, calib=None, seed=0, bits: int = 8, scale_bits: int = 32,
                 skip_layers=()) -> CompressionResult:
    """INT`bits` per-output-channel symmetric quantization of every Conv/Linear."""
    params = dict(bits=bits, scale_bits=scale_bits, skip_layers=tuple(skip_layers))

    def layer(w, _seed):
        w_hat, _, _ = quantize_int_tensor(w, bits)
        return w_hat, DenseFormat(bits=bits, n_scales=w.shape[0], scale_bits=scale_bits), {"bits": bits}

    new, fmts, err, n_w, states, t0 = compress_weights(model, "int", params, layer, seed, skip_layers)
    return CompressionResult(new, fmts, summarize("int", params, fmts, err, n_w, t0), states)


def compress_trunc(model, calib=None, seed=0, bits: int = 4, source_bits: int = 8,
                   scale_bits: int = 32, skip_layers=()) -> CompressionResult:
    """INT`source_bits` weights truncated to their `bits` top bits."""
    params = dict(bits=bits, source_bits=source_bits, scale_bits=scale_bits,
                  skip_layers=tuple(skip_layers))

    def layer(w, _seed):
        w_hat, _, _ = truncate_tensor(w, bits, source_bits)
        fmt = TruncFormat(bits=bits, n_scales=w.shape[0], scale_bits=scale_bits, source_bits=source_bits)
        return w_hat, fmt, {"bits": bits, "source_bits": source_bits}

    new, fmts, err, n_w, states, t0 = compress_weights(model, "trunc", params, layer, seed, skip_layers)
    return CompressionResult(new, fmts, summarize("trunc", params, fmts, err, n_w, t0), states)
