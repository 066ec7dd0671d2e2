"""PQA-style product quantization of ACTIVATIONS (AbouElhamayed et al.).

Per Conv2d / Linear layer:
  1. im2col the layer's input (F.unfold): every output pixel has a column of
     K = C*kh*kw entries (Linear: K = in_features);
  2. cut it into Ns = ceil(K / Ls) sub-vectors of length Ls (zero-padded);
  3. per subspace s, Np prototypes P_s by k-means (faiss) on calibration
     columns (a seeded reservoir sample of at most `max_columns` per layer,
     taken from the original model's activations in one pass, or with
     sequential=True layer by layer from the partly PQ'd model);
  4. LUT_s[p][o] = <P_s[p], W_o[s*Ls:(s+1)*Ls]> (Ns x Np x Cout);
  5. inference: idx_s = argmin_p ||x_s - P_s[p]|| (L2, or L1), then
     y[o] = sum_s LUT_s[idx_s][o] (+ bias): `PQConv2d` / `PQLinear`.
Prototypes are quantized to `proto_bits` and the LUT to `lut_bits`
(symmetric, one FP32 scale each, counted); None keeps FP32 (counted as 32).
Then, optionally: BatchNorm statistics re-estimated on the calibration
batches (bn_recalibrate, on by default), and the PQA/PECAN fine-tuning of the
LUTs and prototypes (finetune_steps; see finetune_tables). Either way the
module's forward pass is argmin + table accumulation.
Grouped / depthwise convs, Conv1d and non-zero padding modes are left dense
and listed in info["skipped"].

Measured on the Fashion-MNIST CNN (workloads/zoo/fmnist_cnn.py, FP32 92.73%
top-1 on the 10,000 test images), Ls=9, Np=16, 32 calibration batches of 128
training images, 1 thread on the shared 2-core box:
                                                   top-1   wall
  8-bit prototypes, 16-bit LUT:
    one pass, k-means only (the old behaviour)     48.3%     8 s
    sequential                                     30.9%    16 s
    one pass + bn_recalibrate (the default)        66.7%    13 s
    sequential + bn_recalibrate                    46.1%    21 s
    default + finetune_steps=100                   84.8%    69 s
    default + finetune_steps=200                   86.1%   127 s
    default + finetune_steps=300                   87.0%   192 s
    200 steps, cross-entropy (distill=False)       85.4%   127 s
    200 steps, sequential                          84.6%   144 s
    200 steps, no bn_recalibrate                   86.5%   130 s
    200 steps, prototypes frozen (proto_lr=0)      86.0%   133 s
    200 steps, conv1 left dense (skip_layers)      90.3%   139 s
  6-bit prototypes, 5-bit LUT:
    one pass, k-means only                         17.0%     6 s
    one pass + bn_recalibrate                      53.3%    11 s
    sequential + bn_recalibrate                    16.5%    23 s
    default + finetune_steps=200                   82.1%   127 s
(run-to-run spread of the fine-tuned figures about +-0.7 points). The first
layer (3x3 patches of a grey image -> 16 prototypes) costs 3-4 points that
fine-tuning does not win back; more steps give little (1000 steps: ~88.5%
on 2,000 test images).
"""
from __future__ import annotations

import copy
import itertools
import math
import time
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from archsim.ir import progress

from archsim.ir.formats import PQFormat
from ._common import (CompressionError, CompressionResult, kmeans_faiss, quant_sym, sym_scale, summarize,
                      target_layers)


class PQLayer(nn.Module):
    """Shared part: prototypes [Ns, Np, Ls], lut [Ns, Np, Cout], bias [Cout]."""

    def __init__(self, prototypes: torch.Tensor, lut: torch.Tensor, bias: Optional[torch.Tensor],
                 k_in: int, distance: str = "l2", chunk_elems: int = 1 << 20,
                 proto_scale: Optional[torch.Tensor] = None, lut_scale: Optional[torch.Tensor] = None):
        super().__init__()
        if distance not in ("l2", "l1"):
            raise CompressionError(f"must be 'l2' or 'l1', got {distance!r}", field="distance")
        self.register_buffer("prototypes", prototypes.detach().clone().float())
        self.register_buffer("lut", lut.detach().clone().float())
        self.register_buffer("bias", None if bias is None else bias.detach().clone().float())
        # the step of each quantization grid (None: FP32): prototypes are
        # integers times proto_scale, LUT entries integers times lut_scale
        self.register_buffer("proto_scale", None if proto_scale is None else torch.as_tensor(proto_scale).float())
        self.register_buffer("lut_scale", None if lut_scale is None else torch.as_tensor(lut_scale).float())
        self.k_in = k_in
        self.distance = distance
        self.chunk_elems = chunk_elems  # distances computed per encode chunk (4 MB: no page-fault churn)
        self.grad_chunk_elems = 1 << 17  # per soft-assignment backward chunk (cache-sized)
        # Training only (compress_pq's fine-tune sets it, then clears it): the
        # softmax temperature of the soft assignment used for gradients.
        # None: the forward is argmin + table accumulation and nothing else.
        self.soft_temperature: Optional[float] = None

    @property
    def n_subspaces(self) -> int:
        return self.prototypes.shape[0]

    # -- as a layer for the simulator (workloads.compile treats it as a leaf) --
    # table widths; build_pq_layer sets them (None: FP32, counted as 32 bits)
    proto_bits: Optional[int] = None
    lut_bits: Optional[int] = None

    def pq_format(self) -> PQFormat:
        """The PQFormat of this layer, read from its own tensors."""
        ns, np_, ls = self.prototypes.shape
        pb, lb = self.proto_bits or 32, self.lut_bits or 32
        return PQFormat(Ls=ls, Np=np_, proto_bits=pb, lut_bits=lb, cout=self.lut.shape[2],
                        scale_bits=32 if pb < 32 or lb < 32 else 0)

    def layer_spec(self, name: str, in_shape, out_shape, fmt=None):
        """The LayerSpec the compiler makes of this module; `fmt` (from
        compress(...).formats) or else the module's own PQFormat."""
        raise NotImplementedError

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """Columns [N, K] -> padded sub-vectors [N, Ns, Ls]."""
        ns, _, ls = self.prototypes.shape
        if x.shape[1] != ns * ls:
            x = F.pad(x, (0, ns * ls - x.shape[1]))
        return x.reshape(x.shape[0], ns, ls)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Nearest prototype per subspace: [N, K] -> [N, Ns] (ties: lower index)."""
        xs = self.split(x.float())
        out = torch.empty(xs.shape[:2], dtype=torch.long)
        p = self.prototypes.detach()
        rows = max(1, self.chunk_elems // (p.shape[0] * p.shape[1]))
        with torch.no_grad():
            for s in range(0, xs.shape[0], rows):
                out[s:s + rows] = self.distances(xs[s:s + rows], p).argmin(-1).T
        return out

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """sum_s LUT_s[idx_s] (+ bias): [N, Ns] -> [N, Cout]."""
        if self.lut.requires_grad:
            y = _LutLookup.apply(idx, self.lut)
        else:
            ns, np_, cout = self.lut.shape
            flat = idx + torch.arange(ns).unsqueeze(0) * np_
            y = F.embedding_bag(flat, self.lut.reshape(ns * np_, cout), mode="sum")
        return y if self.bias is None else y + self.bias

    def distances(self, xs: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """[N, Ns, Ls] sub-vectors, [Ns, Np, Ls] prototypes -> [Ns, N, Np]
        distances up to a per-(column, subspace) constant (L2: ||x||^2 is
        left out). Subspace-major: one batched GEMM, 3x faster on CPU than
        the [N, Ns, Np] einsum."""
        xt = xs.transpose(0, 1)
        if self.distance == "l2":
            return torch.baddbmm((p * p).sum(-1).unsqueeze(1), xt, p.transpose(1, 2), alpha=-2.0)
        return (xt.unsqueeze(2) - p.unsqueeze(1)).abs().sum(-1)

    def soft_train_matmul(self, x: torch.Tensor) -> torch.Tensor:
        """Training forward: exactly the hard lookup's value (same encode),
        with the exact gradient of that lookup for the LUT and, for the input
        and the prototypes, the gradient of the soft assignment
        a = softmax_p(-dist / T), as if y = sum_s a_s @ LUT_s (PECAN-style
        straight-through; the LUT is a constant in that surrogate)."""
        y = self.lookup(self.encode(x))
        xs = self.split(x.float())
        t = self.soft_temperature
        if self.distance == "l2":
            ns, np_, _ = self.prototypes.shape
            rows = max(1, self.grad_chunk_elems // (ns * np_))
            return y + _SoftAssignGrad.apply(xs, self.prototypes, self.lut.detach(), t, rows)
        ns, np_, cout = self.lut.shape
        a = torch.softmax(self.distances(xs, self.prototypes) / -t, -1).transpose(0, 1).reshape(-1, ns * np_)
        s = a @ self.lut.detach().reshape(ns * np_, cout)
        return y + (s - s.detach())

    def pq_matmul(self, x: torch.Tensor) -> torch.Tensor:
        if self.soft_temperature is not None and torch.is_grad_enabled():
            return self.soft_train_matmul(x)
        return self.lookup(self.encode(x))

    def decode(self, idx: torch.Tensor) -> torch.Tensor:
        """The selected prototypes as columns [N, K] (for checks)."""
        ns, _, ls = self.prototypes.shape
        sel = self.prototypes[torch.arange(ns).unsqueeze(0), idx]  # [N, Ns, Ls]
        return sel.reshape(idx.shape[0], ns * ls)[:, :self.k_in]


class _LutLookup(torch.autograd.Function):
    """sum_s LUT_s[idx_s] with a faster LUT gradient than embedding_bag's
    sort-based one: one index_add_ per subspace (2.5-7x faster here)."""

    @staticmethod
    def forward(ctx, idx, lut):
        ns, np_, cout = lut.shape
        ctx.save_for_backward(idx)
        ctx.shape = lut.shape
        flat = idx + torch.arange(ns).unsqueeze(0) * np_
        return F.embedding_bag(flat, lut.reshape(ns * np_, cout), mode="sum")

    @staticmethod
    def backward(ctx, g):
        (idx,) = ctx.saved_tensors
        out = g.new_zeros(ctx.shape)
        for s in range(ctx.shape[0]):
            out[s].index_add_(0, idx[:, s], g)
        return None, out


class _SoftAssignGrad(torch.autograd.Function):
    """Gradient of the L2 soft assignment, fused and chunked.

    forward(xs [N, Ns, Ls], prototypes [Ns, Np, Ls], lut [Ns, Np, Cout], T,
    rows) returns zeros [N, Cout]; backward gives xs and the prototypes the
    gradient of s = sum_s softmax_p(-||x_s - P_s[p]||^2 / T) @ LUT_s (LUT
    treated as a constant). s is never formed, and the [Ns, rows, Np]
    distances are recomputed in backward `rows` columns at a time, so the
    working set stays in cache: about 2.5x faster than autograd through
    softmax on the full [Ns, N, Np] tensor, with O(N*K) memory."""

    @staticmethod
    def forward(ctx, xs, p, lut, t, rows):
        ctx.save_for_backward(xs, p, lut)
        ctx.t, ctx.rows = t, rows
        return xs.new_zeros(xs.shape[0], lut.shape[2])

    @staticmethod
    def backward(ctx, g):
        xs, p, lut = ctx.saved_tensors
        t, rows = ctx.t, ctx.rows
        ns, np_, cout = lut.shape
        lut_t = lut.reshape(ns * np_, cout).T
        pn, pt = (p * p).sum(-1).unsqueeze(1), p.transpose(1, 2)
        gx = torch.empty_like(xs) if ctx.needs_input_grad[0] else None
        gp = torch.zeros_like(p) if ctx.needs_input_grad[1] else None
        gsum = torch.zeros(ns, np_, 1)
        for r in range(0, xs.shape[0], rows):
            xt = xs[r:r + rows].transpose(0, 1)  # [Ns, n, Ls]
            a = torch.softmax(torch.baddbmm(pn, xt, pt, beta=-1.0 / t, alpha=2.0 / t), -1)  # [Ns, n, Np]
            v = (g[r:r + rows] @ lut_t).view(-1, ns, np_).transpose(0, 1)  # dL/da = <LUT_s[p], g>
            dlog = a * (v - (a * v).sum(-1, keepdim=True))  # softmax backward
            if gx is not None:
                gx[r:r + rows] = torch.bmm(dlog, p).transpose(0, 1)
            if gp is not None:
                gp.baddbmm_(dlog.transpose(1, 2), xt)
                gsum += dlog.sum(1).unsqueeze(-1)
        # logits = (2 x.p - |p|^2) / T
        if gx is not None:
            gx.mul_(2.0 / t)
        if gp is not None:
            gp = (gp - p * gsum).mul_(2.0 / t)
        return gx, gp, None, None, None


class PQConv2d(PQLayer):
    """Conv2d replaced by im2col + PQ encode + LUT accumulation."""

    def __init__(self, conv: nn.Conv2d, prototypes, lut, distance="l2", proto_scale=None, lut_scale=None):
        super().__init__(prototypes, lut, conv.bias, conv.in_channels * math.prod(conv.kernel_size), distance,
                         proto_scale=proto_scale, lut_scale=lut_scale)
        self.out_channels = conv.out_channels
        self.in_channels = conv.in_channels
        self.groups = 1  # grouped convs are left dense
        self.kernel_size, self.stride = conv.kernel_size, conv.stride
        self.padding, self.dilation = conv.padding, conv.dilation

    def out_shape(self, in_shape) -> tuple:
        *b, _, h, w = in_shape
        oh, ow = (((n + 2 * p - d * (k - 1) - 1) // st + 1) for n, p, d, k, st in
                  zip((h, w), self.padding, self.dilation, self.kernel_size, self.stride))
        return (*b, self.out_channels, oh, ow)

    def layer_spec(self, name, in_shape, out_shape, fmt=None):
        from workloads.compile import _conv_spec

        return _conv_spec(name, self, in_shape, out_shape, fmt or self.pq_format())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        pad = self.padding
        cols = F.unfold(x, self.kernel_size, dilation=self.dilation, padding=pad, stride=self.stride)
        oh = (h + 2 * pad[0] - self.dilation[0] * (self.kernel_size[0] - 1) - 1) // self.stride[0] + 1
        ow = (w + 2 * pad[1] - self.dilation[1] * (self.kernel_size[1] - 1) - 1) // self.stride[1] + 1
        cols = cols.transpose(1, 2).reshape(-1, self.k_in)
        y = self.pq_matmul(cols)
        return y.reshape(b, oh * ow, self.out_channels).transpose(1, 2).reshape(b, self.out_channels, oh, ow)


class PQLinear(PQLayer):
    def __init__(self, lin: nn.Linear, prototypes, lut, distance="l2", proto_scale=None, lut_scale=None):
        super().__init__(prototypes, lut, lin.bias, lin.in_features, distance,
                         proto_scale=proto_scale, lut_scale=lut_scale)
        self.out_features = lin.out_features
        self.in_features = lin.in_features

    def out_shape(self, in_shape) -> tuple:
        return (*in_shape[:-1], self.out_features)

    def layer_spec(self, name, in_shape, out_shape, fmt=None):
        from workloads.compile import _linear_spec

        return _linear_spec(name, self, in_shape, fmt or self.pq_format())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        return self.pq_matmul(x.reshape(-1, self.k_in)).reshape(*lead, self.out_features)


def layer_columns(mod: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's input as GEMM columns [N, K] (channel-major like the weight)."""
    if isinstance(mod, nn.Conv2d):
        cols = F.unfold(x, mod.kernel_size, dilation=mod.dilation, padding=mod.padding, stride=mod.stride)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    return x.reshape(-1, x.shape[-1])


def weight_matrix(mod: nn.Module) -> torch.Tensor:
    """[Cout, K] with K ordered like the unfold columns."""
    return mod.weight.detach().float().reshape(mod.weight.shape[0], -1)


def build_pq_layer(mod: nn.Module, cols: torch.Tensor, Ls: int = 9, Np: int = 16,
                   proto_bits: Optional[int] = 8, lut_bits: Optional[int] = 16, niter: int = 25,
                   seed: int = 0, distance: str = "l2") -> PQLayer:
    """Prototypes by k-means per subspace on calibration columns [N, K], then
    the LUT from the (quantized) prototypes and the layer's weights."""
    wmat = weight_matrix(mod)
    k_in = wmat.shape[1]
    ns = math.ceil(k_in / Ls)
    xs = F.pad(cols.float(), (0, ns * Ls - k_in)).reshape(-1, ns, Ls)
    protos = torch.empty(ns, Np, Ls)
    for s in range(ns):
        c = kmeans_faiss(xs[:, s], Np, niter=niter, seed=seed + s)
        if c.shape[0] < Np:  # fewer distinct columns than prototypes: repeat (never chosen: ties go low)
            c = torch.cat([c, c[:1].expand(Np - c.shape[0], Ls)])
        protos[s] = c
    pscale = _grid_scale(protos, proto_bits)
    protos = quant_sym(protos, proto_bits, pscale)
    wpad = F.pad(wmat, (0, ns * Ls - k_in)).reshape(wmat.shape[0], ns, Ls)
    lut = torch.einsum("spl,osl->spo", protos, wpad)
    lscale = _grid_scale(lut, lut_bits)
    lut = quant_sym(lut, lut_bits, lscale)
    cls = PQConv2d if isinstance(mod, nn.Conv2d) else PQLinear
    pq = cls(mod, protos, lut, distance, proto_scale=pscale, lut_scale=lscale)
    pq.proto_bits, pq.lut_bits = proto_bits, lut_bits
    return pq


def _grid_scale(x: torch.Tensor, bits: Optional[int]) -> Optional[torch.Tensor]:
    """The symmetric grid step for `bits` (one per tensor), None for FP32."""
    return None if bits is None or bits >= 32 else sym_scale(x, bits)


def _supported(mod: nn.Module) -> bool:
    if isinstance(mod, nn.Linear):
        return True
    return isinstance(mod, nn.Conv2d) and mod.groups == 1 and mod.padding_mode == "zeros" \
        and not isinstance(mod.padding, str)


class _Reached(Exception):
    """Raised by a collection hook to cut a forward pass short."""


def collect_columns(model: nn.Module, layers: dict, calib, max_columns: int, seed: int,
                    max_batches: Optional[int] = None, stop_early: bool = False) -> dict:
    """One pass of `model` over calib; for each layer keep a uniform
    reservoir sample of at most max_columns input columns: every column gets
    a seeded random key (layer i of `layers` draws from seed + i) and the
    smallest keys are kept, so the sample does not depend on how calib is
    batched beyond its order. stop_early: end each forward pass as soon as
    every layer of `layers` has run once (sequential calibration needs only
    the input of the layer it builds next)."""
    gens = {n: torch.Generator().manual_seed(seed + i) for i, n in enumerate(layers)}
    keep = {n: None for n in layers}
    keys = {n: None for n in layers}
    fired = set()

    def hook_for(name):
        def hook(mod, inputs, _out):
            cols = layer_columns(mod, inputs[0].detach().float())
            r = torch.rand(cols.shape[0], generator=gens[name])
            if keep[name] is not None:
                cols = torch.cat([keep[name], cols])
                r = torch.cat([keys[name], r])
            if cols.shape[0] > max_columns:
                sel = torch.argsort(r, stable=True)[:max_columns]
                cols, r = cols[sel], r[sel]
            keep[name], keys[name] = cols, r
            fired.add(name)
            if stop_early and len(fired) == len(layers):
                raise _Reached
        return hook

    handles = [mod.register_forward_hook(hook_for(n)) for n, mod in layers.items()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i, batch in enumerate(calib):
                if max_batches is not None and i >= max_batches:
                    break
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                fired.clear()
                try:
                    model(x)
                except _Reached:
                    pass
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    missing = [n for n, c in keep.items() if c is None]
    if missing:
        raise CompressionError(f"pq: calibration never reached layers {missing}", field="calib")
    return keep


def mean_nearest_distance(pq: PQLayer, cols: torch.Tensor) -> float:
    """The unit of a layer's soft-assignment temperature: the mean distance
    of a calibration sub-vector to its nearest prototype (squared L2, or L1).
    softmax(-dist / (tau * this)) then weighs prototypes by how much farther
    than a typical match they are, whatever the layer's scale."""
    with torch.no_grad():
        xs = pq.split(cols.float())
        d = pq.distances(xs, pq.prototypes).amin(-1)  # [Ns, N]
        if pq.distance == "l2":
            d = d + (xs * xs).sum(-1).T
        return max(float(d.mean()), 1e-12)


def recalibrate_bn(model: nn.Module, batches: list) -> int:
    """Re-estimate every BatchNorm's running mean / variance as the plain
    average over `batches` (the rest of the model stays in eval mode, no
    gradients). Returns how many BatchNorm layers were updated."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        return 0
    modes = {m: m.training for m in model.modules()}
    moms = [m.momentum for m in bns]
    try:
        model.eval()
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average = the mean over the batches
            m.train()
        with torch.no_grad():
            for b in batches:
                model(b[0] if isinstance(b, (tuple, list)) else b)
    finally:
        for m, mom in zip(bns, moms):
            m.momentum = mom
        for m, t in modes.items():
            m.train(t)
    return len(bns)


def finetune_stream(cached: list, rest, steps: int):
    """`steps` (inputs, labels) batches for fine-tuning: the cached
    calibration batches, then fresh ones read on from `rest` (the rest of a
    calib iterator; streamed, not kept), then the cached ones again,
    cyclically. Memory stays at the cached list."""
    n = 0
    for b in itertools.islice(itertools.chain(cached, rest if rest is not None else ()), steps):
        yield b[0], b[1]
        n += 1
    while n < steps:
        for b in cached:
            if n == steps:
                return
            yield b[0], b[1]
            n += 1


def finetune_tables(model: nn.Module, pqs: dict, batches, steps: int, lr: float,
                    proto_bits: Optional[int], lut_bits: Optional[int], proto_lr: Optional[float] = None,
                    temperatures: Optional[dict] = None, teacher: Optional[nn.Module] = None,
                    seed: int = 0, warmup: float = 0.1) -> list:
    """Fine-tune the PQ layers `pqs` ({qualified name: PQLayer}) of `model`
    for `steps` Adam steps on `batches` ((inputs, labels), at least `steps`
    of them), the learning rate warmed up linearly over the first `warmup`
    fraction of the steps, then cosine-decayed to 0; the model in eval mode
    (BatchNorm keeps its statistics; every other parameter is frozen).

    Loss: cross-entropy against the labels, or with `teacher` (the original
    model) the KL divergence to its softmax (distillation).
    Trained: each LUT and bias with `lr`, and the prototypes with `proto_lr`
    (None: lr; 0: frozen). The forward pass stays hard (argmin + table
    accumulation, the exact deployed values); the LUT gets the exact gradient
    of that lookup, the layer input and the prototypes the gradient of the
    soft assignment softmax(-dist / T) (PECAN-style straight-through; T =
    temperatures[name], default 1; L2 through the fused _SoftAssignGrad, L1
    through plain autograd, which holds N*Ns*Np*Ls floats per layer). Quantized tables and prototypes are
    fake-quantized on their build-time grids (pq.lut_scale / pq.proto_scale,
    levels |q| <= 2^(b-1)-1, rounding straight-through) and written back
    exactly on those grids. Each tensor is trained in units of its initial
    abs-max, so the learning rates are relative (1e-3: a step moves an entry
    by about 0.1% of its table's range). Returns the loss per step."""
    from torch.func import functional_call

    proto_lr = lr if proto_lr is None else proto_lr
    temperatures = temperatures or {}
    state = {}  # name -> {buffer: (theta, unit, grid scale, qmax)}
    groups = {"lut": [], "prototypes": []}
    for name, pq in pqs.items():
        keys = ["lut"] + (["prototypes"] if proto_lr > 0 else []) + (["bias"] if pq.bias is not None else [])
        state[name] = {}
        for key in keys:
            val = getattr(pq, key).detach()
            unit = 1.0 if key == "bias" else (float(val.abs().max()) or 1.0)
            bits = {"lut": lut_bits, "prototypes": proto_bits}.get(key)
            quant = bits is not None and bits < 32
            scale = getattr(pq, "proto_scale" if key == "prototypes" else "lut_scale") if quant else None
            theta = nn.Parameter(val / unit)
            state[name][key] = (theta, unit, scale, 2 ** (bits - 1) - 1 if quant else None)
            groups["prototypes" if key == "prototypes" else "lut"].append(theta)

    def fq(theta, unit, scale, qmax):
        v = theta * unit
        if scale is None:
            return v
        q = torch.clamp(v / scale, -qmax, qmax)
        return (q + (torch.round(q) - q).detach()) * scale

    torch.manual_seed(seed)  # nothing random should happen, but pin it anyway
    opt = torch.optim.Adam([{"params": groups["lut"], "lr": lr, "base": lr},
                            {"params": groups["prototypes"], "lr": proto_lr, "base": proto_lr}])
    modes = {m: m.training for m in model.modules()}
    tmode = teacher.training if teacher is not None else None
    losses = []
    try:
        model.eval()
        if teacher is not None:
            teacher.eval()
        for name, pq in pqs.items():
            pq.soft_temperature = float(temperatures.get(name, 1.0))
        for step, (x, y) in enumerate(itertools.islice(batches, steps)):
            for g in opt.param_groups:  # linear warm-up over the first WARMUP of the steps, then cosine to 0
                g["lr"] = g["base"] * min(1.0, (step + 1) / max(1.0, warmup * steps)) \
                    * 0.5 * (1.0 + math.cos(math.pi * step / steps))
            opt.zero_grad(set_to_none=True)
            values = {f"{name}.{key}": fq(*ent) for name, st in state.items() for key, ent in st.items()}
            out = functional_call(model, values, (x,), strict=False)
            if teacher is None:
                loss = F.cross_entropy(out, y)
            else:
                with torch.no_grad():
                    target = torch.softmax(teacher(x), -1)
                loss = F.kl_div(torch.log_softmax(out, -1), target, reduction="batchmean")
            loss.backward()
            opt.step()
            losses.append(loss.item())
    finally:
        for pq in pqs.values():
            pq.soft_temperature = None
        for m, t in modes.items():
            m.train(t)
        if teacher is not None:
            teacher.train(tmode)
    with torch.no_grad():
        for name, pq in pqs.items():
            for key, (theta, unit, scale, qmax) in state[name].items():
                v = theta * unit
                if scale is not None:  # exactly on the grid (v + (round - v) need not be)
                    v = torch.clamp(torch.round(v / scale), -qmax, qmax) * scale
                getattr(pq, key).copy_(v)
    return losses


# calib batches read when max_batches is None and calib has no len() (a
# generator, possibly endless)
DEFAULT_CALIB_BATCHES = 32


def compress_pq(model, calib=None, seed=0, Ls: int = 9, Np: int = 16, proto_bits: Optional[int] = 8,
                lut_bits: Optional[int] = 16, niter: int = 25, max_columns: int = 8192,
                max_batches: Optional[int] = None, distance: str = "l2", scale_bits: int = 32,
                skip_layers=(), sequential: bool = False, bn_recalibrate: bool = True,
                finetune_steps: int = 0, lr: float = 2e-3, proto_lr: Optional[float] = None,
                temperature: float = 1.0, distill: bool = True) -> CompressionResult:
    """PQ every supported Conv2d / Linear. Defaults Ls=9, Np=16 (PQA's
    ResNet-20 setting), 8-bit prototypes, 16-bit LUT entries. Needs calib.

    calib: (inputs, labels) batches. The first `max_batches` (None: all of
      calib if it has a len(), else the first DEFAULT_CALIB_BATCHES) are the
      calibration set; when more than one pass is needed (sequential,
      bn_recalibrate, finetune_steps) they are read once into a list and
      reused. Fine-tuning reads finetune_steps batches: those, then further
      batches of calib as far as it goes (streamed), then those again.
    sequential: calibrate layer by layer: the columns for layer i come from
      the model with layers < i already PQ'd (one cut-short forward pass over
      the batches per layer). False: all layers' columns from one pass of the
      original model. On the Fashion-MNIST CNN False is clearly better
      (prototypes of clean activations snap part of the upstream PQ error
      back; numbers in the module docstring), hence the default.
    bn_recalibrate: after PQ (before fine-tuning), re-estimate the BatchNorm
      running statistics on the calibration batches (one forward pass).
    finetune_steps (0: none), lr, proto_lr, temperature, distill: fine-tune
      every LUT and bias (lr) and the prototypes (proto_lr; None: lr, 0:
      frozen) with Adam (10% linear warm-up, then cosine decay to 0), through
      a soft-assignment
      straight-through estimator (finetune_tables; T = temperature x the
      layer's mean nearest-prototype distance); learning rates are relative
      to each table's range. distill: the loss is the KL divergence to the
      original model's outputs (else cross-entropy on the labels). The
      result is on the build-time bit grids and its forward pass is argmin +
      table lookup as before.

    info["weight_mse"] is None (no weights are rebuilt); info["output_mse"]
    and per-layer "output_mse" are the layer-output errors right after the
    k-means (before BatchNorm re-estimation and fine-tuning) on the sampled
    calibration columns, which with sequential are the inputs the layer sees
    in the PQ model; info["finetune_loss"]: the loss per fine-tuning step."""
    if calib is None:
        raise CompressionError("pq needs calib data (activations to cluster)", field="calib")
    if finetune_steps < 0:
        raise CompressionError(f"must be >= 0, got {finetune_steps}", field="finetune_steps")
    if temperature <= 0:
        raise CompressionError(f"must be > 0, got {temperature}", field="temperature")
    t0 = time.perf_counter()
    params = dict(Ls=Ls, Np=Np, proto_bits=proto_bits, lut_bits=lut_bits, niter=niter,
                  max_columns=max_columns, max_batches=max_batches, distance=distance,
                  scale_bits=scale_bits, skip_layers=tuple(skip_layers), sequential=sequential,
                  bn_recalibrate=bn_recalibrate, finetune_steps=finetune_steps, lr=lr, proto_lr=proto_lr,
                  temperature=temperature, distill=distill)
    if max_batches is None:
        max_batches = len(calib) if hasattr(calib, "__len__") else DEFAULT_CALIB_BATCHES
    rest = iter(calib)
    if sequential or bn_recalibrate or finetune_steps:
        batches = list(itertools.islice(rest, max_batches))
        if not batches:
            raise CompressionError("is empty", field="calib")
    else:
        batches = itertools.islice(rest, max_batches)  # one pass: stream it
    new = copy.deepcopy(model)
    targets = target_layers(new, skip_layers)
    layers = {n: m for n, m in targets if _supported(m)}
    skipped = [n for n, m in targets if not _supported(m)]
    cols = None if sequential else collect_columns(new, layers, batches, max_columns, seed)
    formats, out_err, n_w, pqs, temps = {}, {}, {}, {}, {}
    for i, (name, mod) in enumerate(progress.bar(list(layers.items()), desc="compressing (pq)", unit="layer")):
        if sequential:  # this layer's input in the model with the layers before it PQ'd
            c = collect_columns(new, {name: mod}, batches, max_columns, seed + i, stop_early=True)[name]
        else:
            c = cols.pop(name)
        pq = build_pq_layer(mod, c, Ls, Np, proto_bits, lut_bits, niter, seed + 1000 * i, distance)
        with torch.no_grad():
            ref = c @ weight_matrix(mod).T + (0 if mod.bias is None else mod.bias.float())
            out_err[name] = float(((pq.pq_matmul(c) - ref) ** 2).mean())
        if finetune_steps:
            temps[name] = temperature * mean_nearest_distance(pq, c)
        del c, ref
        parent, _, child = name.rpartition(".")
        setattr(new.get_submodule(parent) if parent else new, child, pq)
        pqs[name] = pq
        n_w[name] = mod.weight.numel()
        formats[name] = PQFormat(Ls=Ls, Np=Np, proto_bits=proto_bits or 32, lut_bits=lut_bits or 32,
                                 cout=mod.weight.shape[0],
                                 scale_bits=scale_bits if (proto_bits or 32) < 32 or (lut_bits or 32) < 32 else 0)
    info_extra = {}
    if bn_recalibrate:
        info_extra["bn_recalibrated"] = recalibrate_bn(new, batches)
    if finetune_steps:
        info_extra["finetune_loss"] = finetune_tables(
            new, pqs, finetune_stream(batches, rest, finetune_steps), finetune_steps, lr, proto_bits, lut_bits,
            proto_lr, temps, model if distill else None, seed)
    info = summarize("pq", params, formats, {n: 0.0 for n in formats}, n_w, t0)
    info["weight_mse"] = None
    info["output_mse"] = sum(out_err.values()) / max(1, len(out_err))
    for n in formats:
        info["layers"][n]["weight_mse"] = None
        info["layers"][n]["output_mse"] = out_err[n]
    info["skipped"] = skipped
    info.update(info_extra)
    return CompressionResult(new, formats, info)
