"""`kind: ews`: the enhanced weight-stationary array MVQ builds on (Li et al.,
ASPLOS 2025: "each PE keeps small register files for
weights, activations and partial sums").

What the register files change, as modelled here (the paper's text we could
read gives the idea, not the micro-architecture; these are documented
choices, each a parameter):
  * weight RF (`weight_rf_entries` >= 2): the next fold's weights are shifted
    into a second RF entry while the current fold streams, so the `rows`
    cycles of weight shift-in are paid once per layer, not once per fold
    (a fold is rows-1 input skew + T + cols-1 drain);
  * activation RF: each activation is written once into a PE's RF and read by
    its MAC (an RF write + read per MAC instead of a pipeline register move);
  * psum RF: the partial sum is read and written in the PE's RF per MAC.
Register-file energy per access is its width times the register_1b row (a
small RF built of flip-flops, Aladdin's register model); area is its bits
times register_1b's area.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from .pe_kind import Fold, register_pe_kind
from .systolic import SystolicArray, SystolicSpec


class EWSSpec(SystolicSpec):
    kind: Literal["ews"] = "ews"
    dataflow: Literal["ws"] = "ws"
    weight_rf_entries: int = Field(2, ge=2, description="weights per PE: >= 2 hides the next fold's weight load")
    act_rf_entries: PositiveInt = 2
    psum_rf_entries: PositiveInt = 1


@register_pe_kind("ews")
class EWSArray(SystolicArray):
    Spec = EWSSpec

    def fold_cycles(self, fold: Fold, fmt) -> int:
        # the weight shift-in (rows cycles) is hidden behind the previous fold;
        # only the layer's very first fold pays it (first chunk of row fold 0)
        skew = self.rows - 1
        fill = skew + (self.rows if fold.layer_first else 0)
        return fold.stream_len + (fill if fold.first else 0) + (self.cols - 1 if fold.last else 0)

    def fold_actions(self, fold: Fold, fmt) -> dict[str, int]:
        macs = fold.rows_used * fold.cols_used * fold.stream_len
        weights = fold.rows_used * fold.cols_used if fold.first else 0
        return {"pe_arith.mac": macs, "rf.act": macs, "rf.psum": macs, "rf.weight_write": weights}

    def action_costs(self, em) -> dict[str, tuple[float, str]]:
        s = self.spec
        reg = em.table.value("register_1b", "pJ/access")
        src = em.src("register_1b")
        return {"pe_arith.mac": self._mac_pj(em),
                "rf.act": (reg * 2 * s.act_bits, f"register_1b x 2 x act_bits (RF write + read) ({src})"),
                "rf.psum": (reg * 2 * s.acc_bits, f"register_1b x 2 x acc_bits (RF read + write) ({src})"),
                "rf.weight_write": (reg * s.weight_bits, f"register_1b x weight_bits ({src})")}

    def register_bits(self) -> int:
        """Register-file bits per PE (weights, activations, partial sums)."""
        s = self.spec
        return s.weight_rf_entries * s.weight_bits + s.act_rf_entries * s.act_bits + s.psum_rf_entries * s.acc_bits
