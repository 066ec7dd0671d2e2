"""`kind: pipelined_systolic`: a weight-stationary systolic array whose
multipliers are pipelined over `mult_stages` cycles (a faster clock for the
same array, paid for in latency and pipeline registers).

Everything else (the loop nest, partial-sum handling, weight formats it runs)
is the built-in `systolic` kind's: this class changes only what the pipeline
changes.
  timing: every fold drains `mult_stages - 1` cycles later (the last product
          leaves the deeper pipeline later); fill and streaming are unchanged;
  energy: each MAC also clocks the pipeline registers between the stages
          (a product of weight_bits + act_bits bits per extra stage);
  area:   those registers, in every PE.
"""
from typing import Literal

from pydantic import Field, PositiveInt

from archsim.hw.pe_kind import register_pe_kind
from archsim.hw.systolic import SystolicArray, SystolicSpec


class PipelinedSystolicSpec(SystolicSpec):
    kind: Literal["pipelined_systolic"] = "pipelined_systolic"
    dataflow: Literal["ws"] = "ws"
    mult_stages: PositiveInt = Field(2, description="pipeline stages of each PE's multiplier")


@register_pe_kind("pipelined_systolic")
class PipelinedSystolic(SystolicArray):
    Spec = PipelinedSystolicSpec

    def _extra_stages(self) -> int:
        return self.spec.mult_stages - 1

    def drain_cycles(self) -> int:
        return super().drain_cycles() + self._extra_stages()

    def fold_actions(self, fold, fmt):
        actions = super().fold_actions(fold, fmt)
        actions["pipeline.mac"] = actions["pe_arith.mac"]
        return actions

    def _pipeline_bits(self) -> int:
        s = self.spec
        return self._extra_stages() * (s.weight_bits + s.act_bits)

    def action_costs(self, em):
        reg = em.table.value("register_1b", "pJ/access")
        costs = super().action_costs(em)
        costs["pipeline.mac"] = (reg * self._pipeline_bits(),
                                 f"register_1b x {self._pipeline_bits()} pipeline bits ({em.src('register_1b')})")
        return costs

    def area_um2(self, em):
        area = super().area_um2(em)
        area["pipeline"] = (self.rows * self.cols * self._pipeline_bits() * em.table.area("register_1b"), "logic")
        return area
