"""Vector quantization of weights (plain VQ, the base of MVQ and SSVQ).

Sub-vectors of length d run along the input-channel direction (Conv2d
[O, I, kh, kw] -> [O, kh, kw, I] -> rows [O*kh*kw, I], see _common.to_rows);
a run that d does not divide is zero-padded at its end, and the padded
sub-vectors cost an index like any other (VQFormat.run_len counts them).

One codebook per layer: layers differ in weight scale by orders of magnitude,
so a shared codebook would waste codewords, and a per-layer codebook
(k*d*8 bits = 8 kbit for k=256, d=4) is small next to all but the smallest
layers. k-means runs in faiss (seeded, `niter` iterations, trained on a
subsample of k*max_points_per_centroid sub-vectors); then the codebook is
quantized to `codebook_bits` (symmetric, one FP32 scale per codebook, counted)
and every sub-vector is assigned to its nearest quantized codeword.
"""
from __future__ import annotations

import torch

from archsim.ir.formats import VQFormat
from ._common import (CompressionResult, assign_nearest, compress_weights, from_rows,
                      kmeans_faiss, pad_cols, quant_sym, run_len_of, summarize, to_rows)


def vq_tensor(w: torch.Tensor, k: int = 256, d: int = 4, codebook_bits: int = 8,
              niter: int = 20, seed: int = 0, max_points_per_centroid: int = 256,
              scale_bits: int = 32) -> tuple:
    """VQ one weight tensor. Returns (w_hat, VQFormat, {"codebook": [k', d],
    "indices": [V]}) with k' = min(k, number of sub-vectors)."""
    rows = to_rows(w)
    length = rows.shape[1]
    rows_p = pad_cols(rows, d)
    vecs = rows_p.reshape(-1, d)
    codebook = kmeans_faiss(vecs, k, niter=niter, seed=seed,
                            max_points_per_centroid=max_points_per_centroid)
    codebook = quant_sym(codebook, codebook_bits)
    idx = assign_nearest(vecs, codebook)
    w_hat = from_rows(codebook[idx].reshape(rows_p.shape)[:, :length], w.shape)
    fmt = VQFormat(k=codebook.shape[0], d=d, codebook_bits=codebook_bits,
                   scale_bits=scale_bits if codebook_bits < 32 else 0,
                   run_len=run_len_of(w.shape))
    return w_hat, fmt, {"codebook": codebook, "indices": idx, "rows_shape": tuple(rows_p.shape),
                        "run_len": length, "shape": tuple(w.shape), "d": d}


def vq_reconstruct(codebook: torch.Tensor, state: dict) -> torch.Tensor:
    """W_hat = C[idx] in the weight's shape (differentiable in C)."""
    rows = codebook[state["indices"]].reshape(state["rows_shape"])
    return from_rows(rows[:, :state["run_len"]], state["shape"])


def compress_vq(model, calib=None, seed=0, k: int = 256, d: int = 4, codebook_bits: int = 8,
                niter: int = 20, max_points_per_centroid: int = 256, scale_bits: int = 32,
                skip_layers=()) -> CompressionResult:
    """Plain VQ of every Conv/Linear weight, one codebook per layer."""
    params = dict(k=k, d=d, codebook_bits=codebook_bits, niter=niter,
                  max_points_per_centroid=max_points_per_centroid, scale_bits=scale_bits,
                  skip_layers=tuple(skip_layers))

    def layer(w, layer_seed):
        return vq_tensor(w, k, d, codebook_bits, niter, layer_seed, max_points_per_centroid, scale_bits)

    new, fmts, err, n_w, states, t0 = compress_weights(model, "vq", params, layer, seed, skip_layers)
    return CompressionResult(new, fmts, summarize("vq", params, fmts, err, n_w, t0), states)
