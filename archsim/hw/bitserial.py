"""Shared base of the bit-serial weight-stationary kinds (swis_bitserial,
stripes, pragmatic). It registers no kind of its own.

Mapping: the dense ws loop nest of archsim/hw/systolic.py, unchanged (same
folds, tiles, buffers and traffic); the reduction dimension runs down the PE
rows in the SWIS order (conv: channel fastest within each kernel position;
see workloads/profile.py).

Timing (a documented choice, the same for the three kinds so that they
compare on the datapath alone): the array is bit-level pipelined, so the
weight shift-in, input skew and drain cost what they cost the bit-parallel
array (SCALE-Sim's ws fold: rows + (rows-1) + (cols-1)); what changes is the
streamed part: each streamed input vector is one lock-step *step* of the whole
fold (activations move right and partial sums move down together), and a
step takes as many cycles as the slowest PE of the fold needs:
    fold chunk = stream_cycles(fold) + (2*rows-1 if first) + (cols-1 if last)
    stream_cycles = sum over the chunk's steps of cycles per step (>= 1)
Each kind says what a step costs (SWIS: the fold's largest per-group shared-bit
count; Stripes: the layer's activation precision p; Pragmatic: the largest
essential-bit count of the step's activations, from a recorded profile).

Energy helpers build the bit-serial datapaths from the table's adder,
register and 2:1-mux (bitwise) rows; no multiplier row is used by any of them.
"""
from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from .pe_kind import Fold
from .systolic import SystolicArray, SystolicSpec


def clog2(n: int) -> int:
    return max(1, math.ceil(math.log2(n))) if n > 1 else 0


class BitSerialSpec(SystolicSpec):
    dataflow: Literal["ws"] = "ws"
    psum_overflow: Literal["spill", "tile_outputs", "auto"] = Field(
        "auto", description="as for kind systolic; default auto (whichever loop order is faster)")


class BitSerialArray(SystolicArray):
    """A ws systolic array whose streamed steps take several cycles each."""
    weight_formats = {
        "dense": "bit-parallel INT weights as stored",
        "trunc": "the kept bits as a narrower bit-parallel INT weight",
    }

    def __init__(self, spec, arch):
        super().__init__(spec, arch)
        self._ctx = None        # per-layer key of what the timing depends on
        self._pos = (0, 0, 0)   # (group, row fold, column fold) of the next compute node

    # -- per layer ------------------------------------------------------------
    def layer_context(self, t):
        """Set up whatever the layer's timing needs; return a hashable key."""
        return t.li

    def map_layer(self, t):
        self._ctx = self.layer_context(t)
        return super().map_layer(t)

    def fold_at(self, t, g, r, c):
        self._pos = (g, r, c)

    def position_key(self):
        """The part of the fold's position its cost depends on."""
        return ()

    def fold_cost(self, fold: Fold, fmt):
        key = (fold, self._ctx, self.position_key())
        hit = self._fold_cache.get(key)
        if hit is None:
            hit = self._fold_cache[key] = (self.fold_cycles(fold, fmt),
                                          tuple((k, v) for k, v in self.fold_actions(fold, fmt).items() if v))
        return hit

    # -- timing ---------------------------------------------------------------
    def stream_cycles(self, fold: Fold) -> int:
        raise NotImplementedError

    def fold_cycles(self, fold: Fold, fmt) -> int:
        return (self.stream_cycles(fold) + (self.fill_cycles() if fold.first else 0)
                + (self.drain_cycles() if fold.last else 0))

    def layer_actions(self, t) -> dict:
        """Action totals of the layer's compute nodes (the last nodes emitted)."""
        tot: dict = {}
        for n in reversed(t.b.nodes):
            if n["layer"] != t.li:
                break
            if n["kind"] == "compute":
                for k, v in n["actions"]:
                    tot[k] = tot.get(k, 0) + v
        return tot

    def lockstep_loss(self, t, busy_action: str) -> float:
        """Share (%) of PE-cycles the layer's lock-step rows spent idle."""
        a = self.layer_actions(t)
        busy, idle = a.get(busy_action, 0), a.get("pe_arith.lockstep_idle", 0)
        return 100 * idle / (busy + idle) if busy + idle else 0.0

    # -- cost helpers (each returns (pJ or um^2, where from)) ---------------------
    @staticmethod
    def adder_row(bits: int) -> str:
        return "int8_add" if bits <= 8 else "int16_add" if bits <= 16 else "int32_add"

    def add_pj(self, em, bits: int) -> tuple[float, str]:
        row = self.adder_row(bits)
        w = int(row[3:5].rstrip("_"))
        return em.table.value(row, "pJ/op") * bits / w, f"{row} x{bits}/{w} ({em.src(row)})"

    def add_area(self, em, bits: int) -> float:
        row = self.adder_row(bits)
        return em.table.area(row) * bits / int(row[3:5].rstrip("_"))

    @staticmethod
    def reg_pj(em, bits: int) -> tuple[float, str]:
        return em.table.value("register_1b", "pJ/access") * bits, f"register_1b x{bits} ({em.src('register_1b')})"

    @staticmethod
    def gate_pj(em, bits: int) -> tuple[float, str]:
        # an AND gate per bit, priced as one bit of a bitwise op (the mux2_1b row)
        return em.table.value("mux2_1b", "pJ/op") * bits, f"AND gates: mux2_1b x{bits} ({em.src('mux2_1b')})"

    @staticmethod
    def shifter_pj(em, bits: int, positions: int) -> tuple[float, str]:
        # barrel shifter: clog2(positions) levels of `bits` 2:1 muxes
        lv = clog2(positions)
        pj, src = em.mux_pj(2, bits)
        return pj * lv, f"barrel shifter {lv} levels x ({src})"

    @staticmethod
    def shifter_area(em, bits: int, positions: int) -> float:
        return em.mux_area_um2(2, bits) * clog2(positions)

    @staticmethod
    def combine(*parts) -> tuple[float, str]:
        return sum(p for p, _ in parts), " + ".join(s for _, s in parts)
