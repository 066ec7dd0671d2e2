"""The output-stationary mapper of the systolic family (os): a plan (pure
geometry: reduction chunks that fit the buffers, what stays resident) and an
emit step that walks it through the tiler.

Loop nest: for pixel fold (M) / col fold (N) / chunk of K: stream K; outputs
accumulate in the PEs and leave once per fold.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..hw.pe_kind import Fold


@dataclass(frozen=True)
class OutputStationaryPlan:
    nt: int                 # pixel folds
    nc: int                 # column folds
    k_lens: tuple           # reduction length of each chunk
    w_resident: bool        # every weight transfer fits the weight buffer at once: loaded once
    in_resident: bool       # a pixel fold's input transfers fit at once: loaded once per fold


def plan_output_stationary(kind, t) -> OutputStationaryPlan:
    """The geometry of the os nest of one layer on `kind`'s array. Creates
    no node; raises when one reduction step or output tile does not fit."""
    L = t.layer
    R, C = kind.rows, kind.cols
    Kred, T, N = L.K, L.M, L.N
    nt, nc = math.ceil(T / R), math.ceil(N / C)
    lim_in, lim_w = t.limit["input"], t.limit["weight"]
    per_k = max(t.in_dram_bytes(R * 64) / 64, 1e-9), max(t.w_bytes(C * 64) / 64, 1e-9)
    k_chunk = min(Kred, int(lim_in // per_k[0]), int(lim_w // per_k[1]))
    if k_chunk < 1:
        t.too_small("input" if lim_in < per_k[0] else "weight", "one reduction step")
    if t.act_bytes(R * C) > t.limit["output"]:
        t.too_small("output", f"one {R}x{C} output tile")
    n_k = math.ceil(Kred / k_chunk)
    k_lens = [min(k_chunk, Kred - k * k_chunk) for k in range(n_k)]
    # resident if all its transfers (each rounded up to whole bytes) fit at once
    w_resident = sum(t.w_bytes(kl * min(C, N - c * C)) for c in range(nc) for kl in k_lens) \
        <= t.capacity["weight"]
    in_resident = sum(t.in_dram_bytes(R * kl) for kl in k_lens) <= t.capacity["input"]
    return OutputStationaryPlan(nt, nc, tuple(k_lens), w_resident, in_resident)


def emit_output_stationary(kind, t, p: OutputStationaryPlan):
    """Walk the plan through the tiler `t`; returns the layer's last store node."""
    L = t.layer
    R, C = kind.rows, kind.cols
    T, N = L.M, L.N
    nt, nc, k_lens, w_resident, in_resident = p.nt, p.nc, p.k_lens, p.w_resident, p.in_resident
    n_k = len(k_lens)
    last_store = None
    recent: list[int] = []
    for g in range(L.groups):
        w_loads: dict[tuple[int, int], int] = {}
        w_last: dict[tuple[int, int], tuple[int, int]] = {}
        for ti in range(nt):
            tu = min(R, T - ti * R)
            in_loads: dict[int, int] = {}
            in_last: dict[int, tuple[int, int]] = {}
            for c in range(nc):
                cu = min(C, N - c * C)
                for k in range(n_k):
                    kl = k_lens[k]
                    # inputs
                    if in_resident and k in in_loads:
                        ild = in_loads[k]
                    else:
                        ild = t.load("input", t.in_dram_bytes(tu * kl), act_dep=True)
                        in_loads[k] = ild
                    # weights (a matmul's second operand is the previous layer's output)
                    wnb = t.w_bytes(kl * cu)
                    if w_resident and (c, k) in w_loads:
                        wld = w_loads[(c, k)]
                    else:
                        wld = t.load("weight", wnb, deps=(t.prev_store if L.op == "matmul" else None,))
                        w_loads[(c, k)] = wld
                    deps = [ild]
                    sram = [("input", t.act_bytes(tu * kl), 0)]
                    if t.needs_decode:
                        # decoded weights go straight to the array through a two-tile FIFO
                        deps.append(t.decode((wld, recent[-2] if len(recent) >= 2 else None), kl * cu, wnb))
                    else:
                        deps.append(wld)
                        sram.append(("weight", wnb, 0))
                    last = k == n_k - 1
                    alloc = (("output", t.act_bytes(tu * cu)),) if last else ()
                    cp = t.compute(Fold(tu, cu, kl, k == 0, last), deps, macs=tu * cu * kl,
                                   alloc=alloc, sram=tuple(sram))
                    recent.append(cp)
                    if len(recent) > 2:
                        recent.pop(0)
                    if in_resident:
                        in_last[k] = (cp, t.in_dram_bytes(tu * kl))
                    else:
                        t.free_later(cp, "input", t.in_dram_bytes(tu * kl))
                    if w_resident:
                        w_last[(c, k)] = (cp, wnb)
                    else:
                        t.free_later(cp, "weight", wnb)
                    if last:
                        onb = t.act_bytes(tu * cu)
                        last_store = t.store(onb, cp, free_psum=onb, sram_write=onb)
            for cp, nb in in_last.values():
                t.free_later(cp, "input", nb)
        for cp, nb in w_last.values():
            t.free_later(cp, "weight", nb)
    return last_store
