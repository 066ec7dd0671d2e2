"""VQ of weights as LLM methods do it, on real weights of small models.

aqlm: additive multi-codebook VQ (AQLM, Egiazarian et al., ICML 2024).
  Every sub-vector of d weights (along the input channels) is the sum of M
  codewords, one from each of M codebooks of k entries. Fitted here by
  greedy residual k-means, AQLM's own initialisation: codebook m is seeded
  k-means (faiss) of what codebooks 1..m-1 left over. AQLM then refines the
  codes by beam search and the codebooks by Adam; that refinement is not
  done here, so the error is an upper bound of AQLM's.
lcvq: large-codebook VQ (QuIP# / VPTQ style): one codebook of k = 2^16
  codewords of d = 8 (2 bits/weight), optionally a residual codebook of
  residual_k codewords fitted by k-means to what the first one left over.

Both normalise each output channel by its largest |w| (one FP16 scale per
channel, counted), store codebooks in FP16, and use k' = min(k, number of
sub-vectors) codewords (a small layer has fewer sub-vectors than 2^16).
"""
from __future__ import annotations

import torch

from archsim.ir.formats import AdditiveVQFormat, LargeCodebookVQFormat
from ._common import (CompressionResult, assign_nearest, compress_weights, from_rows, kmeans_faiss,
                      pad_cols, run_len_of, summarize, to_rows)


def _residual_vq(vecs: torch.Tensor, ks: list, niter: int, seed: int, max_points_per_centroid: int):
    """Greedy residual k-means: one FP16 codebook per entry of ks. Returns
    (sum of the chosen codewords, codebooks, indices)."""
    approx = torch.zeros_like(vecs)
    books, idxs = [], []
    for m, k in enumerate(ks):
        resid = vecs - approx
        cb = kmeans_faiss(resid, k, niter=niter, seed=seed + 1000 * m,
                          max_points_per_centroid=max_points_per_centroid).half().float()
        idx = assign_nearest(resid, cb)
        approx = approx + cb[idx]
        books.append(cb)
        idxs.append(idx)
    return approx, books, idxs


def _vq_layer(w: torch.Tensor, d: int, ks: list, niter: int, seed: int, max_points_per_centroid: int):
    rows = to_rows(w)
    length = rows.shape[1]
    scale = rows.abs().amax(dim=1, keepdim=True).clamp_min(1e-12).half().float()
    rows_p = pad_cols(rows / scale, d)
    vecs = rows_p.reshape(-1, d)
    approx, books, idxs = _residual_vq(vecs, ks, niter, seed, max_points_per_centroid)
    w_hat = from_rows((approx.reshape(rows_p.shape)[:, :length]) * scale, w.shape)
    return w_hat, rows.shape[0], books, idxs


def compress_aqlm(model, calib=None, seed=0, k: int = 256, d: int = 8, m: int = 2, niter: int = 20,
                  max_points_per_centroid: int = 64, skip_layers=()) -> CompressionResult:
    """Additive VQ of every Linear/Conv weight: M = m codebooks of k entries
    over sub-vectors of d weights (defaults: AQLM's 2x8 setting, 2 bits/weight)."""
    params = dict(k=k, d=d, m=m, niter=niter, max_points_per_centroid=max_points_per_centroid,
                  skip_layers=tuple(skip_layers))

    def layer(w, layer_seed):
        w_hat, n_rows, books, idxs = _vq_layer(w, d, [k] * m, niter, layer_seed, max_points_per_centroid)
        kk = max(b.shape[0] for b in books)
        fmt = AdditiveVQFormat(k=kk, d=d, codebook_bits=16, n_codebooks=m, n_scales=n_rows, scale_bits=16,
                               run_len=run_len_of(w.shape))
        return w_hat, fmt, {"codebooks": books, "indices": idxs}

    new, fmts, err, n_w, states, t0 = compress_weights(model, "aqlm", params, layer, seed, skip_layers)
    return CompressionResult(new, fmts, summarize("aqlm", params, fmts, err, n_w, t0), states)


def compress_lcvq(model, calib=None, seed=0, k: int = 1 << 16, d: int = 8, residual_k: int = 0,
                  niter: int = 10, max_points_per_centroid: int = 16, skip_layers=()) -> CompressionResult:
    """Large-codebook VQ of every Linear/Conv weight: k codewords of d
    weights (default 2^16 x 8, 2 bits/weight), plus a residual codebook of
    residual_k codewords (0: none)."""
    params = dict(k=k, d=d, residual_k=residual_k, niter=niter,
                  max_points_per_centroid=max_points_per_centroid, skip_layers=tuple(skip_layers))
    ks = [k] + ([residual_k] if residual_k else [])

    def layer(w, layer_seed):
        w_hat, n_rows, books, idxs = _vq_layer(w, d, ks, niter, layer_seed, max_points_per_centroid)
        fmt = LargeCodebookVQFormat(k=books[0].shape[0], d=d, codebook_bits=16,
                                    residual_k=books[1].shape[0] if residual_k else 0,
                                    n_scales=n_rows, scale_bits=16, run_len=run_len_of(w.shape))
        return w_hat, fmt, {"codebooks": books, "indices": idxs}

    new, fmts, err, n_w, states, t0 = compress_weights(model, "lcvq", params, layer, seed, skip_layers)
    return CompressionResult(new, fmts, summarize("lcvq", params, fmts, err, n_w, t0), states)
