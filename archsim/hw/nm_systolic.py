"""`kind: nm_systolic`: an N:M structured-sparse weight-stationary systolic
array. Every M consecutive reduction inputs (input channels) feed N PE rows:
each PE picks, through an M:1 activation-select multiplexer, the activation
its kept weight belongs to. One row fold of `rows` PE rows therefore covers
rows*M/N reduction inputs, and a layer needs ceil(K*N/M / rows) row folds
instead of ceil(K / rows) (SCALE-Sim v3's sparse weight-stationary model
counts folds the same way; tests/test_scalesim_sparse.py compares).

The array is built for one pattern (`n`, `m`). A layer whose weights are N:M
with the same M and at most N kept runs sparse (a 1:4 layer on a 2:4 array
wastes half its PE rows); any other layer runs dense, one PE row per
reduction input, the muxes passing the activation straight through. With
`any_pattern: true` every N:M layer runs at its own N:M, as SCALE-Sim v3
models it; a SCALE-Sim .cfg with SparsitySupport imports as that.
Costs beyond the dense array: one mux select per MAC (energy), and an M:1
mux of act_bits per PE (area), priced from the table's mux rows.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from .pe_kind import ComponentSpec, Fold, register_pe_kind
from .systolic import SystolicArray, SystolicSpec


class NMSparseMixin:
    """Reduction mapping and mux costs shared by the N:M sparse kinds."""
    weight_formats = {
        **SystolicArray.weight_formats,
        "nm": "N:M sparse: each PE row's mux picks the activation of its kept weight, at the array's n:m "
              "(a layer pruned to fewer kept weights per group runs at the array's n)",
        "mvq": "the loader rebuilds the kept weights and their mask; N:M sparse as for nm",
    }

    def format_problem(self, fmt):
        if not hasattr(fmt, "density") or fmt.n >= fmt.m or getattr(self.spec, "any_pattern", False):
            return super().format_problem(fmt)
        if fmt.m != self.spec.m or fmt.n > self.spec.n:
            return (f"{fmt.name} weights pruned {fmt.n}:{fmt.m} on an array built for "
                    f"{self.spec.n}:{self.spec.m} (prune {self.spec.n}:{self.spec.m}, e.g. "
                    f"--weights {fmt.name}:n={self.spec.n},m={self.spec.m})"), "pe_array.n"
        return super().format_problem(fmt)

    def layer_nm(self, t) -> tuple[int, int] | None:
        """(n, m) the array runs this layer at, or None when it runs dense
        (a pattern it cannot run was refused before tiling: format_problem)."""
        fmt = t.fmt
        if t.layer.op == "matmul" or not hasattr(fmt, "density") or fmt.n >= fmt.m:
            return None
        if getattr(self.spec, "any_pattern", False):
            return fmt.n, fmt.m
        return self.spec.n, self.spec.m

    def reduction_span(self, t) -> int:
        nm = self.layer_nm(t)
        return self.rows if nm is None else self.rows * nm[1] // nm[0]

    def pe_rows(self, span_used: int, t) -> int:
        nm = self.layer_nm(t)
        if nm is None:
            return span_used
        n, m = nm  # a partial last group keeps at most n (SCALE-Sim's rule)
        return (span_used // m) * n + min(span_used % m, n)

    def loop_order(self, t) -> str:
        nm = self.layer_nm(t)
        base = super().loop_order(t)
        return f"{base}, {nm[0]}:{nm[1]} sparse" if nm else f"{base}, dense"

    def fold_actions(self, fold: Fold, fmt) -> dict[str, int]:
        a = super().fold_actions(fold, fmt)
        a["mux.select"] = a["pe_arith.mac"]  # every MAC's activation passes its PE's mux
        return a

    def action_costs(self, em):
        return {**super().action_costs(em), "mux.select": em.mux_pj(self.spec.m, self.spec.act_bits)}

    def area_um2(self, em):
        mux = self.rows * self.cols * em.mux_area_um2(self.spec.m, self.spec.act_bits)
        return {**super().area_um2(em), "mux": (mux, "logic")}


class NMPattern(ComponentSpec):
    """The N:M pattern an array is built for."""
    n: PositiveInt = 2
    m: PositiveInt = 4

    @model_validator(mode="after")
    def _n_le_m(self):
        if self.n > self.m:
            raise ValueError(f"N:M needs n <= m, got {self.n}:{self.m}")
        return self


class NMSystolicSpec(NMPattern, SystolicSpec):
    kind: Literal["nm_systolic"] = "nm_systolic"
    dataflow: Literal["ws"] = "ws"
    any_pattern: bool = Field(False, description="run each layer at its own N:M (SCALE-Sim v3's model), "
                              "not only the array's n:m")


@register_pe_kind("nm_systolic")
class NMSystolicArray(NMSparseMixin, SystolicArray):
    Spec = NMSystolicSpec
