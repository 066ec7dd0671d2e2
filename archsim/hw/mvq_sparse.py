"""`kind: mvq_sparse`: MVQ's sparsity-aware array (Li et al., ASPLOS 2025,
arXiv 2412.10261): the EWS array (archsim/hw/ews.py) keeping only N of
every M PE rows along the reduction, with an M:1 activation-select mux in
front of each PE (archsim/hw/nm_systolic.py). Its weights come from the MVQ
weight loader (decoder kind `mvq_loader`)."""
from __future__ import annotations

from typing import Literal

from .ews import EWSArray, EWSSpec
from .nm_systolic import NMPattern, NMSparseMixin
from .pe_kind import register_pe_kind


class MVQSparseSpec(NMPattern, EWSSpec):
    kind: Literal["mvq_sparse"] = "mvq_sparse"


@register_pe_kind("mvq_sparse")
class MVQSparseArray(NMSparseMixin, EWSArray):
    Spec = MVQSparseSpec
