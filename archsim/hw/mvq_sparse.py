"""`kind: mvq_sparse`: MVQ's sparsity-aware array (Li et al., ASPLOS 2025,
arXiv 2412.10261): the EWS array (archsim/hw/ews.py) keeping only N of
every M PE rows along the reduction, with an M:1 activation-select mux in
front of each PE (archsim/hw/nm_systolic.py). Its weights come from the MVQ
weight loader (decoder kind `mvq_loader`).

Area beyond an EWS PE's (derived estimates, from the structure): each kept
weight is stored with the position the loader's mask decoder found for it
(ceil(log2 M) select bits per weight-RF entry), and each PE row carries the
M activations of its group, of which the mux picks one, so a PE holds M
activation-RF lanes instead of one.
"""
from __future__ import annotations

import math
from typing import Literal

from .ews import EWSArray, EWSSpec
from .nm_systolic import NMPattern, NMSparseMixin
from .pe_kind import register_pe_kind


class MVQSparseSpec(NMPattern, EWSSpec):
    kind: Literal["mvq_sparse"] = "mvq_sparse"


@register_pe_kind("mvq_sparse")
class MVQSparseArray(NMSparseMixin, EWSArray):
    Spec = MVQSparseSpec

    def weight_entry_bits(self) -> int:
        return self.spec.weight_bits + math.ceil(math.log2(self.spec.m))

    def act_rf_bits(self) -> int:
        return self.spec.m * super().act_rf_bits()

    def area_sources(self, em) -> dict[str, str]:
        s, src = self.spec, super().area_sources(em)
        sel = math.ceil(math.log2(s.m))
        src["pe_array.rf_weight"] = (f"derived estimate: register_1b x {s.weight_rf_entries} entries x "
                                     f"({s.weight_bits} b weight + {sel} b mux select) per PE "
                                     f"({em.src('register_1b')})")
        src["pe_array.rf_act"] = (f"derived estimate: register_1b x {s.m} lanes (the group's M activations) x "
                                  f"{s.act_rf_entries} x {s.act_bits} b per PE ({em.src('register_1b')})")
        src["mux"] = f"derived estimate: a {s.m}:1 mux of {s.act_bits} b per PE, {em.src('mux2_1b')}"
        return src
