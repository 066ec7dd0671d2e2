"""`vector_unit: {kind: vector}`: the unit that runs the non-GEMM operators
of the workload DAG (residual adds, activations, pooling, norms, softmax).

A lane is an FP16 multiply-add: one lane-cycle does one multiply and one add
on one element. An operator class costs `op_cycles[class]` lane-cycles per
element (per element of its window for pooling), so an operator of n
elements takes ceil(n * cost / lanes) cycles and n * cost lane-ops.
The default costs below are derived estimates, not measurements: an
elementwise op is one lane-op; a transcendental (exp, tanh, erf through a
piecewise polynomial) about four multiply-adds; a norm two passes over its
elements for the statistics and one to normalise and scale (three); softmax a
max pass, an exp (four) and a normalising pass (six). A YAML overrides any.
Energy per lane-op: fp16_mult + fp16_add of the table (Horowitz, ISSCC 2014);
area per lane: one of each plus a 16-bit operand and result register.
"""
from __future__ import annotations

import math

from .registry import register

POOLING = ("maxpool", "avgpool", "adaptive_avgpool")

DEFAULT_OP_CYCLES = {
    "add": 1, "mul": 1, "scale": 1, "relu": 1, "relu6": 1, "hardswish": 2, "concat": 0,
    "maxpool": 1, "avgpool": 1, "adaptive_avgpool": 1, "embedding": 0,
    "gelu": 4, "silu": 4, "sigmoid": 4, "tanh": 4, "rotary": 3,
    "batchnorm": 1,  # inference BN is one multiply-add per element (folded scale and shift)
    "layernorm": 3, "rmsnorm": 2, "groupnorm": 3, "softmax": 6,
    # quantizing to a narrower format with a scale per group (a KV cache
    # append): an absolute-max pass and a scale-and-round pass
    "quantize": 2,
}


@register("vector_unit", "vector")
class VectorUnit:
    def __init__(self, spec):
        self.spec = spec
        self.lanes = spec.lanes

    def lane_ops(self, op: str, elems: int, window: int) -> int:
        """Lane-cycles of work for `elems` output elements of operator class `op`."""
        cost = self.spec.op_cycles.get(op, DEFAULT_OP_CYCLES.get(op, 1))
        reads = window if op in POOLING else 1
        return math.ceil(elems * reads * cost)

    def cycles(self, op: str, elems: int, window: int) -> int:
        return math.ceil(self.lane_ops(op, elems, window) / self.lanes)

    @staticmethod
    def action_costs(em, spec) -> dict[str, tuple[float, str]]:
        t = em.table
        pj = t.value("fp16_mult", "pJ/op") + t.value("fp16_add", "pJ/op")
        return {"vector_unit.lane_op": (pj, f"fp16_mult + fp16_add ({em.src('fp16_mult')}; {em.src('fp16_add')})")}

    @staticmethod
    def area_um2(em, spec) -> dict[str, tuple[float, str]]:
        t = em.table
        lane = t.area("fp16_mult") + t.area("fp16_add") + 32 * t.area("register_1b")
        return {"vector_unit": (spec.lanes * lane, "logic")}
