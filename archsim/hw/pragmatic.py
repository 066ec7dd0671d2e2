"""`kind: pragmatic`: Bit-Pragmatic (Albericio et al., MICRO 2017), the
bit-serial baseline that processes only the essential (non-zero) bits of the
activations. Weights are bit-parallel and stationary;
each activation is sent as its list of oneffsets (positions of its one bits),
one per cycle; each PE shifts its weight by the oneffset and adds.

Lock-step: the activations of one streamed step (the rows_used activations of
one input vector that enter the fold together) advance together, so a step
takes the largest essential-bit count among them (at least 1 cycle: the
partial sums still move). This is data-dependent and comes from a recorded
profile of real activations (workloads/profile.py, ActProfile.lanes): for
lane groups of L = rows activations aligned at row-fold boundaries, the mean
over real input vectors of the group's largest essential-bit count and of its
total essential bits, per row fold. A layer without a profile is refused.
A profile recorded without L = rows uses the next larger recorded L (never
fewer cycles); the report's loop_order says which L was used.

Datapath: per essential bit, a PE shifts its weight (barrel shifter of
weight_bits + act_bits bits over act_bits positions) and adds it into the
column's partial sum (weight_bits + act_bits + clog2(rows) bits); each row
has a oneffset encoder (a priority encoder over act_bits: the lzc row) that
produces one oneffset per essential bit; each column's accumulator adds once
per cycle (acc_bits).
"""
from __future__ import annotations

import math
from typing import Literal

from .bitserial import BitSerialArray, BitSerialSpec, clog2
from .pe_kind import Fold, register_pe_kind


class PragmaticSpec(BitSerialSpec):
    kind: Literal["pragmatic"] = "pragmatic"


@register_pe_kind("pragmatic")
class PragmaticArray(BitSerialArray):
    Spec = PragmaticSpec

    def layer_context(self, t):
        L = t.layer
        prof = L.act_profile
        if prof is None:
            t.refuse("pragmatic needs the layer's activation profile (workloads.profile.profile_activations "
                     "+ attach_profiles; archsim run: --profile N): its cycles come from the recorded essential bits",
                     "pe_array.kind")
        if prof.reduction != L.K:
            t.refuse(f"activation profile is for a reduction of {prof.reduction}, the layer has {L.K}",
                     "pe_array.kind")
        self._L, self._mx, self._sm = prof.lane_stats(self.rows)
        return ("pragmatic", t.li, id(L))

    def position_key(self):
        return self._pos[1]

    def _chunk(self) -> tuple[float, float]:
        r = self._pos[1]
        i = min(r * self.rows // self._L, len(self._mx) - 1)
        return self._mx[i], self._sm[i]

    def stream_cycles(self, fold: Fold) -> int:
        return math.ceil(fold.stream_len * self._chunk()[0] - 1e-6)

    def fold_lanes(self, rows_used: int) -> tuple:
        # the profile keeps the mean slowest lane per row fold, not each lane's
        # bits per vector: every lane runs the mean slowest lane's cycles
        return (self._chunk()[0],) * rows_used

    def fold_actions(self, fold: Fold, fmt) -> dict[str, int]:
        mx, sm = self._chunk()
        T, ru, cu = fold.stream_len, fold.rows_used, fold.cols_used
        steps = math.ceil(T * mx - 1e-6)
        ess = round(T * sm)  # essential bits entering the fold in this chunk
        return {"pe_arith.shift_add": cu * ess, "pe_arith.lockstep_idle": max(0, cu * (ru * steps - ess)),
                "oneffset.encode": ess, "registers.act": ru * cu * T, "accumulator.add": cu * steps}

    def loop_order(self, t) -> str:
        loss = self.lockstep_loss(t, "pe_arith.shift_add")
        return (f"{super().loop_order(t)}; Pragmatic lanes L={self._L}, mean essential bits "
                f"{t.layer.act_profile.mean_essential_bits:.2f}; lock-step idle {loss:.1f}% of PE-cycles")

    # -- cost -------------------------------------------------------------------
    def psum_bits(self) -> int:
        s = self.spec
        return s.weight_bits + s.act_bits + clog2(self.rows)

    def action_costs(self, em) -> dict[str, tuple[float, str]]:
        s = self.spec
        w = self.psum_bits()
        return {"pe_arith.shift_add": self.combine(self.shifter_pj(em, s.weight_bits + s.act_bits, s.act_bits),
                                                   self.add_pj(em, w), self.reg_pj(em, w)),
                "pe_arith.lockstep_idle": (0.0, "documented choice: a PE idle in a lock-step step is clock-gated "
                                                "(no dynamic energy); its leakage is in static"),
                "oneffset.encode": em.lzc_pj(s.act_bits),
                "registers.act": self.reg_pj(em, s.act_bits),
                "accumulator.add": self.combine(self.add_pj(em, s.acc_bits), self.reg_pj(em, s.acc_bits))}

    def pe_area_um2(self, em) -> float:
        s, t = self.spec, em.table
        w = self.psum_bits()
        regs = s.weight_bits + (clog2(s.act_bits) + 1) + w  # weight, oneffset (+ valid), partial sum
        return (self.shifter_area(em, s.weight_bits + s.act_bits, s.act_bits) + self.add_area(em, w)
                + regs * t.area("register_1b"))

    def area_um2(self, em) -> dict[str, tuple[float, str]]:
        s, t = self.spec, em.table
        enc = em.lzc_area_um2(s.act_bits) + s.act_bits * t.area("register_1b")
        acc = self.add_area(em, s.acc_bits) + s.acc_bits * t.area("register_1b")
        return {"pe_array": (self.rows * self.cols * self.pe_area_um2(em), "logic"),
                "oneffset": (self.rows * enc, "logic"), "accumulator": (self.cols * acc, "logic")}
