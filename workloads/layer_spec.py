"""LayerSpec: one layer as the compiler hands it to the tiler.

GEMM view (names follow the GEMM, not the conv):
  M = output rows    (output pixels x batch for a conv; tokens for a linear)
  N = output columns (output channels / filters per group)
  K = reduction      (C_in/groups x kh x kw for a conv; in_features for a linear)
  groups = independent GEMMs of that shape (depthwise conv: C groups; batched
           attention matmul: heads x batch).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .formats import DenseFormat, WeightFormat

OP_KINDS = ("conv", "dwconv", "linear", "matmul")


@dataclass(frozen=True)
class ConvGeom:
    in_ch: int
    out_ch: int
    kh: int
    kw: int
    stride: int
    pad: int
    in_h: int
    in_w: int
    out_h: int
    out_w: int
    groups: int = 1


@dataclass
class LayerSpec:
    name: str
    op: str
    M: int
    N: int
    K: int
    groups: int = 1
    conv: Optional[ConvGeom] = None
    weight: Optional[object] = field(default=None, repr=False)  # torch.Tensor or None
    fmt: WeightFormat = field(default_factory=DenseFormat)
    # activation width is the architecture's (pe_array.act_bits), its one owner
    # for conv layers: raw input activation elements (H*W*C); None = use im2col size
    in_elems: Optional[int] = None
    # statistics of the layer's real input activations from a calibration
    # pass (workloads.profile.ActProfile), for PE kinds whose timing depends
    # on the data (Stripes' precision, Pragmatic's essential bits); None = not profiled
    act_profile: Optional[object] = field(default=None, repr=False)

    def __post_init__(self):
        if self.op not in OP_KINDS:
            raise ValueError(f"op must be one of {OP_KINDS}, got {self.op!r}")
        for f in ("M", "N", "K", "groups"):
            if getattr(self, f) <= 0:
                raise ValueError(f"LayerSpec {self.name}: {f} must be positive")

    @property
    def n_weights(self) -> int:
        return self.groups * self.N * self.K

    @property
    def macs(self) -> int:
        return self.groups * self.M * self.N * self.K
