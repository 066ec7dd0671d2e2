"""`kind: systolic`: the dense INT systolic array, weight-, input- or
output-stationary. Its timing equals SCALE-Sim's (tests/test_fidelity.py):
  ws / is : fold = 2*rows + cols + T - 2   (T = streamed length)
  os      : fold = K + rows + cols - 2     (K = reduction length)
always with the full array dimensions, whatever part of the array a fold
uses. A fold may be split into chunks along its streamed dimension (to fit
the buffers); the fill is charged to the first chunk and the drain to the
last, so the chunks of a fold add up to exactly the formula.

The loop nests are mappers (archsim/mappers: stationary for ws / is,
output_stationary for os), each a plan and an emit step; this class is the
datapath they walk: its fill and drain, actions and area. `psum_overflow`
picks the ws/is order when a column fold's partial sums exceed the output
buffer: `spill` (SCALE-Sim's order), `tile_outputs`, or `auto` (per layer,
the order a dry run's roofline estimate says is faster).
Subclasses (e.g. the N:M sparse array) reuse the ws nest and change how many
reduction elements one row fold covers (`reduction_span`) and how many PE
rows that takes (`pe_rows`).
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from ..mappers.output_stationary import emit_output_stationary, plan_output_stationary
from ..mappers.stationary import emit_stationary, plan_stationary, psum_fits
from .pe_kind import Fold, PEKind, PESpec, register_pe_kind


class SystolicSpec(PESpec):
    kind: Literal["systolic"] = "systolic"
    dataflow: Literal["ws", "os", "is"] = "ws"
    weight_bits: PositiveInt = 8
    acc_bits: PositiveInt = 32
    psum_overflow: Literal["spill", "tile_outputs", "auto"] = Field(
        "auto", description="ws/is, when a column fold's partial sums exceed the output buffer: "
        "spill them to DRAM (SCALE-Sim's loop order), tile the outputs and refill the array per block, "
        "or auto: per layer, whichever the cost estimate says is faster")


@register_pe_kind("systolic")
class SystolicArray(PEKind):
    Spec = SystolicSpec

    weight_formats = {
        "dense": "INT MACs on the stored weights",
        "trunc": "the kept bits are a narrower INT weight: dense INT MACs",
        "vq": "the decoder rebuilds INT weights from the codebook, then dense INT MACs",
        "ssvq": "the decoder rebuilds signed weights (magnitude lookup + sign), then dense INT MACs",
        "mvq": "the loader rebuilds the weights with the pruned ones as zeros, then dense INT MACs",
        "aqlm": "the decoder rebuilds weights as sums of M codewords, then dense INT MACs",
        "lcvq": "the decoder rebuilds weights from the large (and residual) codebook, then dense INT MACs",
    }

    def __init__(self, spec, arch):
        super().__init__(spec, arch)
        self.dataflow = spec.dataflow
        self.acc_bits = spec.acc_bits

    def format_problem(self, fmt):
        if self.dataflow == "is" and fmt.decode_lookups(1) > 0:
            return "decoding compressed weights on an input-stationary array is not modelled", "pe_array.dataflow"
        return None

    # -- timing ---------------------------------------------------------------
    def fill_cycles(self) -> int:
        if self.dataflow == "os":
            return 0
        # stationary operand shifted in (rows) + input skew (rows - 1)
        return 2 * self.rows - 1

    def drain_cycles(self) -> int:
        if self.dataflow == "os":
            return self.rows + self.cols - 2
        return self.cols - 1

    def chunk_cycles(self, stream_len: int, first: bool, last: bool) -> int:
        return stream_len + (self.fill_cycles() if first else 0) + (self.drain_cycles() if last else 0)

    def fold_cycles(self, fold: Fold, fmt) -> int:
        return self.chunk_cycles(fold.stream_len, fold.first, fold.last)

    def fold_actions(self, fold: Fold, fmt) -> dict[str, int]:
        macs = fold.rows_used * fold.cols_used * fold.stream_len
        return {"pe_arith.mac": macs, "registers.mac": macs}

    # -- cost -----------------------------------------------------------------
    def _mac_pj(self, em, weight_bits=None) -> tuple[float, str]:
        # An array multiplier's energy grows with the product of its operand
        # widths (w x a full adders), an adder's with its width (Horowitz 45 nm).
        s, t = self.spec, em.table
        w = weight_bits or s.weight_bits
        mult = t.value("int8_mult", "pJ/op") * w * s.act_bits / 64
        add = t.value("int32_add", "pJ/op") * s.acc_bits / 32
        return mult + add, (f"int8_mult x{w}*{s.act_bits}/64 + int32_add x{s.acc_bits}/32 "
                            f"({em.src('int8_mult')}; {em.src('int32_add')})")

    def action_costs(self, em) -> dict[str, tuple[float, str]]:
        # Registers: every MAC moves an activation into the next PE and a
        # partial sum into an accumulator (act_bits + acc_bits flip-flops);
        # stationary weights are latched once per fold and not counted.
        s = self.spec
        reg = em.table.value("register_1b", "pJ/access")
        return {"pe_arith.mac": self._mac_pj(em),
                "registers.mac": (reg * (s.act_bits + s.acc_bits),
                                  f"register_1b x (act_bits + acc_bits) = x{s.act_bits + s.acc_bits} "
                                  f"({em.src('register_1b')})")}

    def register_bits(self) -> int:
        """Flip-flops per PE: its weight, activation and partial-sum registers."""
        s = self.spec
        return s.weight_bits + s.act_bits + s.acc_bits

    def pe_area_um2(self, em) -> float:
        s, t = self.spec, em.table
        return (t.area("int8_mult") * s.weight_bits * s.act_bits / 64 + t.area("int32_add") * s.acc_bits / 32
                + self.register_bits() * t.area("register_1b"))

    def area_um2(self, em) -> dict[str, tuple[float, str]]:
        return {"pe_array": (self.rows * self.cols * self.pe_area_um2(em), "logic")}

    # -- mapping --------------------------------------------------------------
    def reduction_span(self, t) -> int:
        """Reduction elements of the layer one row fold covers."""
        return self.rows

    def pe_rows(self, span_used: int, t) -> int:
        """PE rows that `span_used` reduction elements occupy."""
        return span_used

    def fold_at(self, t, g: int, r: int, c: int) -> None:
        """Called by the ws/is nest just before each compute node: the fold
        about to run is GEMM group g, row fold r (reduction elements
        [r*span, r*span + span)), column fold c (columns [c*cols, ...)).
        A no-op here; kinds whose fold timing depends on which weights the
        fold holds (e.g. SWIS's per-group shared bits) record it."""

    def fold_lanes(self, rows_used: int) -> tuple:
        """fidelity rows: the mean cycles per streamed step of each PE row of
        the fold about to run (after fold_at); () for one cycle per MAC row."""
        return ()

    def loop_order(self, t) -> str:
        return getattr(t, "loop_order", self.dataflow)

    def fold_estimate(self, layer) -> int:
        if self.dataflow == "os":
            return layer.groups * -(-layer.M // self.rows) * -(-layer.N // self.cols)
        if self.dataflow == "is":
            return self._stationary_fold_estimate(layer, layer.M, layer.N)
        return super().fold_estimate(layer)

    @property
    def records_folds(self) -> bool:
        """Does this kind's fold timing depend on which weights a fold holds (it overrides fold_at)?"""
        return type(self).fold_at is not SystolicArray.fold_at

    def map_layer(self, t):
        # the mappers (archsim/mappers) walk the nest; this datapath answers their questions
        if self.dataflow == "os":
            t.loop_order = "os"
            return emit_output_stationary(self, t, plan_output_stationary(self, t))
        ws = self.dataflow == "ws"
        mode = self.spec.psum_overflow
        if mode == "auto":
            # the two orders differ only when a column fold's partial sums overflow
            mode = "spill" if psum_fits(self, t, ws) else t.choose_by_estimate(
                {m: (lambda dry, m=m: self._stationary(dry, ws, m)) for m in ("spill", "tile_outputs")})
        return self._stationary(t, ws, mode)

    def _stationary(self, t, weights_stationary: bool, psum_overflow: str):
        plan = plan_stationary(self, t, weights_stationary, psum_overflow)
        t.loop_order = plan.loop_order
        return emit_stationary(self, t, plan)
