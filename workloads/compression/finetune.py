"""One compression-aware fine-tuning loop for every method.

    res = compress(model, "mvq", calib, n=2, m=4, k=32, d=4)
    ft = finetune_result(res, teacher=model, calib=batches, steps=300)

The whole network trains: each method's compression parameters (through
straight-through estimators where there is rounding) and everything the
formats do not store (BatchNorm affine parameters and statistics, LayerNorm,
biases, layers left uncompressed, position embeddings). Same optimizer,
schedule, loss and data for every method, so a step budget is a fair budget:

  * Adam, learning rate warmed up linearly over the first 5% of the steps
    then cosine-decayed to 0; compression tensors in units of their initial
    abs-max (lr 1e-3 moves an entry by about 0.1% of its tensor's range per
    step), the rest of the network at `lr_rest` (absolute);
  * loss: KL divergence to the uncompressed teacher's softmax (distill=True,
    the default) or cross-entropy on the labels;
  * BatchNorm in training mode (its statistics follow the compressed
    network) unless bn="eval".

What each method trains (its "adapter"):
  vq    codebooks, fake-quantized on their build-time grid (STE);
        optional re-assignment every `reassign_every` steps (sub-vectors of
        the original weights to the nearest current codeword)
  mvq   codebooks through W = mask * C[idx] (pruned positions get no
        gradient and stay zero: masked gradients); optional masked
        re-assignment
  ssvq  magnitude codebooks (unsigned grid, STE) and sign latents (STE
        through sign()) with progressive sign freezing (ssvq.SignFreezer,
        interval `freeze_interval`, default steps // 5)
  swis  latent weights projected onto their groups' fixed shift sets (STE)
  trunc, int  latent weights on the per-channel INT/truncation grid (STE)
  nm    latent weights times the fixed N:M mask, INT values (STE)
  pq    soft-to-hard: for the first `pq_soft_frac` of the steps prototypes and
        LUTs train through the soft assignment (PECAN-style, pq.finetune_tables'
        estimator), then the prototypes (and so the hard assignment) are
        frozen and the LUTs, biases and the rest train on.

Storage: nothing a format counts changes shape or grid: codebooks stay k x d
on their `codebook_bits` grid, masks / shift sets / scales of the formats stay
fixed, SSVQ stores one sign bit per weight frozen or not, PQ tables stay on
their grids. `finetune_result` checks the final model against the formats
(check_storage) and reports bits/weight from those formats.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import pickle
import sys
import time
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._common import (CompressionError, CompressionResult, calib_batches, from_rows, pad_cols, summarize,
                      to_rows)


class _Shared:
    """A caller's bar (anything with update / set_postfix_str), advanced by
    the loop's steps and left open for the caller's next task."""

    def __init__(self, bar):
        self.bar = bar

    def update(self, n=1):
        self.bar.update(n)

    def set_postfix_str(self, s):
        self.bar.set_postfix_str(s)

    def close(self):
        pass


def _progress(total: int, desc: str, enabled):
    """A tqdm bar on stderr when tqdm is installed and `enabled` is true, the
    caller's bar when `enabled` is one, else a no-op."""
    if hasattr(enabled, "update"):
        return _Shared(enabled)
    if enabled:
        try:
            from tqdm import tqdm
            return tqdm(total=total, desc=desc, file=sys.stderr, mininterval=2.0, leave=False)
        except ImportError:
            pass

    class _Null:
        def update(self, n=1):
            pass

        def set_postfix_str(self, s):
            pass

        def close(self):
            pass
    return _Null()


def _fq_signed(c: torch.Tensor, scale, qmax) -> torch.Tensor:
    if scale is None:
        return c
    q = torch.clamp(c / scale, -qmax, qmax)
    return (q + (torch.round(q) - q).detach()) * scale


def _grid_signed(c: torch.Tensor, scale, qmax) -> torch.Tensor:
    return c if scale is None else torch.clamp(torch.round(c / scale), -qmax, qmax) * scale


# ----------------------------------------------------------------------------
# adapters: what each method trains and how its weights are rebuilt
# ----------------------------------------------------------------------------

class Adapter:
    """groups(): Adam parameter groups ({"params", "unit"}); build(): the
    values functional_call substitutes ({"<module>.weight": tensor} or PQ
    buffers); after_step(step); finalize(model): write the final compressed
    values into the model; returns {layer: squared weight error} (or None)."""

    def __init__(self, model, result, teacher, steps, opts):
        self.model, self.result, self.teacher, self.steps, self.opts = model, result, teacher, steps, opts
        self.orig = dict(teacher.named_modules()) if teacher is not None else {}

    def overridden(self) -> set:
        return {f"{n}.weight" for n in self.result.state}

    def after_step(self, step: int) -> None:
        pass

    def _orig_weight(self, name):
        if name not in self.orig:
            raise CompressionError(f"fine-tuning {self.result.info.get('method')} needs the original model "
                                   f"(teacher) with layer {name!r}", field="teacher")
        return self.orig[name].weight.detach().float()

    def _write(self, model, weights: dict) -> dict:
        mods = dict(model.named_modules())
        err = {}
        with torch.no_grad():
            for name, w in weights.items():
                mods[name].weight.copy_(w.to(mods[name].weight.dtype))
                if name in self.orig:
                    err[name] = float(((w - self.orig[name].weight.float()) ** 2).sum())
        return err


class _CodebookAdapter(Adapter):
    """VQ / MVQ: signed codebooks on a fixed grid."""

    masked = False

    def __init__(self, model, result, teacher, steps, opts):
        super().__init__(model, result, teacher, steps, opts)
        bits = result.info["params"]["codebook_bits"]
        self.qmax = 2 ** (bits - 1) - 1 if bits < 32 else None
        self.books, self.scales = {}, {}
        for n, st in result.state.items():
            c = st["codebook"]
            self.books[n] = nn.Parameter(c.clone())
            amax = c.abs().max()
            self.scales[n] = (amax / self.qmax).clamp_min(1e-12) if self.qmax else None
        self.reassign_every = int(opts.get("reassign_every", 0) or 0)

    def groups(self):
        return [{"params": [b], "unit": float(b.detach().abs().max()) or 1.0} for b in self.books.values()]

    def rebuild(self, c, st):
        from .vq import vq_reconstruct
        return vq_reconstruct(c, st)

    def build(self):
        return {f"{n}.weight": self.rebuild(_fq_signed(self.books[n], self.scales[n], self.qmax), st)
                for n, st in self.result.state.items()}

    def reassign(self, name, st, c):
        from ._common import assign_nearest
        vecs = pad_cols(to_rows(self._orig_weight(name)), st["d"]).reshape(-1, st["d"])
        st["indices"] = assign_nearest(vecs, c)

    def after_step(self, step):
        if self.reassign_every and (step + 1) % self.reassign_every == 0 and step + 1 < self.steps:
            with torch.no_grad():
                for n, st in self.result.state.items():
                    self.reassign(n, st, _grid_signed(self.books[n], self.scales[n], self.qmax))

    def finalize(self, model):
        out = {}
        for n, st in self.result.state.items():
            st["codebook"] = _grid_signed(self.books[n].detach(), self.scales[n], self.qmax)
            out[n] = self.rebuild(st["codebook"], st).detach()
        return self._write(model, out)


class _MVQAdapter(_CodebookAdapter):
    def rebuild(self, c, st):
        from .mvq import mvq_reconstruct
        return mvq_reconstruct(c, st)  # mask * C[idx]: masked gradients

    def reassign(self, name, st, c):
        from .mvq import masked_assign
        d = st["mask"].shape[1]
        rows = torch.zeros(st["rows_shape"])
        rows[:, :st["run_len"]] = to_rows(self._orig_weight(name))
        x = rows.reshape(-1, d) * st["mask"]
        st["indices"], _ = masked_assign(x, st["mask"], c)


class _SSVQAdapter(Adapter):
    def __init__(self, model, result, teacher, steps, opts):
        super().__init__(model, result, teacher, steps, opts)
        from .ssvq import SignFreezer
        p = result.info["params"]
        bits = p["codebook_bits"]
        self.qmax = 2 ** bits - 1 if bits < 32 else None
        interval = int(opts.get("freeze_interval") or max(1, steps // 5))
        self.books, self.latents, self.freezers, self.scales = {}, {}, {}, {}
        for n, st in result.state.items():
            self.books[n] = nn.Parameter(st["codebook"].clone())
            # the latent starts at the signs in use (a trained result keeps its frozen signs' values)
            lat = st["latent"].clone() if "latent" in st else st["sign"].clone()
            if "sign" in st:
                lat = st["sign"] * lat.abs()
            self.latents[n] = nn.Parameter(lat)
            self.freezers[n] = SignFreezer(lat, interval, steps, p.get("flip_rate_start", 0.1),
                                           p.get("flip_rate_end", 0.01))
            self.scales[n] = (st["codebook"].max() / self.qmax).clamp_min(1e-12) if self.qmax else None

    def groups(self):
        return ([{"params": [b], "unit": float(b.detach().abs().max()) or 1.0} for b in self.books.values()]
                + [{"params": [lt], "unit": float(lt.detach().abs().max()) or 1.0} for lt in self.latents.values()])

    def _fq(self, c, s):
        if s is None:
            return c
        q = torch.clamp(c / s, 0, self.qmax)
        return (q + (torch.round(q) - q).detach()) * s

    def build(self):
        from .ssvq import ssvq_reconstruct, ste_sign
        out = {}
        for n, st in self.result.state.items():
            fz = self.freezers[n]
            sign = torch.where(fz.frozen, fz.frozen_sign, ste_sign(self.latents[n]))
            out[f"{n}.weight"] = ssvq_reconstruct(self._fq(self.books[n], self.scales[n]), sign, st)
        return out

    def after_step(self, step):
        with torch.no_grad():
            for n in self.result.state:
                self.books[n].clamp_(min=0)
                self.freezers[n].observe(self.latents[n])

    def finalize(self, model):
        from .ssvq import sign_of, ssvq_reconstruct
        out = {}
        frozen = total = 0
        for n, st in self.result.state.items():
            c = self.books[n].detach().clamp_min(0)
            st["codebook"] = c if self.scales[n] is None else \
                torch.clamp(torch.round(c / self.scales[n]), 0, self.qmax) * self.scales[n]
            st["sign"] = self.freezers[n].effective(sign_of(self.latents[n].detach()))
            st["frozen"] = self.freezers[n].frozen.clone()
            st["latent"] = self.latents[n].detach().clone()
            frozen += int(st["frozen"].sum())
            total += st["frozen"].numel()
            out[n] = ssvq_reconstruct(st["codebook"], st["sign"], st).detach()
        self.result.info["frozen_fraction"] = frozen / max(1, total)
        return self._write(model, out)


class _LatentAdapter(Adapter):
    """SWIS / trunc / int: FP32 latent weights projected every forward pass
    onto the method's fixed grid (straight-through)."""

    def __init__(self, model, result, teacher, steps, opts):
        super().__init__(model, result, teacher, steps, opts)
        mods = dict(model.named_modules())
        self.latents = {}
        for n in result.state:
            w = self.orig[n].weight if n in self.orig else mods[n].weight
            self.latents[n] = nn.Parameter(w.detach().float().clone())

    def groups(self):
        return [{"params": [lt], "unit": float(lt.detach().abs().max()) or 1.0} for lt in self.latents.values()]

    def project(self, latent, st):
        raise NotImplementedError

    def build(self):
        return {f"{n}.weight": self.project(self.latents[n], st) for n, st in self.result.state.items()}

    def finalize(self, model):
        with torch.no_grad():
            out = {n: self.project(self.latents[n], st).detach() for n, st in self.result.state.items()}
        return self._write(model, out)


class _SWISAdapter(_LatentAdapter):
    def project(self, latent, st):
        from .swis import swis_project
        return swis_project(latent, st)


class _UniformAdapter(_LatentAdapter):
    def project(self, latent, st):
        from .uniform import quantize_int_tensor, truncate_tensor
        with torch.no_grad():
            if "source_bits" in st:
                w_hat, _, _ = truncate_tensor(latent.detach(), st["bits"], st["source_bits"])
            else:
                w_hat, _, _ = quantize_int_tensor(latent.detach(), st["bits"])
        return latent + (w_hat - latent).detach()


class _NMAdapter(_LatentAdapter):
    """N:M: latent weights times the fixed mask, INT values (STE)."""

    def project(self, latent, st):
        from .uniform import quantize_int_tensor
        rows = pad_cols(to_rows(latent), st["m"]) * st["mask"].to(latent.dtype)
        w = from_rows(rows[:, :st["run_len"]], st["shape"])
        if st["value_bits"] >= 32:
            return w
        with torch.no_grad():
            w_hat, _, _ = quantize_int_tensor(w.detach(), st["value_bits"])
        return w + (w_hat - w).detach()


class _PQAdapter(Adapter):
    """Prototypes + LUTs + biases of every PQ layer (buffers substituted by
    functional_call), fake-quantized on their build-time grids."""

    def __init__(self, model, result, teacher, steps, opts, calib_first=None):
        super().__init__(model, result, teacher, steps, opts)
        from .pq import PQLayer, mean_nearest_distance
        self.pqs = {n: m for n, m in model.named_modules() if isinstance(m, PQLayer)}
        p = result.info["params"]
        self.bits = {"lut": p.get("lut_bits"), "prototypes": p.get("proto_bits")}
        self.soft_steps = int(round(float(opts.get("pq_soft_frac", 0.5)) * steps))
        self.thetas, self.units, self.scales, self.qmaxes = {}, {}, {}, {}
        for name, pq in self.pqs.items():
            for key in ("lut", "prototypes", "bias"):
                val = getattr(pq, key)
                if val is None:
                    continue
                k = f"{name}.{key}"
                self.thetas[k] = nn.Parameter(val.detach().clone())
                bits = self.bits.get(key)
                quant = bits is not None and bits < 32
                self.scales[k] = (getattr(pq, "proto_scale" if key == "prototypes" else "lut_scale")
                                  if quant else None)
                self.qmaxes[k] = 2 ** (bits - 1) - 1 if quant else None
        # temperature unit per layer: mean nearest-prototype distance of its inputs on one batch
        self.temps = {}
        tau = float(opts.get("temperature", 1.0))
        if calib_first is not None:
            cols = {}

            def hook(name):
                def f(mod, inp):
                    cols[name] = _pq_columns(mod, inp[0].detach())
                return f
            hs = [pq.register_forward_pre_hook(hook(n)) for n, pq in self.pqs.items()]
            try:
                with torch.no_grad():
                    was = model.training
                    model.eval()
                    model(calib_first)
                    model.train(was)
            finally:
                for h in hs:
                    h.remove()
            for n, pq in self.pqs.items():
                c = cols[n]
                if c.shape[0] > 8192:
                    c = c[torch.randperm(c.shape[0], generator=torch.Generator().manual_seed(0))[:8192]]
                self.temps[n] = tau * mean_nearest_distance(pq, c)

    def overridden(self):
        return set()

    def groups(self):
        return [{"params": [t], "unit": (1.0 if k.endswith(".bias") else float(t.detach().abs().max()) or 1.0),
                 "key": k} for k, t in self.thetas.items()]

    def start(self):
        for n, pq in self.pqs.items():
            pq.soft_temperature = self.temps.get(n, 1.0)

    def stop(self):
        for pq in self.pqs.values():
            pq.soft_temperature = None

    def build(self):
        return {k: _fq_signed(t, self.scales[k], self.qmaxes[k]) for k, t in self.thetas.items()}

    def freeze_prototypes(self, step) -> bool:
        return step >= self.soft_steps

    def finalize(self, model):
        mods = dict(model.named_modules())
        with torch.no_grad():
            for k, t in self.thetas.items():
                name, _, key = k.rpartition(".")
                getattr(mods[name], key).copy_(_grid_signed(t.detach(), self.scales[k], self.qmaxes[k]))
        return None


def _pq_columns(pq, x):
    from .pq import PQConv2d
    if isinstance(pq, PQConv2d):
        cols = F.unfold(x, pq.kernel_size, dilation=pq.dilation, padding=pq.padding, stride=pq.stride)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    return x.reshape(-1, x.shape[-1])


ADAPTERS = {"vq": _CodebookAdapter, "mvq": _MVQAdapter, "ssvq": _SSVQAdapter, "swis": _SWISAdapter,
            "trunc": _UniformAdapter, "int": _UniformAdapter, "nm": _NMAdapter, "pq": _PQAdapter}


# ----------------------------------------------------------------------------
# storage check
# ----------------------------------------------------------------------------

def check_storage(result: CompressionResult) -> None:
    """Raise AssertionError unless the final model is what the formats count:
    VQ / MVQ / SSVQ weights are made of at most k distinct codewords (MVQ:
    masked by its fixed N:M mask; SSVQ: times one sign per weight), codebooks
    on their grids; INT / trunc weights on <= 2^bits - 1 levels per channel;
    PQ tables on their grids."""
    method = result.info["method"]
    mods = dict(result.model.named_modules())
    for name, fmt in result.formats.items():
        st = result.state.get(name)
        if method in ("vq", "mvq", "ssvq"):
            w = mods[name].weight.detach().float()
            d = fmt.d
            vecs = pad_cols(to_rows(w), d).reshape(-1, d)
            if method == "mvq":
                from .mvq import mvq_reconstruct
                assert not ((vecs != 0) & (st["mask"] == 0)).any(), f"{name}: weights outside the N:M mask"
                assert torch.equal(w, mvq_reconstruct(st["codebook"], st)), f"{name}: weights != mask * C[idx]"
            elif method == "vq":
                from .vq import vq_reconstruct
                assert torch.equal(w, vq_reconstruct(st["codebook"], st)), f"{name}: weights != C[idx]"
            else:
                from .ssvq import ssvq_reconstruct
                assert torch.equal(w, ssvq_reconstruct(st["codebook"], st["sign"], st)), \
                    f"{name}: weights != sign * C[idx]"
            assert st["codebook"].shape[0] <= fmt.k
            c = st["codebook"]
            bits = fmt.codebook_bits
            if bits < 32:
                levels = torch.unique(c).numel()
                assert levels <= 2 ** bits, f"{name}: codebook has {levels} levels > 2^{bits}"
        elif method == "nm":
            w = pad_cols(to_rows(mods[name].weight.detach().float()), st["m"])
            assert not ((w != 0) & ~st["mask"]).any(), f"{name}: weights outside the N:M mask"
        elif method in ("int", "trunc"):
            w = mods[name].weight.detach().float().reshape(fmt.n_scales, -1)
            for row in w[: min(8, w.shape[0])]:
                assert torch.unique(row).numel() <= 2 ** fmt.bits, f"{name}: more levels than {fmt.bits} bits"
        elif method == "pq":
            pq = mods[name]
            for key, sk in (("lut", "lut_scale"), ("prototypes", "proto_scale")):
                s = getattr(pq, sk)
                if s is not None:
                    q = getattr(pq, key) / s
                    assert torch.allclose(q, torch.round(q), atol=1e-3), f"{name}.{key} off its grid"


# ----------------------------------------------------------------------------
# the loop
# ----------------------------------------------------------------------------

@torch.no_grad()
def _val_top1(model: nn.Module, val, weights: Optional[dict] = None, batch_size: int = 500) -> float:
    """Top-1 of `model` (eval mode; with `weights` substituted, as in
    training) on `val` = (images, labels); the model's mode is restored."""
    from torch.func import functional_call

    x, y = val
    modes = {m: m.training for m in model.modules()}
    model.eval()
    correct = 0
    try:
        for s in range(0, len(y), batch_size):
            xb = x[s:s + batch_size]
            out = model(xb) if weights is None else functional_call(model, weights, (xb,), strict=False)
            correct += int((out.argmax(1) == y[s:s + batch_size]).sum())
    finally:
        for m, t in modes.items():
            m.train(t)
    return correct / max(1, len(y))


def _snapshot(objs, teacher: Optional[nn.Module]):
    """A deep copy of `objs` that shares (does not copy) the teacher."""
    memo = {}
    if teacher is not None:
        for t in itertools.chain(teacher.modules(), teacher.parameters(), teacher.buffers()):
            memo[id(t)] = t
    return copy.deepcopy(objs, memo)


def finetune_result(result: CompressionResult, teacher: Optional[nn.Module], calib, steps: int,
                    lr: float = 1e-3, lr_rest: float = 1e-4, distill: bool = True, bn: str = "train",
                    train_rest: bool = True, warmup: float = 0.05, seed: int = 0, progress=True,
                    check: bool = True, val=None, val_every: int = 0, **opts) -> CompressionResult:
    """Fine-tune a compressed model (a `compress()` result) for `steps` Adam
    steps on `calib` ((inputs, labels) batches, cycled). `teacher`: the
    original model (distillation target; VQ re-assignment and the latent-weight
    methods start from its weights). Method options in `opts`:
    reassign_every (vq, mvq), freeze_interval (ssvq), pq_soft_frac and
    temperature (pq). Returns a new CompressionResult (the input is not
    modified) whose info has top-level bits/weight from the unchanged formats
    plus finetune_loss, finetune_steps, finetune_wall_s.

    `progress`: True / False, or a caller's bar (anything with update and
    set_postfix_str) that the steps advance.

    `val`: a held-apart (images, labels) split, none of it in `calib`. The
    post-training model and the model every `val_every` steps (default
    steps // 8) and at the last step are scored on it (top-1), and the best
    of them is returned (ties keep the earlier one), so a short calibration
    set that the loop overfits can never make the result worse on unseen
    data than the post-training one. info gains finetune_val ([step, top-1]
    pairs; step 0 is the post-training model) and finetune_best_step."""
    method = result.info["method"]
    if method not in ADAPTERS:
        raise CompressionError(f"no fine-tuning for method {method!r}; have {sorted(ADAPTERS)}", field="method")
    if bn not in ("train", "eval"):
        raise CompressionError(f"must be 'train' or 'eval', got {bn!r}", field="bn")
    from torch.func import functional_call

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    res = CompressionResult(copy.deepcopy(result.model), dict(result.formats), copy.deepcopy(result.info),
                            copy.deepcopy(result.state))
    model = res.model
    batches = calib_batches(calib, steps)
    first = None
    if method == "pq":
        batches = list(batches)
        first = batches[0][0] if batches else None
        adapter = _PQAdapter(model, res, teacher, steps, opts, calib_first=first)
    else:
        adapter = ADAPTERS[method](model, res, teacher, steps, opts)
    groups = [{"params": g["params"], "lr": lr * g["unit"], "base": lr * g["unit"], "key": g.get("key", "")}
              for g in adapter.groups()]
    skip = adapter.overridden()
    rest = [p for n, p in model.named_parameters() if n not in skip] if train_rest else []
    for n, p in model.named_parameters():
        p.requires_grad_(n not in skip and train_rest)
    if rest:
        groups.append({"params": rest, "lr": lr_rest, "base": lr_rest, "key": "rest"})
    opt = torch.optim.Adam(groups)
    if teacher is not None:
        teacher_mode = teacher.training
        teacher.eval()
    modes = {m: m.training for m in model.modules()}
    model.train(bn == "train")
    if hasattr(adapter, "start"):
        adapter.start()
    bar = _progress(steps, f"finetune {method}", progress)
    losses = []
    every = max(1, val_every or steps // 8)
    curve, best = [], None  # best: (top-1, step, snapshot of (model, res, adapter) or None for step 0)
    if val is not None:
        curve.append([0, _val_top1(result.model, val)])
        best = (curve[0][1], 0, None)
    try:
        for step, (x, y) in enumerate(batches):
            frac = 0.5 * (1.0 + math.cos(math.pi * step / steps)) * min(1.0, (step + 1) / max(1.0, warmup * steps))
            frozen_protos = method == "pq" and adapter.freeze_prototypes(step)
            for g in opt.param_groups:
                g["lr"] = 0.0 if (frozen_protos and g["key"].endswith(".prototypes")) else g["base"] * frac
            opt.zero_grad(set_to_none=True)
            out = functional_call(model, adapter.build(), (x,), strict=False)
            if distill and teacher is not None:
                with torch.no_grad():
                    target = torch.softmax(teacher(x), -1)
                loss = F.kl_div(torch.log_softmax(out, -1), target, reduction="batchmean")
            else:
                loss = F.cross_entropy(out, y)
            loss.backward()
            opt.step()
            adapter.after_step(step)
            losses.append(float(loss.detach()))
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix_str(f"loss {losses[-1]:.4f}")
            if val is not None and ((step + 1) % every == 0 or step + 1 == steps):
                if hasattr(adapter, "stop"):
                    adapter.stop()  # score the deployed (hard) model
                with torch.no_grad():
                    top1 = _val_top1(model, val, adapter.build())
                curve.append([step + 1, top1])
                if top1 > best[0]:
                    best = (top1, step + 1, _snapshot((model, res, adapter), teacher))
                if hasattr(adapter, "start"):
                    adapter.start()
    finally:
        bar.close()
        if hasattr(adapter, "stop"):
            adapter.stop()
        for m, t in modes.items():
            m.train(t)
        for p in model.parameters():
            p.requires_grad_(True)
        if teacher is not None:
            teacher.train(teacher_mode)
    if best is not None and best[1] == 0:
        # nothing beat the post-training model on the held-apart split
        out = CompressionResult(copy.deepcopy(result.model), dict(result.formats), copy.deepcopy(result.info),
                                copy.deepcopy(result.state))
        out.model.eval()
        out.info.update(compress_wall_s=result.info.get("wall_s"), finetune_steps=steps, finetune_loss=losses,
                        finetune_val=curve, finetune_best_step=0, finetune_wall_s=time.perf_counter() - t0)
        return out
    if best is not None:
        model, res, adapter = best[2]  # taken with the adapter stopped
        for p in model.parameters():
            p.requires_grad_(True)
    err = adapter.finalize(model)
    model.eval()
    # bits/weight come from the formats, which fine-tuning never changes
    n_w = {k: v["n_weights"] for k, v in res.info["layers"].items()}
    if err is None:
        err = {k: 0.0 for k in res.formats}
    else:
        err = {k: err.get(k, 0.0) for k in res.formats}
    info = summarize(method, res.info["params"], res.formats, err, n_w, t0)
    if method == "pq":
        info["weight_mse"] = None
    for key in ("output_mse", "skipped", "frozen_fraction", "bn_recalibrated"):
        if key in res.info:
            info[key] = res.info[key]
    info["compress_wall_s"] = result.info.get("wall_s")
    info["finetune_steps"] = steps
    info["finetune_loss"] = losses
    if best is not None:
        info["finetune_val"] = curve
        info["finetune_best_step"] = best[1]
    info["finetune_wall_s"] = time.perf_counter() - t0
    res.info = info
    if check:
        check_storage(res)
    return res


# ----------------------------------------------------------------------------
# cache of fine-tuned models
# ----------------------------------------------------------------------------

CACHE_ENV_VAR = "ARCHSIM_FINETUNE_CACHE"
# bump when the loop's meaning changes (what it trains, its schedule, its best-step rule)
FINETUNE_VERSION = 1


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV_VAR)
    return Path(env) if env else Path.home() / ".cache" / "archsim" / "finetune"


def _data_digest(batches) -> str:
    from ..evaluate import EvalSet
    h = hashlib.sha256()
    for x, y in batches:
        h.update(EvalSet(x, y).digest().encode())
    return h.hexdigest()


def compress_finetuned(teacher: nn.Module, method: str, params: dict, calib, steps: int, val=None,
                       seed: int = 0, cache_dir=None, progress=True, result: Optional[CompressionResult] = None,
                       **ft_kw) -> CompressionResult:
    """compress(teacher, method, calib, seed, **params) (one thread), then finetune_result
    (steps, val, seed, **ft_kw), cached on disk: a second call with the same
    teacher weights (content hash), method, params, fine-tuning data and
    budget, seed, torch thread count and FINETUNE_VERSION compresses again (deterministic) and
    loads the fine-tuned weights and compression state instead of training.
    info["finetune_cached"] says which. `result`: that compression, when the
    caller already has it (it is not compressed again). `progress`: as in
    finetune_result, or a caller's bar to advance. Cache directory:
    `cache_dir`, else $ARCHSIM_FINETUNE_CACHE, else ~/.cache/archsim/finetune;
    False: no cache."""
    from . import compress
    from ..evaluate import model_digest

    batches = list(calib)
    res = result if result is not None else compress(teacher, method, calib=batches, seed=seed, num_threads=1,
                                                     **params)
    if cache_dir is False:
        ft = finetune_result(res, teacher, batches, steps, val=val, seed=seed, progress=progress, **ft_kw)
        ft.info["finetune_cached"] = False
        return ft
    key_doc = {"v": FINETUNE_VERSION, "teacher": model_digest(teacher), "method": method,
               "params": sorted((k, repr(v)) for k, v in params.items()), "steps": steps, "seed": seed,
               "threads": torch.get_num_threads(), "options": sorted((k, repr(v)) for k, v in ft_kw.items()),
               "calib": _data_digest(batches),
               "val": _data_digest([val]) if val is not None else None}
    key = hashlib.sha256(json.dumps(key_doc).encode()).hexdigest()
    path = (Path(cache_dir) if cache_dir not in (None, True) else default_cache_dir()) / key[:2] / f"{key}.pt"
    if path.is_file():
        try:
            hit = torch.load(path, map_location="cpu", weights_only=True)
            res = CompressionResult(copy.deepcopy(res.model), dict(res.formats), res.info, res.state)
            res.model.load_state_dict(hit["model"])
            res.state = hit["state"]
            res.info = {**json.loads(hit["info"]), "finetune_cached": True}
            return res
        except (OSError, RuntimeError, KeyError, ValueError, pickle.UnpicklingError):
            pass  # unreadable entry: train again and overwrite
    ft = finetune_result(res, teacher, batches, steps, val=val, seed=seed, progress=progress, **ft_kw)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"model": ft.model.state_dict(), "state": ft.state, "info": json.dumps(ft.info)}, tmp)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache never breaks fine-tuning
    ft.info["finetune_cached"] = False
    return ft


__all__ = ["finetune_result", "check_storage", "compress_finetuned", "ADAPTERS"]
