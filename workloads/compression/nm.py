"""N:M structured pruning (baseline, and step 1 of MVQ).

In every group of M consecutive weights along the input-channel direction
(see _common.to_rows) keep the N most important; importance is |w| unless a
callable is given. Runs whose length M does not divide are zero-padded; the
padding has the lowest importance so it is pruned first (a padded group may
still have to keep a padding slot when it has fewer than N real weights).
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch

from archsim.ir.formats import NMFormat, nm_mask_bits_per_group
from ._common import (CompressionError, CompressionResult, compress_weights, from_rows, pad_cols,
                      run_len_of, summarize, to_rows)
from .uniform import quantize_int_tensor


def nm_mask_rows(rows: torch.Tensor, n: int, m: int, importance: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Boolean keep-mask for 2-D rows [R, L] with L a multiple of m: exactly n
    True in every group of m consecutive columns. Ties keep the earlier
    position (stable sort), so the mask is deterministic."""
    if rows.shape[1] % m:
        raise ValueError(f"row length {rows.shape[1]} is not a multiple of m={m}")
    if not 0 < n <= m:
        raise CompressionError(f"N:M needs 0 < N <= M, got {n}:{m}", field="n")
    imp = rows.abs() if importance is None else importance
    r, length = rows.shape
    g = imp.reshape(r, length // m, m)
    order = torch.sort(g, dim=2, descending=True, stable=True).indices
    mask = torch.zeros_like(g, dtype=torch.bool)
    mask.scatter_(2, order[..., :n], True)
    return mask.reshape(r, length)


def nm_prune_tensor(w: torch.Tensor, n: int = 2, m: int = 4, pad_multiple: Optional[int] = None,
                    importance: Union[str, Callable] = "magnitude") -> tuple:
    """Prune weight `w` N:M along its input channels.
    Returns (w_pruned [w.shape], mask_rows [R, Lpad] bool, rows_padded [R, Lpad]);
    pad_multiple (default m) is the padding unit of the rows (MVQ pads to
    lcm(d, m) so that groups and sub-vectors line up)."""
    pad_multiple = pad_multiple or m
    if pad_multiple % m:
        raise ValueError(f"pad_multiple {pad_multiple} must be a multiple of m={m}")
    rows = to_rows(w)
    length = rows.shape[1]
    rows_p = pad_cols(rows, pad_multiple)
    if importance == "magnitude":
        imp = rows_p.abs()
    elif callable(importance):
        imp = pad_cols(to_rows(importance(w)), pad_multiple)
    else:
        raise CompressionError(f"must be 'magnitude' or a callable, got {importance!r}", field="importance")
    # padding must lose against every real weight, including zeros
    if length % pad_multiple:
        imp = imp.clone()
        imp[:, length:] = -torch.inf
    mask = nm_mask_rows(rows_p, n, m, imp)
    pruned = from_rows((rows_p * mask)[:, :length], w.shape)
    return pruned, mask, rows_p


def compress_nm(model, calib=None, seed=0, n: int = 2, m: int = 4, value_bits: int = 8,
                mask_encoding: str = "bitmap", scale_bits: int = 32,
                importance: Union[str, Callable] = "magnitude", skip_layers=()) -> CompressionResult:
    """N:M pruning; kept values quantized to INT`value_bits` per output channel
    (value_bits=32: kept as FP32, no scales). Mask cost: see
    formats.nm_mask_bits_per_group (default 'bitmap', 1 bit per weight)."""
    nm_mask_bits_per_group(n, m, mask_encoding)  # validate before any work
    params = dict(n=n, m=m, value_bits=value_bits, mask_encoding=mask_encoding,
                  scale_bits=scale_bits, importance=importance if isinstance(importance, str) else "callable",
                  skip_layers=tuple(skip_layers))

    def layer(w, _seed):
        pruned, mask, _ = nm_prune_tensor(w, n, m, importance=importance)
        if value_bits < 32:
            pruned, _, _ = quantize_int_tensor(pruned, value_bits)  # zeros stay zero
            n_scales = w.shape[0]
        else:
            n_scales = 0
        fmt = NMFormat(n=n, m=m, value_bits=value_bits, mask_encoding=mask_encoding,
                       n_scales=n_scales, scale_bits=scale_bits, run_len=run_len_of(w.shape))
        return pruned, fmt, {"mask": mask, "m": m, "value_bits": value_bits, "run_len": run_len_of(w.shape),
                             "shape": tuple(w.shape)}

    new, fmts, err, n_w, states, t0 = compress_weights(model, "nm", params, layer, seed, skip_layers)
    return CompressionResult(new, fmts, summarize("nm", params, fmts, err, n_w, t0), states)
