"""SSVQ: sign-splitting vector quantization.

1. W = S * |W|: one sign bit per weight.
2. k-means (faiss) on the all-positive |W| sub-vectors (length d along the
   input channels, padded like vq.py); the magnitude codebook is stored as
   unsigned `codebook_bits` integers times one scale.
3. Learnable signs: a latent L (initialised to W itself, so sign(L) = sign(W)
   and |L| says how sure the sign is) whose sign is used in the forward pass;
   the gradient passes straight through sign() to L. Trained jointly with the
   codebooks on calibration data (cross-entropy), assignments fixed.
4. Progressive freezing (`SignFreezer`): every `freeze_interval` steps, signs
   whose flip rate over the interval (flips / steps) exceeds a threshold are
   frozen to their majority value over the interval; the threshold follows a
   cosine schedule from `flip_rate_start` down to `flip_rate_end` over the
   run, so freezing gets stricter as training settles. The paper found an
   interval of about 500 iterations best; the threshold values are not in
   what we could read (ours: 0.1 -> 0.01).
Zero weights get sign +1.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from archsim.ir.formats import SSVQFormat
from ._common import (CompressionError, CompressionResult, assign_nearest, compress_weights, finetune, from_rows,
                      kmeans_faiss, pad_cols, quant_unsigned, run_len_of, summarize, to_rows)


def sign_of(x: torch.Tensor) -> torch.Tensor:
    """+1 / -1 (zero counts as +1)."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def ste_sign(x: torch.Tensor) -> torch.Tensor:
    """sign() forward, identity gradient (straight-through estimator)."""
    return x + (sign_of(x) - x).detach()


class SignFreezer:
    """Progressive sign freezing for one tensor of signs (see module docstring).

    observe(sign) after every optimizer step with the latent's current sign;
    effective(sign) is what the forward pass must use (frozen positions take
    their frozen value, whatever the latent does afterwards)."""

    def __init__(self, init_sign: torch.Tensor, interval: int, total_steps: int,
                 flip_rate_start: float = 0.1, flip_rate_end: float = 0.01):
        if interval < 1:
            raise CompressionError("must be >= 1", field="freeze_interval")
        self.interval = interval
        self.total_steps = max(1, total_steps)
        self.flip_rate_start = flip_rate_start
        self.flip_rate_end = flip_rate_end
        self.frozen = torch.zeros_like(init_sign, dtype=torch.bool)
        self.frozen_sign = sign_of(init_sign).detach().clone()
        self.prev = self.frozen_sign.clone()
        self.flips = torch.zeros_like(init_sign, dtype=torch.int32)
        self.pos_count = torch.zeros_like(init_sign, dtype=torch.int32)
        self.seen = 0
        self.step = 0

    def threshold(self, step: int) -> float:
        """Cosine schedule: flip_rate_start at step 0, flip_rate_end at the end."""
        t = min(step, self.total_steps) / self.total_steps
        return self.flip_rate_end + 0.5 * (self.flip_rate_start - self.flip_rate_end) * (1 + math.cos(math.pi * t))

    def effective(self, sign: torch.Tensor) -> torch.Tensor:
        return torch.where(self.frozen, self.frozen_sign, sign)

    def observe(self, latent_sign: torch.Tensor) -> int:
        """Record one step; at the end of an interval freeze. Returns how many
        signs were newly frozen."""
        s = self.effective(sign_of(latent_sign).detach())
        self.flips += ((s != self.prev) & ~self.frozen).to(torch.int32)
        self.pos_count += (s > 0).to(torch.int32)
        self.prev = s
        self.seen += 1
        self.step += 1
        if self.seen < self.interval:
            return 0
        rate = self.flips.float() / self.seen
        new = ~self.frozen & (rate > self.threshold(self.step))
        majority = torch.where(2 * self.pos_count > self.seen, 1.0,
                               torch.where(2 * self.pos_count < self.seen, -1.0, s)).to(s.dtype)
        self.frozen_sign = torch.where(new, majority, self.frozen_sign)
        self.frozen |= new
        self.prev = self.effective(s)
        self.flips.zero_()
        self.pos_count.zero_()
        self.seen = 0
        return int(new.sum())


def ssvq_init_tensor(w: torch.Tensor, k: int = 256, d: int = 16, codebook_bits: int = 8,
                     niter: int = 20, seed: int = 0, max_points_per_centroid: int = 256) -> dict:
    """Sign split + k-means on |W|. Returns the layer state: codebook [k', d]
    (>= 0, quantized), indices [V], latent (= W), padded row shape, shape."""
    rows = to_rows(w.abs())
    rows_p = pad_cols(rows, d)
    vecs = rows_p.reshape(-1, d)
    codebook = kmeans_faiss(vecs, k, niter=niter, seed=seed,
                            max_points_per_centroid=max_points_per_centroid)
    codebook = quant_unsigned(codebook.clamp_min(0), codebook_bits)
    idx = assign_nearest(vecs, codebook)
    return {"codebook": codebook, "indices": idx, "latent": w.detach().clone(),
            "rows_shape": tuple(rows_p.shape), "run_len": run_len_of(w.shape), "shape": tuple(w.shape)}


def ssvq_magnitude(codebook: torch.Tensor, state: dict) -> torch.Tensor:
    rows = codebook[state["indices"]].reshape(state["rows_shape"])
    return from_rows(rows[:, :state["run_len"]], state["shape"])


def ssvq_reconstruct(codebook: torch.Tensor, sign: torch.Tensor, state: dict) -> torch.Tensor:
    """W_hat = sign * C[idx] (differentiable in codebook and, via STE, sign)."""
    return sign * ssvq_magnitude(codebook, state)


def train_ssvq(model, states: dict, calib, steps: int, lr_codebook: float = 1e-4,
               lr_sign: float = 1e-4, freeze_interval: int = 500, flip_rate_start: float = 0.1,
               flip_rate_end: float = 0.01, codebook_bits: int = 8, seed: int = 0,
               on_step: Optional[Callable[[int, dict, dict], None]] = None) -> dict:
    """Jointly train codebooks and sign latents of all layers with STE and
    progressive freezing; updates `states` in place (codebook quantized,
    'sign' = final effective signs, 'frozen' mask). on_step(step, signs,
    frozen) sees each layer's effective signs after every step (for tests).
    Returns {"loss": [...], "frozen_fraction": float}."""
    books = {n: torch.nn.Parameter(st["codebook"].clone()) for n, st in states.items()}
    latents = {n: torch.nn.Parameter(st["latent"].clone()) for n, st in states.items()}
    freezers = {n: SignFreezer(st["latent"], freeze_interval, steps, flip_rate_start, flip_rate_end)
                for n, st in states.items()}
    # unsigned fake-quant at a fixed per-layer scale (from the k-means codebook)
    qmax = 2 ** codebook_bits - 1
    scales = {n: (st["codebook"].max() / qmax).clamp_min(1e-12) for n, st in states.items()}

    def fq(c, s):
        if codebook_bits >= 32:
            return c
        q = torch.clamp(c / s, 0, qmax)
        return (q + (torch.round(q) - q).detach()) * s

    def build():
        out = {}
        for n, st in states.items():
            fz = freezers[n]
            sign = torch.where(fz.frozen, fz.frozen_sign, ste_sign(latents[n]))
            out[f"{n}.weight"] = ssvq_reconstruct(fq(books[n], scales[n]), sign, st)
        return out

    def after(step):
        with torch.no_grad():
            for n in states:
                books[n].clamp_(min=0)  # magnitudes stay non-negative
                freezers[n].observe(latents[n])
        if on_step is not None:
            on_step(step, {n: freezers[n].effective(sign_of(latents[n].detach())) for n in states},
                    {n: freezers[n].frozen.clone() for n in states})

    param_groups = [{"params": list(books.values()), "lr": lr_codebook},
                    {"params": list(latents.values()), "lr": lr_sign}]
    # Adam takes parameter groups, one learning rate each
    losses = finetune(model, build, param_groups, calib, steps, lr=lr_codebook, after_step=after, seed=seed)
    n_frozen = n_all = 0
    with torch.no_grad():
        for n, st in states.items():
            st["codebook"] = fq(books[n], scales[n]).detach()
            st["sign"] = freezers[n].effective(sign_of(latents[n].detach()))
            st["frozen"] = freezers[n].frozen.clone()
            n_frozen += int(st["frozen"].sum())
            n_all += st["frozen"].numel()
    return {"loss": losses, "frozen_fraction": n_frozen / max(1, n_all)}


def compress_ssvq(model, calib=None, seed=0, k: int = 256, d: int = 16, codebook_bits: int = 8,
                  niter: int = 20, max_points_per_centroid: int = 256, steps: int = 100,
                  lr_codebook: float = 1e-4, lr_sign: float = 1e-4, freeze_interval: int = 500,
                  flip_rate_start: float = 0.1, flip_rate_end: float = 0.01, scale_bits: int = 32,
                  skip_layers=()) -> CompressionResult:
    """SSVQ of every Conv/Linear. Default d=16, k=256 (about 1.5 bits per
    weight + codebook, the paper's 21x point; the paper's d was not readable).
    Without calib (or steps=0) the signs are the weights' signs and nothing is
    trained. Freezing only acts once `freeze_interval` steps have run: for
    short runs set it smaller than `steps`."""
    params = dict(k=k, d=d, codebook_bits=codebook_bits, niter=niter,
                  max_points_per_centroid=max_points_per_centroid, steps=steps,
                  lr_codebook=lr_codebook, lr_sign=lr_sign, freeze_interval=freeze_interval,
                  flip_rate_start=flip_rate_start, flip_rate_end=flip_rate_end,
                  scale_bits=scale_bits, skip_layers=tuple(skip_layers))

    def layer(w, layer_seed):
        st = ssvq_init_tensor(w, k, d, codebook_bits, niter, layer_seed, max_points_per_centroid)
        st["sign"] = sign_of(w)
        fmt = SSVQFormat(k=st["codebook"].shape[0], d=d, codebook_bits=codebook_bits,
                         scale_bits=scale_bits if codebook_bits < 32 else 0,
                         run_len=run_len_of(w.shape), sign_bits=1)
        return ssvq_reconstruct(st["codebook"], st["sign"], st), fmt, st

    new, fmts, err, n_w, states, t0 = compress_weights(model, "ssvq", params, layer, seed, skip_layers)
    extra = {"trained": False}
    if calib is not None and steps > 0:
        res = train_ssvq(new, states, calib, steps, lr_codebook, lr_sign, freeze_interval,
                         flip_rate_start, flip_rate_end, codebook_bits, seed)
        extra = {"trained": True, "finetune_loss": res["loss"], "frozen_fraction": res["frozen_fraction"]}
        orig = dict(model.named_modules())
        err = {}
        with torch.no_grad():
            for name, mod in dict(new.named_modules()).items():
                if name in states:
                    st = states[name]
                    w_hat = ssvq_reconstruct(st["codebook"], st["sign"], st)
                    mod.weight.copy_(w_hat)
                    err[name] = float(((w_hat - orig[name].weight.float()) ** 2).sum())
    info = summarize("ssvq", params, fmts, err, n_w, t0)
    info.update(extra)
    return CompressionResult(new, fmts, info, states)
