"""`kind: swis_bitserial`: the SWIS accelerator (Li, Romaszkan, Graening,
Gupta, arXiv 2103.01308): a
multiplier-free, weight-bit-serial, weight-stationary systolic array.

Datapath, per cycle: each PE gates its activation with the current shared bit
of its weight (an AND of act_bits) and adds it into the group's partial sum
(an adder of act_bits + clog2(G) bits); at the end of each group of G PE rows
the group's shifter applies the group's current shared shift (read from its
shift table) and the group's accumulator adds the shifted sum (acc_bits) into
the column's running sum. A group of G weights sharing N_g bit positions is
done after N_g cycles. No multiplier anywhere (energy or area).

Groups map onto the array as the compression cut them: G consecutive
reduction elements (input channels, channel fastest) of one output channel
sit in G consecutive PE rows of one column. The fold runs in lock-step (see
archsim/hw/bitserial.py), so each streamed step takes
    N_f = max N_g over every group the fold holds
cycles, and a PE whose group has N_g < N_f idles N_f - N_g cycles of each
step: the lock-step loss, counted as the action `pe_arith.lockstep_idle`
(PE-cycles; no dynamic energy: idle PEs are clock-gated, a documented
choice; their leakage is in static) and shown per layer in the report's
loop_order column. N_g is the real per-group value from the layer's
SWISFormat.group_n (whichever N policy the compression used); a format
without it runs every group at max_shared_bits; a dense layer runs all of
its weight bits (weight_bits), a matmul all of its activation bits.

`schedule` (how groups map to the array; a compiler choice, no hardware
change): `in_order` keeps the output channels in order; `sort_columns`
assigns output channels to columns by descending largest N_g (then mean
N_g), so that channels with long groups share folds and the others finish
early. Output channels are written back to their own addresses, so the
permutation costs nothing.

Shift tables are part of the weight payload (SWISFormat.payload_bits counts
N*clog2(B) bits per group): they come from DRAM with the weight tile they
belong to and sit in the group's shift-table registers while the tile is in
the array; each active group-cycle reads one entry (`shifter.table_read`).
"""
from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field, PositiveInt

from .bitserial import BitSerialArray, BitSerialSpec, clog2
from .pe_kind import Fold, register_pe_kind


class SWISSpec(BitSerialSpec):
    kind: Literal["swis_bitserial"] = "swis_bitserial"
    group_size: PositiveInt = Field(8, description="G: PE rows that share one shifter, accumulator and shift table")
    schedule: Literal["in_order", "sort_columns"] = "in_order"


@register_pe_kind("swis_bitserial")
class SWISArray(BitSerialArray):
    Spec = SWISSpec
    weight_formats = {
        "dense": "every weight bit is a step (as many steps as the format's bits, at most weight_bits)",
        "trunc": "every kept bit is a step",
        "swis": "one step per shared bit position of the group (shift tables with the weights)",
    }

    # -- the layer's per-weight shared-bit counts --------------------------------
    def _per_weight_n(self, t) -> tuple[np.ndarray, np.ndarray, str]:
        """(N per weight [groups, N_out, K] uint8, group id per reduction index
        [K], what it came from)."""
        L, fmt, G = t.layer, t.fmt, self.spec.group_size
        if L.op == "matmul":
            n = min(self.spec.act_bits, self.spec.weight_bits)
            return np.full((L.groups, L.N, L.K), n, np.uint8), np.arange(L.K) // G, f"matmul: {n} bits"
        # the reduction order: kernel positions x run (channels; the kernel window for depthwise)
        if L.conv is not None:
            cin = L.conv.in_ch // L.conv.groups
            khkw = L.conv.kh * L.conv.kw
            run, npos = (cin, khkw) if cin > 1 else (khkw, 1)
        else:
            run, npos = L.K, 1
        if run * npos != L.K:
            t.refuse(f"reduction {L.K} is not {npos} x {run}", "pe_array.kind")
        ng_run = math.ceil(run / G)
        k = np.arange(L.K)
        gid = (k // run) * ng_run + (k % run) // G
        if getattr(fmt, "name", "") != "swis":
            n = min(getattr(fmt, "pe_bits", 8), self.spec.weight_bits)
            return np.full((L.groups, L.N, L.K), n, np.uint8), gid, f"{fmt.name}: all {n} bits"
        if fmt.group_size != G:
            t.refuse(f"SWIS groups of {fmt.group_size} weights on an array built for groups of {G}",
                     "pe_array.group_size")
        if fmt.max_shared_bits > self.spec.weight_bits:
            t.refuse(f"N={fmt.max_shared_bits} shared bits exceed the array's weight_bits", "pe_array.weight_bits")
        if not fmt.group_n:
            n = fmt.max_shared_bits
            return np.full((L.groups, L.N, L.K), n, np.uint8), gid, f"N={n} for every group (no per-group N)"
        arr = fmt.group_n_array()
        O = L.groups * L.N
        if arr.size != O * npos * ng_run:
            t.refuse(f"SWISFormat.group_n has {arr.size} groups, the layer has {O * npos * ng_run}",
                     "pe_array.kind")
        per_w = np.repeat(arr.reshape(O, npos, ng_run), G, axis=2)[:, :, :run].reshape(L.groups, L.N, L.K)
        return per_w, gid, "per-group N from the SWISFormat"

    def layer_context(self, t):
        L = t.layer
        R, C = self.rows, self.cols
        nw, gid, self._n_source = self._per_weight_n(t)
        if self.spec.schedule == "sort_columns":
            key_max, key_mean = nw.max(axis=2), nw.mean(axis=2)
            order = np.stack([np.lexsort((-key_mean[g], -key_max[g])) for g in range(L.groups)])
            nw = np.take_along_axis(nw, order[:, :, None], axis=1)
        self._nw = nw  # per weight, in the schedule's column order (fidelity rows reads its lanes)
        nr, nc = math.ceil(L.K / R), math.ceil(L.N / C)
        pad = np.zeros((L.groups, nc * C, nr * R), np.int64)
        pad[:, :L.N, :L.K] = nw
        tiles = pad.reshape(L.groups, nc, C, nr, R)
        n_max = tiles.max(axis=(2, 4))                     # [g, nc, nr]
        n_sum = tiles.sum(axis=(2, 4))
        # first PE row of each group within a row fold: one shifter/accumulator per (group, column)
        kk = np.arange(nr * R)
        gid_p = np.full(nr * R, -1)
        gid_p[:L.K] = gid
        first = (kk < L.K) & ((kk % R == 0) | (gid_p != np.roll(gid_p, 1)))
        n_grp = (pad * first[None, None, :]).reshape(L.groups, nc, C, nr, R).sum(axis=(2, 4))
        n_heads = first.reshape(nr, R).sum(axis=1)          # groups per row fold (per column)
        self._tiles = {"max": np.maximum(n_max, 1), "sum": n_sum, "grp": n_grp, "heads": n_heads}
        return ("swis", t.li, id(t.layer))

    def position_key(self):
        return self._pos

    # -- one fold ---------------------------------------------------------------
    def _tile(self):
        g, r, c = self._pos
        tl = self._tiles
        return int(tl["max"][g, c, r]), int(tl["sum"][g, c, r]), int(tl["grp"][g, c, r]), int(tl["heads"][r])

    def stream_cycles(self, fold: Fold) -> int:
        return fold.stream_len * self._tile()[0]

    def fold_lanes(self, rows_used: int) -> tuple:
        # each PE row's lane: the largest N_g among the weights it holds in this fold
        g, r, c = self._pos
        R, C = self.rows, self.cols
        held = self._nw[g, c * C:(c + 1) * C, r * R:r * R + rows_used]
        return tuple(int(v) for v in held.max(axis=0))

    def fold_actions(self, fold: Fold, fmt) -> dict[str, int]:
        nf, s, sg, _ = self._tile()
        T = fold.stream_len
        pes = fold.rows_used * fold.cols_used
        return {"pe_arith.gated_add": s * T, "pe_arith.lockstep_idle": (pes * nf - s) * T,
                "registers.act": pes * T,
                "shifter.shift": sg * T, "shifter.table_read": sg * T, "accumulator.add": sg * T}

    def loop_order(self, t) -> str:
        loss = self.lockstep_loss(t, "pe_arith.gated_add")
        return (f"{super().loop_order(t)}; SWIS {self.spec.schedule}, {self._n_source}; "
                f"lock-step idle {loss:.1f}% of PE-cycles")

    # -- cost -------------------------------------------------------------------
    def psum_bits(self) -> int:
        return self.spec.act_bits + clog2(self.spec.group_size)

    def action_costs(self, em) -> dict[str, tuple[float, str]]:
        s = self.spec
        wp, B = self.psum_bits(), s.weight_bits
        return {
            "pe_arith.gated_add": self.combine(self.gate_pj(em, s.act_bits), self.add_pj(em, wp),
                                               self.reg_pj(em, wp)),
            "pe_arith.lockstep_idle": (0.0, "documented choice: a PE idle in a lock-step step is clock-gated "
                                            "(no dynamic energy); its leakage is in static"),
            "registers.act": self.reg_pj(em, s.act_bits),
            "shifter.shift": self.shifter_pj(em, wp, B),
            "shifter.table_read": self.reg_pj(em, clog2(B)),
            "accumulator.add": self.combine(self.add_pj(em, s.acc_bits), self.reg_pj(em, s.acc_bits)),
        }

    def pe_area_um2(self, em) -> float:
        s, t = self.spec, em.table
        wp = self.psum_bits()
        regs = (1 + s.weight_bits) + s.act_bits + wp  # sign + up to B weight bits, activation, partial sum
        return t.area("mux2_1b") * s.act_bits + self.add_area(em, wp) + regs * t.area("register_1b")

    def group_area_um2(self, em) -> float:
        """Per group of G rows in a column: shifter, accumulator, shift table (B entries of clog2 B bits)."""
        s, t = self.spec, em.table
        B = s.weight_bits
        return (self.shifter_area(em, self.psum_bits(), B) + self.add_area(em, s.acc_bits)
                + (s.acc_bits + B * clog2(B)) * t.area("register_1b"))

    def area_um2(self, em) -> dict[str, tuple[float, str]]:
        groups = math.ceil(self.rows / self.spec.group_size) * self.cols
        return {"pe_array": (self.rows * self.cols * self.pe_area_um2(em), "logic"),
                "shifters": (groups * self.group_area_um2(em), "logic")}
