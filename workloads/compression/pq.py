"""PQA-style product quantization of ACTIVATIONS (AbouElhamayed et al.).

Per Conv2d / Linear layer:
  1. im2col the layer's input (F.unfold): every output pixel has a column of
     K = C*kh*kw entries (Linear: K = in_features);
  2. cut it into Ns = ceil(K / Ls) sub-vectors of length Ls (zero-padded);
  3. per subspace s, Np prototypes P_s by k-means (faiss) on calibration
     columns (a seeded reservoir sample of at most `max_columns` per layer,
     taken from the ORIGINAL model's activations in one pass);
  4. LUT_s[p][o] = <P_s[p], W_o[s*Ls:(s+1)*Ls]> (Ns x Np x Cout);
  5. inference: idx_s = argmin_p ||x_s - P_s[p]|| (L2, or L1), then
     y[o] = sum_s LUT_s[idx_s][o] (+ bias): `PQConv2d` / `PQLinear`.
Prototypes are quantized to `proto_bits` and the LUT to `lut_bits`
(symmetric, one FP32 scale each, counted); None keeps FP32 (counted as 32).
The PQA paper fine-tunes the prototypes afterwards; that step is not here.
Grouped / depthwise convs, Conv1d and non-zero padding modes are left dense
and listed in info["skipped"].
"""
from __future__ import annotations

import copy
import math
import time
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..formats import PQFormat
from ._common import CompressionError, CompressionResult, kmeans_faiss, quant_sym, summarize, target_layers


class PQLayer(nn.Module):
    """Shared part: prototypes [Ns, Np, Ls], lut [Ns, Np, Cout], bias [Cout]."""

    def __init__(self, prototypes: torch.Tensor, lut: torch.Tensor, bias: Optional[torch.Tensor],
                 k_in: int, distance: str = "l2", chunk_rows: int = 16384):
        super().__init__()
        if distance not in ("l2", "l1"):
            raise CompressionError(f"must be 'l2' or 'l1', got {distance!r}", field="distance")
        self.register_buffer("prototypes", prototypes.detach().clone().float())
        self.register_buffer("lut", lut.detach().clone().float())
        self.register_buffer("bias", None if bias is None else bias.detach().clone().float())
        self.k_in = k_in
        self.distance = distance
        self.chunk_rows = chunk_rows

    @property
    def n_subspaces(self) -> int:
        return self.prototypes.shape[0]

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """Columns [N, K] -> padded sub-vectors [N, Ns, Ls]."""
        ns, _, ls = self.prototypes.shape
        x = F.pad(x, (0, ns * ls - x.shape[1]))
        return x.reshape(x.shape[0], ns, ls)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Nearest prototype per subspace: [N, K] -> [N, Ns] (ties: lower index)."""
        xs = self.split(x.float())
        out = torch.empty(xs.shape[:2], dtype=torch.long)
        p = self.prototypes
        pn = (p * p).sum(-1)  # [Ns, Np]
        for s in range(0, xs.shape[0], self.chunk_rows):
            c = xs[s:s + self.chunk_rows]
            if self.distance == "l2":
                # ||x||^2 is the same for every prototype of a subspace
                dist = pn.unsqueeze(0) - 2.0 * torch.einsum("nsl,spl->nsp", c, p)
            else:
                dist = (c.unsqueeze(2) - p.unsqueeze(0)).abs().sum(-1)
            out[s:s + self.chunk_rows] = dist.argmin(-1)
        return out

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """sum_s LUT_s[idx_s] (+ bias): [N, Ns] -> [N, Cout]."""
        ns, np_, cout = self.lut.shape
        flat = idx + torch.arange(ns).unsqueeze(0) * np_
        y = F.embedding_bag(flat, self.lut.reshape(ns * np_, cout), mode="sum")
        return y if self.bias is None else y + self.bias

    def pq_matmul(self, x: torch.Tensor) -> torch.Tensor:
        return self.lookup(self.encode(x))

    def decode(self, idx: torch.Tensor) -> torch.Tensor:
        """The selected prototypes as columns [N, K] (for checks)."""
        ns, _, ls = self.prototypes.shape
        sel = self.prototypes[torch.arange(ns).unsqueeze(0), idx]  # [N, Ns, Ls]
        return sel.reshape(idx.shape[0], ns * ls)[:, :self.k_in]


class PQConv2d(PQLayer):
    """Conv2d replaced by im2col + PQ encode + LUT accumulation."""

    def __init__(self, conv: nn.Conv2d, prototypes, lut, distance="l2"):
        super().__init__(prototypes, lut, conv.bias, conv.in_channels * math.prod(conv.kernel_size), distance)
        self.out_channels = conv.out_channels
        self.kernel_size, self.stride = conv.kernel_size, conv.stride
        self.padding, self.dilation = conv.padding, conv.dilation

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
    def __init__(self, lin: nn.Linear, prototypes, lut, distance="l2"):
        super().__init__(prototypes, lut, lin.bias, lin.in_features, distance)
        self.out_features = lin.out_features

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
    protos = quant_sym(protos, proto_bits)
    wpad = F.pad(wmat, (0, ns * Ls - k_in)).reshape(wmat.shape[0], ns, Ls)
    lut = quant_sym(torch.einsum("spl,osl->spo", protos, wpad), lut_bits)
    cls = PQConv2d if isinstance(mod, nn.Conv2d) else PQLinear
    return cls(mod, protos, lut, distance)


def _supported(mod: nn.Module) -> bool:
    if isinstance(mod, nn.Linear):
        return True
    return isinstance(mod, nn.Conv2d) and mod.groups == 1 and mod.padding_mode == "zeros" \
        and not isinstance(mod.padding, str)


def collect_columns(model: nn.Module, layers: dict, calib, max_columns: int, seed: int,
                    max_batches: Optional[int] = None) -> dict:
    """One pass of the original model over calib; for each layer keep a
    uniform reservoir sample of at most max_columns input columns: every
    column gets a seeded random key and the smallest keys are kept, so the
    sample does not depend on how calib is batched beyond its order."""
    gens = {n: torch.Generator().manual_seed(seed + i) for i, n in enumerate(layers)}
    keep = {n: None for n in layers}
    keys = {n: None for n in layers}

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
                model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    missing = [n for n, c in keep.items() if c is None]
    if missing:
        raise CompressionError(f"pq: calibration never reached layers {missing}", field="calib")
    return keep


def compress_pq(model, calib=None, seed=0, Ls: int = 9, Np: int = 16, proto_bits: Optional[int] = 8,
                lut_bits: Optional[int] = 16, niter: int = 25, max_columns: int = 8192,
                max_batches: Optional[int] = None, distance: str = "l2", scale_bits: int = 32,
                skip_layers=()) -> CompressionResult:
    """PQ every supported Conv2d / Linear. Defaults Ls=9, Np=16 (PQA's
    ResNet-20 setting), 8-bit prototypes, 16-bit LUT entries. Needs calib.
    info["weight_mse"] is None (no weights are rebuilt); info["output_mse"]
    and per-layer "output_mse" are the layer-output errors on the sampled
    calibration columns."""
    if calib is None:
        raise CompressionError("pq needs calib data (activations to cluster)", field="calib")
    t0 = time.perf_counter()
    params = dict(Ls=Ls, Np=Np, proto_bits=proto_bits, lut_bits=lut_bits, niter=niter,
                  max_columns=max_columns, max_batches=max_batches, distance=distance,
                  scale_bits=scale_bits, skip_layers=tuple(skip_layers))
    new = copy.deepcopy(model)
    targets = target_layers(new, skip_layers)
    layers = {n: m for n, m in targets if _supported(m)}
    skipped = [n for n, m in targets if not _supported(m)]
    cols = collect_columns(new, layers, calib, max_columns, seed, max_batches)
    formats, out_err, n_w = {}, {}, {}
    for i, (name, mod) in enumerate(layers.items()):
        pq = build_pq_layer(mod, cols[name], Ls, Np, proto_bits, lut_bits, niter, seed + 1000 * i, distance)
        with torch.no_grad():
            ref = cols[name] @ weight_matrix(mod).T + (0 if mod.bias is None else mod.bias.float())
            out_err[name] = float(((pq.pq_matmul(cols[name]) - ref) ** 2).mean())
        parent, _, child = name.rpartition(".")
        setattr(new.get_submodule(parent) if parent else new, child, pq)
        n_w[name] = mod.weight.numel()
        formats[name] = PQFormat(Ls=Ls, Np=Np, proto_bits=proto_bits or 32, lut_bits=lut_bits or 32,
                                 cout=mod.weight.shape[0],
                                 scale_bits=scale_bits if (proto_bits or 32) < 32 or (lut_bits or 32) < 32 else 0)
    info = summarize("pq", params, formats, {n: 0.0 for n in formats}, n_w, t0)
    info["weight_mse"] = None
    info["output_mse"] = sum(out_err.values()) / max(1, len(out_err))
    for n in formats:
        info["layers"][n]["weight_mse"] = None
        info["layers"][n]["output_mse"] = out_err[n]
    info["skipped"] = skipped
    return CompressionResult(new, formats, info)
