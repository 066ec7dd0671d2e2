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
    # the workload DAG's edges (Workload): names of the activation tensors the
    # layer reads, in operand order (conv/linear: 1; matmul: A, B), and of the
    # tensor it writes. () / "" = unknown: the tiler chains layers in program
    # order, so hand-built LayerSpec lists keep working
    inputs: tuple = ()
    output: str = ""

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


# Operator classes of the non-GEMM operators that do arithmetic: one name per
# class, since a vector unit prices a class, not a torch function. 'rotary' is
# named for LLM workloads; workloads.compile makes none yet (its mul/add/concat
# pieces come out as those classes).
VECTOR_OPS = ("add", "mul", "scale", "relu", "relu6", "gelu", "silu", "sigmoid", "tanh", "hardswish",
              "maxpool", "avgpool", "adaptive_avgpool", "batchnorm", "layernorm", "rmsnorm", "groupnorm",
              "softmax", "rotary", "embedding", "concat", "quantize")


@dataclass
class VectorOp:
    """A non-GEMM operator of the workload DAG (see workloads.compile)."""
    name: str               # module qualified name (':1', ':2' on later calls), or the fx node name
    op: str                 # operator class, one of VECTOR_OPS
    elems: int              # output elements, batch included
    inputs: tuple           # names of the activation tensors read
    in_elems: tuple         # elements read from each input (same order); a slice reads part of its tensor
    output: str             # name of the tensor written
    # reads per output element beyond elementwise: the pooling window (kh*kw);
    # the normalised axis length for layernorm/rmsnorm/groupnorm/softmax
    window: int = 1
    # elementwise op whose one input is a GEMM layer's output (or an after_gemm
    # op's) read by nobody else: an architecture may fuse it into the write-back
    after_gemm: bool = False

    def __post_init__(self):
        if self.op not in VECTOR_OPS:
            raise ValueError(f"op must be one of {VECTOR_OPS}, got {self.op!r}")
        if len(self.inputs) != len(self.in_elems):
            raise ValueError(f"VectorOp {self.name}: inputs and in_elems differ in length")
        if self.elems <= 0 or self.window <= 0:
            raise ValueError(f"VectorOp {self.name}: elems and window must be positive")


@dataclass
class TensorInfo:
    """An activation tensor of the workload DAG. Weights are not tensors here:
    they belong to their LayerSpec."""
    name: str
    elems: int                  # batch included
    producer: Optional[str]     # op name; None for a network input
    consumers: tuple = ()       # op names that read it, in program order
    # storage width in bits per element (scales included) where it is not an
    # activation at the array's act_bits: a KV cache in its KV format
    bits: Optional[float] = None
    # lives across runs (an LLM's KV cache between decode steps): held from
    # the first op to the last; a kept one is already on chip when the run
    # starts and stays there after it, one not kept is read from and written
    # to DRAM. Never a network output to flush.
    persistent: bool = False
    # where a persistent tensor lives, decided by the caller across runs
    # (archsim.llm places every layer's cache at once): a level name or
    # "dram"; None = the allocator decides
    level: Optional[str] = None


class Workload(list):
    """The GEMM layers (LayerSpec) in program order, as a list (every stage
    before the DAG consumed a list of LayerSpecs and still does), plus the DAG:

      ops      every operator in program order: LayerSpec and VectorOp
      tensors  name -> TensorInfo
      inputs   network input tensor names
      outputs  network output tensor names

    w[:] and list(w) give a plain list of the layers (no DAG)."""

    def __init__(self, ops=(), tensors=None, inputs=(), outputs=()):
        self.ops = list(ops)
        super().__init__(o for o in self.ops if isinstance(o, LayerSpec))
        self.tensors = dict(tensors or {})
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)

    @property
    def vector_ops(self) -> list:
        return [o for o in self.ops if isinstance(o, VectorOp)]

    def subgraph(self, names) -> "Workload":
        """The operators named in `names` (program order kept) as a workload
        of its own: a tensor one of them reads but none writes is an input,
        one they write that an operator outside reads (or a network output)
        is an output."""
        import dataclasses

        keep = set(names)
        ops = [o for o in self.ops if o.name in keep]
        tensors, inputs, outputs = {}, [], []
        for o in ops:
            for t in tuple(o.inputs) + (o.output,):
                if t in tensors or t not in self.tensors:
                    continue
                info = self.tensors[t]
                inside = info.producer in keep
                tensors[t] = dataclasses.replace(info, producer=info.producer if inside else None,
                                                 consumers=tuple(c for c in info.consumers if c in keep))
                if not inside and not info.persistent:
                    inputs.append(t)
                elif inside and not info.persistent and (
                        t in self.outputs or any(c not in keep for c in info.consumers)):
                    outputs.append(t)
        return Workload(ops, tensors, inputs, outputs)

    def with_layers(self, layers: list) -> "Workload":
        """The same DAG with each layer replaced by the one at its position in
        `layers` (e.g. copies carrying other weight formats)."""
        if len(layers) != len(self):
            raise ValueError(f"{len(layers)} layers for a workload of {len(self)}")
        new = {id(old): L for old, L in zip(self, layers)}
        return Workload([new.get(id(o), o) for o in self.ops], self.tensors, self.inputs, self.outputs)
