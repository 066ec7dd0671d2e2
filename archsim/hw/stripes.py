"""`kind: stripes`: Stripes (Judd et al., MICRO 2016), the activation-bit-serial
baseline SWIS compares with: weights bit-parallel and
stationary, activations fed one bit per cycle, so a streamed step of the ws
array takes p cycles, p = the layer's activation precision.

p per layer (`precision`):
  * `profile` (default): ActProfile.precision_bits from a calibration pass of
    real inputs through the real model (workloads/profile.py): the bits
    between the highest and the lowest bit any of the layer's quantized
    activations used, plus the sign for a layer that saw negative inputs.
    A layer without a profile is refused (no silent constant);
  * an integer: that p for every layer (a fixed precision).
p is capped at act_bits. A matmul's second operand is an activation too;
it runs at p like the first.

Datapath, per cycle: each PE ANDs its stationary weight (weight_bits) with the
current activation bit and adds it into the column's partial sum (adder of
weight_bits + clog2(rows) bits); each column's accumulator shifts its running
sum by one and adds (acc_bits). Timing as in archsim/hw/bitserial.py.
"""
from __future__ import annotations

from typing import Literal, Union

from pydantic import Field, PositiveInt

from .bitserial import BitSerialArray, BitSerialSpec, clog2
from .pe_kind import Fold, register_pe_kind


class StripesSpec(BitSerialSpec):
    kind: Literal["stripes"] = "stripes"
    precision: Union[Literal["profile"], PositiveInt] = Field(
        "profile", description="activation bits per step: 'profile' (per layer, recorded) or a fixed integer")


@register_pe_kind("stripes")
class StripesArray(BitSerialArray):
    Spec = StripesSpec

    def layer_precision(self, t) -> int:
        s = self.spec
        if s.precision != "profile":
            return min(int(s.precision), s.act_bits)
        prof = t.layer.act_profile
        if prof is None:
            t.refuse("stripes with precision: profile needs the layer's activation profile "
                     "(workloads.profile.profile_activations + attach_profiles; archsim run: --profile N), "
                     "or set a fixed precision",
                     "pe_array.precision")
        return max(1, min(prof.precision_bits, s.act_bits))

    def layer_context(self, t):
        self._p = self.layer_precision(t)
        return ("stripes", self._p)

    def stream_cycles(self, fold: Fold) -> int:
        return fold.stream_len * self._p

    def fold_lanes(self, rows_used: int) -> tuple:
        return (self._p,) * rows_used  # every lane runs the layer's p bits

    def fold_actions(self, fold: Fold, fmt) -> dict[str, int]:
        T, p = fold.stream_len, self._p
        pes = fold.rows_used * fold.cols_used
        return {"pe_arith.gated_add": pes * T * p, "registers.act": pes * T,
                "accumulator.shift_add": fold.cols_used * T * p}

    def loop_order(self, t) -> str:
        src = "profile" if self.spec.precision == "profile" else "fixed"
        return f"{super().loop_order(t)}; Stripes p={self._p} ({src})"

    # -- cost -------------------------------------------------------------------
    def psum_bits(self) -> int:
        return self.spec.weight_bits + clog2(self.rows)

    def action_costs(self, em) -> dict[str, tuple[float, str]]:
        s = self.spec
        w = self.psum_bits()
        return {"pe_arith.gated_add": self.combine(self.gate_pj(em, s.weight_bits), self.add_pj(em, w),
                                                   self.reg_pj(em, w)),
                "registers.act": self.reg_pj(em, s.act_bits),
                "accumulator.shift_add": self.combine(self.add_pj(em, s.acc_bits), self.reg_pj(em, s.acc_bits))}

    def pe_area_um2(self, em) -> float:
        s, t = self.spec, em.table
        w = self.psum_bits()
        regs = s.weight_bits + s.act_bits + w
        return t.area("mux2_1b") * s.weight_bits + self.add_area(em, w) + regs * t.area("register_1b")

    def area_um2(self, em) -> dict[str, tuple[float, str]]:
        s, t = self.spec, em.table
        acc = self.add_area(em, s.acc_bits) + s.acc_bits * t.area("register_1b")
        return {"pe_array": (self.rows * self.cols * self.pe_area_um2(em), "logic"),
                "accumulator": (self.cols * acc, "logic")}
