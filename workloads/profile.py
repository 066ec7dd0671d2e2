"""Activation profiles: statistics of each layer's real input activations,
recorded by a calibration pass of real inputs through the real model, for
the PE kinds whose timing depends on the data:
  * Stripes (archsim/hw/stripes.py): the precision p each layer needs;
  * Bit-Pragmatic (archsim/hw/pragmatic.py): essential (non-zero) bits of the
    activations and, for lane groups of L activations that run in lock-step,
    the mean of the group's largest essential-bit count.

    profiles = profile_activations(model, calib_images, act_bits=8)
    layers = trace(model, example, formats=...)
    attach_profiles(layers, profiles)

Quantization (the same one every kind's activations get): per layer, the
calibration inputs' largest magnitude maps to the top of an `act_bits` grid,
unsigned when the layer never saw a negative input (after ReLU), else sign +
(act_bits-1) magnitude bits. Essential bits = popcount of the magnitude (the
"oneffsets" of Pragmatic; the sign is not a cycle).

Lane groups follow the PE array's reduction order, which is the SWIS one:
for a conv, channel fastest within each kernel position ((kh, kw, c), as an
NHWC im2col), a depthwise conv along its kernel window, a linear along its
inputs. A group is L consecutive reduction elements of one output pixel's
input vector, aligned at multiples of L (a row fold of an L-row array).

Layer names are the module qualified names that workloads.compile.trace
gives (':1', ':2'... for later calls of the same module).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

# lane-group sizes recorded: the array row counts a kind may use
LANE_GROUPS = (4, 8, 16, 32, 64, 128, 256)

_POPCOUNT = torch.tensor([bin(i).count("1") for i in range(1 << 16)], dtype=torch.uint8)


@dataclass(frozen=True)
class ActProfile:
    """One layer's input-activation statistics (hashable: a PE kind caches by it).

    lanes: ((L, max_per_chunk, sum_per_chunk), ...): for lane groups of L, per
    aligned chunk of the reduction (ceil(K / L) chunks), the mean over input
    vectors of max(1, largest essential-bit count in the chunk) and of the
    chunk's total essential bits."""
    act_bits: int
    signed: bool
    max_abs: float
    precision_bits: int
    mean_essential_bits: float
    zero_fraction: float
    reduction: int
    n_vectors: int
    lanes: tuple

    def lane_stats(self, lanes: int) -> tuple[int, tuple, tuple]:
        """(L used, max per chunk, sum per chunk) for groups of `lanes`: the
        recorded size itself, else the smallest recorded one above it (whose
        group maximum is at least as large: a conservative stand-in)."""
        recorded = sorted(self.lanes, key=lambda e: e[0])
        for L, mx, sm in recorded:
            if L >= lanes:
                return L, mx, sm
        return recorded[-1]

    def describe(self) -> dict:
        return {"act_bits": self.act_bits, "signed": self.signed, "max_abs": self.max_abs,
                "precision_bits": self.precision_bits, "mean_essential_bits": self.mean_essential_bits,
                "zero_fraction": self.zero_fraction, "n_vectors": self.n_vectors}


def _vectors(mod: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's input vectors [V, K] in the array's reduction order."""
    if isinstance(mod, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    c = x.shape[1]
    g = mod.groups
    kh, kw = mod.kernel_size
    cols = F.unfold(x, mod.kernel_size, dilation=mod.dilation, padding=mod.padding, stride=mod.stride)
    b, _, p = cols.shape
    cols = cols.reshape(b, g, c // g, kh * kw, p)
    if c // g == 1:  # depthwise: the run is the kernel window
        return cols.permute(0, 1, 4, 2, 3).reshape(b * g * p, kh * kw)
    return cols.permute(0, 1, 4, 3, 2).reshape(b * g * p, kh * kw * (c // g))


def _names(model: nn.Module):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _run(model, batches, on_input):
    calls: dict[str, int] = {}
    hooks = []

    def hook_for(name):
        def hook(mod, args):
            k = calls.get(name, 0)
            calls[name] = k + 1
            on_input(name if k == 0 else f"{name}:{k}", mod, args[0].detach())
        return hook

    for name, mod in _names(model):
        hooks.append(mod.register_forward_pre_hook(hook_for(name)))
    try:
        with torch.no_grad():
            for xb in batches:
                calls.clear()
                model(xb)
    finally:
        for h in hooks:
            h.remove()


def profile_activations(model: nn.Module, inputs, act_bits: int = 8, batch_size: int = 256,
                        lanes: Iterable[int] = LANE_GROUPS) -> dict[str, ActProfile]:
    """Run `inputs` (a tensor, split into batches, or an iterable of batches)
    through `model` twice (ranges, then statistics) and return
    {layer name: ActProfile}. A float64 copy of the model runs in eval mode; its weights are
    only read. The wall time is in the result's attribute-free companion
    `profile_activations.last_wall_s`."""
    t0 = time.perf_counter()
    # In float64: float32 sums differ in their last bits between CPUs (AVX2 vs
    # AVX-512 kernels, thread splits), and an activation on a rounding
    # boundary of the act_bits grid would then profile differently per machine.
    model = copy.deepcopy(model).double().eval()
    if isinstance(inputs, torch.Tensor):
        batches = [inputs[i:i + batch_size] for i in range(0, inputs.shape[0], batch_size)]
    else:
        batches = list(inputs)
    batches = [b.double() if b.is_floating_point() else b for b in batches]
    lanes = tuple(sorted(set(int(L) for L in lanes)))
    # pass 1: range and sign per layer
    rng: dict[str, list] = {}

    def see_range(name, mod, x):
        r = rng.setdefault(name, [0.0, False])
        r[0] = max(r[0], float(x.abs().max()))
        r[1] = r[1] or bool((x < 0).any())

    _run(model, batches, see_range)
    # pass 2: essential bits
    acc: dict[str, dict] = {}

    def see_bits(name, mod, x):
        max_abs, signed = rng[name]
        top = 2 ** (act_bits - 1) - 1 if signed else 2 ** act_bits - 1
        scale = max_abs / top if max_abs > 0 else 1.0
        v = _vectors(mod, x)
        q = torch.clamp(torch.round(v.abs() / scale), 0, top).to(torch.int64)
        ess = _POPCOUNT[q].to(torch.int32)
        V, K = ess.shape
        a = acc.setdefault(name, {"K": K, "V": 0, "ess": 0, "zeros": 0, "or": 0, "lanes": {}})
        a["V"] += V
        a["ess"] += int(ess.sum())
        a["zeros"] += int((q == 0).sum())
        used = 0
        for b in range(act_bits):
            if bool(((q >> b) & 1).any()):
                used |= 1 << b
        a["or"] |= used
        for L in lanes:
            n = math.ceil(K / L)
            e = F.pad(ess, (0, n * L - K)).reshape(V, n, L)
            mx = e.amax(2).clamp(min=1).sum(0, dtype=torch.float64)
            sm = e.sum(2).sum(0, dtype=torch.float64)
            prev = a["lanes"].get(L)
            a["lanes"][L] = (mx, sm) if prev is None else (prev[0] + mx, prev[1] + sm)

    _run(model, batches, see_bits)
    out = {}
    for name, a in acc.items():
        max_abs, signed = rng[name]
        V, K = a["V"], a["K"]
        used = a["or"]
        # Stripes: the bits between the highest and the lowest bit any value used
        if used:
            hi, lo = used.bit_length(), (used & -used).bit_length() - 1
            precision = hi - lo + (1 if signed else 0)
        else:
            precision = 1
        lane_t = tuple((L, tuple(float(v) / V for v in mx), tuple(float(v) / V for v in sm))
                       for L, (mx, sm) in sorted(a["lanes"].items()))
        out[name] = ActProfile(act_bits=act_bits, signed=signed, max_abs=max_abs, precision_bits=precision,
                               mean_essential_bits=a["ess"] / (V * K), zero_fraction=a["zeros"] / (V * K),
                               reduction=K, n_vectors=V, lanes=lane_t)
    profile_activations.last_wall_s = time.perf_counter() - t0
    return out


profile_activations.last_wall_s = 0.0


def attach_profiles(layers, profiles: Mapping[str, ActProfile]):
    """Set each LayerSpec's act_profile from `profiles` by layer name (in place);
    returns the layers."""
    for L in layers:
        if L.name in profiles:
            L.act_profile = profiles[L.name]
    return layers
