"""Compile a torch model into the Workload the tiler consumes: its LayerSpecs
as a list, and the DAG of all its operators and activation tensors.

    layers = trace(model, example_input, formats=result.formats)

torch.fx `symbolic_trace` gives the graph; `ShapeProp` records every node's
output shape. Shapes are propagated on the meta device (tensors with shapes
but no data), so tracing costs no arithmetic: ResNet-50 takes a fraction of a
second instead of a full CPU forward pass. The model is not modified; its
weights are only read.

What becomes a LayerSpec, in forward order:
  * nn.Conv2d      -> 'conv'; 'dwconv' when groups == in_ch == out_ch (> 1)
  * nn.Linear      -> 'linear'; M = product of the input's leading dims
  * torch.matmul / operator.matmul (@) / torch.bmm / torch.mm, and the
    Tensor methods of the same names, with two activation operands -> 'matmul'
  * a leaf module with `layer_spec` (e.g. workloads.compression.pq) describes itself
Anything else that does MACs (Conv1d/3d, ConvTranspose, RNNs,
nn.MultiheadAttention, F.conv2d / F.linear / einsum called functionally, a
matmul against a parameter) raises ArchsimError naming the module or node:
nothing is dropped silently.

The result is a Workload: the list of LayerSpecs, plus the DAG of every
operator and the activation tensors between them (layer_spec.Workload).
  * A tensor is named by the fx node that writes it; batch is in its elems.
    Weights, parameters, buffers and whatever is computed from them alone
    (a class token's expand, a mask from torch.ones) are not tensors: they
    belong to the op that reads them.
  * Views alias their input (no tensor, no op): view/reshape/flatten/
    unflatten/permute/transpose/squeeze/unsqueeze/expand/contiguous, slicing
    and indexing (x[:, 0], qkv[0]), chunk/split/unbind and the getitem of
    their pieces, dropout, identity, dtype casts (to/float/half/type_as:
    activation width is the architecture's) and clone/detach. A slice names
    its whole source tensor; the op reading it reads part of it (its
    in_elems, or the layer's M/K, say how much).
  * cat/stack of one piece aliases it; joining two or more pieces is a
    'concat' VectorOp that copies its activation pieces into a new tensor
    (constant pieces, like a class token, are read as weights are).
  * Arithmetic that is not a GEMM becomes a VectorOp (VECTOR_OPS): +/- ->
    'add'; * -> 'mul', or 'scale' when the other factor is a python number
    (also / by a number, and negation); ReLU/ReLU6/GELU/SiLU/Sigmoid/Tanh/
    Hardswish; max/avg/adaptive-avg pooling; batch (inference: a per-channel
    affine, window 1), layer, RMS and group norm; softmax; embedding. Module,
    functional and Tensor-method forms alike. An in-place op (add_, relu_,
    ReLU(inplace=True)) writes a new tensor that later readers of its operand read.
  * Anything else that computes from activations raises ArchsimError naming
    the node (or the leaf module): nothing is free by omission.

Names are module qualified names ('layer1.0.conv1'); a module called more
than once gets ':1', ':2', ... on its later calls. Functions and methods are
named by their fx node ('matmul', 'add_1', ...).
"""
from __future__ import annotations

import contextlib
import io
import itertools
import math
import operator
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata
from torch.utils._pytree import tree_map

from archsim.ir.errors import ArchsimError

from archsim.ir.formats import DenseFormat, WeightFormat
from archsim.ir.layer_spec import ConvGeom, LayerSpec, TensorInfo, VectorOp, Workload

_MATMUL_FUNCS = {torch.matmul, operator.matmul, torch.bmm, torch.mm}
_MATMUL_METHODS = {"matmul", "bmm", "mm", "__matmul__"}

# Functional calls that do MACs but carry no module (so no qualified name to
# key a WeightFormat by) or that fold extra terms into the GEMM.
_UNMAPPED_FUNCS = {
    F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d,
    F.linear, F.bilinear, F.scaled_dot_product_attention,
    torch.addmm, torch.addbmm, torch.baddbmm, torch.addmv, torch.mv, torch.dot, torch.inner,
    torch.tensordot, torch.einsum, torch.chain_matmul, torch.linalg.multi_dot,
}
_UNMAPPED_METHODS = {"addmm", "addbmm", "baddbmm", "addmv", "mv", "dot", "inner"}

def _meta(v: Any) -> Any:
    return v.to("meta") if isinstance(v, torch.Tensor) and not v.is_meta else v


class _MetaShapeProp(ShapeProp):
    """ShapeProp that runs every node on meta tensors. Parameters, buffers and
    tensors created inside forward (torch.ones, torch.arange...) are moved to
    the meta device as they are used, so the real weights are never touched
    (BatchNorm in train mode updates only meta copies of its statistics)."""

    def run_node(self, n: fx.Node) -> Any:
        self.current = n  # for the error message if this node fails
        return super().run_node(n)

    def get_attr(self, target, args, kwargs):
        return _meta(super().get_attr(target, args, kwargs))

    def call_module(self, target, args, kwargs):
        mod = self.fetch_attr(target)
        if hasattr(mod, "layer_spec"):  # a self-describing leaf gives its output shape
            return torch.empty(mod.out_shape(tuple(args[0].shape)), device="meta")
        state = {k: _meta(v) for k, v in itertools.chain(mod.named_parameters(), mod.named_buffers())}
        return torch.func.functional_call(mod, state, tree_map(_meta, args), tree_map(_meta, kwargs))

    def call_function(self, target, args, kwargs):
        return super().call_function(target, tree_map(_meta, args), tree_map(_meta, kwargs))

    def call_method(self, target, args, kwargs):
        return super().call_method(target, tree_map(_meta, args), tree_map(_meta, kwargs))


def _shape(node: fx.Node) -> tuple[int, ...]:
    return tuple(node.meta["tensor_meta"].shape)


def _same_hw(value, what: str, name: str) -> int:
    """Collapse an (h, w) pair to one int; ConvGeom holds a single value."""
    h, w = (value, value) if isinstance(value, int) else value
    if h != w:
        raise ArchsimError(f"Conv2d {what} {tuple(value)} differs between height and width; "
                           "only equal values are supported", field=name)
    return h


def _conv_pad(m: nn.Conv2d, name: str) -> int:
    if m.padding == "valid":
        return 0
    if m.padding == "same":
        # PyTorch pads k-1 in total, the odd pixel on the bottom/right.
        if any(k % 2 == 0 for k in m.kernel_size):
            raise ArchsimError(f"Conv2d padding='same' with even kernel {m.kernel_size} is "
                               "asymmetric; only symmetric padding is supported", field=name)
        return _same_hw(tuple((k - 1) // 2 for k in m.kernel_size), "padding", name)
    return _same_hw(m.padding, "padding", name)


def _weight(m: nn.Module):
    w = getattr(m, "weight", None)  # a PQ layer has none (its weights are folded into its LUT)
    return w.detach() if isinstance(w, torch.Tensor) else None


def _conv_spec(name, m: nn.Conv2d, in_shape, out_shape, fmt) -> LayerSpec:
    if len(in_shape) == 3:  # unbatched (C, H, W) input
        in_shape, out_shape = (1, *in_shape), (1, *out_shape)
    b, c, h, w = in_shape
    _, o, p, q = out_shape
    if m.dilation != (1, 1):
        raise ArchsimError(f"dilated Conv2d (dilation {m.dilation}) is unsupported", field=name)
    stride = _same_hw(m.stride, "stride", name)
    pad = _conv_pad(m, name)
    kh, kw = m.kernel_size
    g = m.groups
    return LayerSpec(
        name=name,
        op="dwconv" if g > 1 and g == c == o else "conv",
        M=b * p * q,
        N=o // g,
        K=(c // g) * kh * kw,
        groups=g,
        conv=ConvGeom(in_ch=c, out_ch=o, kh=kh, kw=kw, stride=stride, pad=pad,
                      in_h=h, in_w=w, out_h=p, out_w=q, groups=g),
        weight=_weight(m),
        fmt=fmt,
        in_elems=b * c * h * w,
    )


def _linear_spec(name, m: nn.Linear, in_shape, fmt) -> LayerSpec:
    return LayerSpec(name=name, op="linear", M=math.prod(in_shape[:-1]), N=m.out_features,
                     K=m.in_features, weight=_weight(m), fmt=fmt)


def _matmul_spec(node: fx.Node, live: set[fx.Node]) -> LayerSpec:
    a, b = node.args[0], node.args[1]
    for operand in (a, b):
        if not (isinstance(operand, fx.Node) and operand in live):
            raise ArchsimError(
                f"matmul with a weight or constant operand ({operand}) is unsupported; "
                "hold the weight in an nn.Linear", field=node.name)
    sa, sb = _shape(a), _shape(b)
    # torch.matmul promotes 1-D operands to a row (left) or a column (right).
    if len(sa) == 1:
        sa = (1, *sa)
    if len(sb) == 1:
        sb = (*sb, 1)
    batch = torch.broadcast_shapes(sa[:-2], sb[:-2])
    return LayerSpec(name=node.name, op="matmul", M=sa[-2], N=sb[-1], K=sa[-1],
                     groups=math.prod(batch), weight=None,
                     # the "weight" side of a matmul is an activation, as wide as the
                     # architecture's activations (pe_array.act_bits)
                     fmt=DenseFormat(bits=8))


class _Tracer(fx.Tracer):
    """fx's tracer, plus: a module that describes itself as a layer
    (`layer_spec`, e.g. a PQ layer of workloads.compression.pq, whose forward
    pass has data-dependent control flow) is a leaf, not traced into."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return hasattr(m, "layer_spec") or super().is_leaf_module(m, qualname)


def _symbolic_trace(model: nn.Module) -> fx.GraphModule:
    try:
        tracer = _Tracer()
        graph = tracer.trace(model)
        return fx.GraphModule(tracer.root, graph, model.__class__.__name__)
    except Exception as e:  # fx raises TraceError, TypeError, RuntimeError... for untraceable code
        raise ArchsimError(f"torch.fx cannot trace the model: {e}", field=type(model).__name__) from e


def _propagate_shapes(gm: fx.GraphModule, inputs: tuple) -> None:
    """Record node.meta['tensor_meta']. Ops whose output shape depends on
    data (nonzero, boolean masks) cannot run on meta tensors and are refused."""
    prop = _MetaShapeProp(gm)
    try:
        # ShapeProp prints a traceback before re-raising; the ArchsimError
        # below carries the cause in one line instead.
        with contextlib.redirect_stderr(io.StringIO()):
            prop.propagate(*(_meta(x) for x in inputs))
    except RuntimeError as e:
        cause = str(e.__cause__ or e).strip().splitlines()[0]
        n = prop.current
        where = n.target if n.op == "call_module" else n.name  # module qualified name if a module
        raise ArchsimError(f"cannot infer output shapes here: {cause}", field=where) from e


# ---------------------------------------------------------------- the DAG

# Ops that only re-index or re-label their first operand: they alias it.
_VIEW_MODULES = (nn.Flatten, nn.Unflatten, nn.Identity, nn.modules.dropout._DropoutNd)
_VIEW_FUNCS = {
    torch.flatten, torch.reshape, torch.permute, torch.transpose, torch.swapaxes, torch.movedim,
    torch.squeeze, torch.unsqueeze, torch.t, torch.narrow, torch.select, torch.unflatten,
    torch.chunk, torch.split, torch.unbind, operator.getitem, F.dropout, torch.clone, torch.detach,
}
_VIEW_METHODS = {
    "view", "view_as", "reshape", "reshape_as", "flatten", "unflatten", "permute", "transpose",
    "swapaxes", "movedim", "t", "contiguous", "squeeze", "unsqueeze", "expand", "expand_as",
    "narrow", "select", "chunk", "split", "unbind", "to", "float", "half", "bfloat16", "type_as",
    "clone", "detach",
}
_CONCAT_FUNCS = {torch.cat, torch.concat, torch.concatenate, torch.stack}
# Tensors made from an activation's shape alone (a mask from ones_like): constants.
_SHAPE_ONLY_FUNCS = {torch.zeros_like, torch.ones_like, torch.empty_like, torch.full_like}
_SHAPE_ONLY_METHODS = {"new_zeros", "new_ones", "new_empty", "new_full"}

# Leaf module class (looked up along the MRO) -> operator class.
_MODULE_OPS = {
    nn.ReLU: "relu", nn.ReLU6: "relu6", nn.GELU: "gelu", nn.SiLU: "silu", nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh", nn.Hardswish: "hardswish", nn.MaxPool2d: "maxpool", nn.AvgPool2d: "avgpool",
    nn.AdaptiveAvgPool2d: "adaptive_avgpool", nn.modules.batchnorm._BatchNorm: "batchnorm",
    nn.LayerNorm: "layernorm", nn.RMSNorm: "rmsnorm", nn.GroupNorm: "groupnorm",
    nn.Softmax: "softmax", nn.Embedding: "embedding",
}
# 'div' is not a class: it becomes 'scale' or 'mul' (see _arith_class).
_FUNC_OPS = {
    operator.add: "add", operator.iadd: "add", torch.add: "add",
    operator.sub: "add", operator.isub: "add", torch.sub: "add",
    operator.mul: "mul", operator.imul: "mul", torch.mul: "mul",
    operator.truediv: "div", operator.itruediv: "div", torch.div: "div",
    operator.neg: "scale", torch.neg: "scale",
    F.relu: "relu", torch.relu: "relu", F.relu6: "relu6", F.gelu: "gelu", F.silu: "silu",
    torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", torch.tanh: "tanh", F.tanh: "tanh",
    F.hardswish: "hardswish",
    F.max_pool2d: "maxpool", F.avg_pool2d: "avgpool", F.adaptive_avg_pool2d: "adaptive_avgpool",
    F.batch_norm: "batchnorm", F.layer_norm: "layernorm", F.rms_norm: "rmsnorm",
    F.group_norm: "groupnorm", F.softmax: "softmax", torch.softmax: "softmax",
    F.embedding: "embedding",
}
_METHOD_OPS = {"add": "add", "sub": "add", "mul": "mul", "div": "div", "neg": "scale",
               "relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "softmax": "softmax"}
_INPLACE_FUNCS = {operator.iadd, operator.isub, operator.imul, operator.itruediv}
# one output element per input element: may fuse into a GEMM's write-back
_ELEMENTWISE = {"add", "mul", "scale", "relu", "relu6", "gelu", "silu", "sigmoid", "tanh",
                "hardswish", "batchnorm"}


def _elems(node: fx.Node) -> int:
    tm = node.meta["tensor_meta"]
    if isinstance(tm, TensorMetadata):
        return math.prod(tm.shape)
    return sum(math.prod(t.shape) for t in tm if isinstance(t, TensorMetadata))  # a tuple of tensors


def _operands(node: fx.Node) -> list[fx.Node]:
    """Node operands in argument order, repeats kept (x * x reads x twice)."""
    found: list[fx.Node] = []
    fx.node.map_arg((node.args, node.kwargs), found.append)
    return found


def _arg(node: fx.Node, i: int, key: str):
    return node.args[i] if len(node.args) > i else node.kwargs.get(key)


def _module_op(m: nn.Module) -> Optional[str]:
    for cls in type(m).__mro__:
        if cls in _MODULE_OPS:
            return _MODULE_OPS[cls]
    return None


def _window(op: str, node: fx.Node, m: Optional[nn.Module]) -> int:
    """Reads per output element beyond elementwise (VectorOp.window). `m` is
    the module for a module call; else the arguments are the functional form's
    (a Tensor method's self is args[0] too, so the indices agree)."""
    if op in ("maxpool", "avgpool"):
        k = m.kernel_size if m is not None else _arg(node, 1, "kernel_size")
        return math.prod((k, k) if isinstance(k, int) else k)
    if op == "adaptive_avgpool":  # the largest window adaptive pooling takes
        return math.prod(-(-i // o) for i, o in zip(_shape(node.args[0])[-2:], _shape(node)[-2:]))
    if op in ("layernorm", "rmsnorm"):
        shape = m.normalized_shape if m is not None else _arg(node, 1, "normalized_shape")
        return math.prod((shape,) if isinstance(shape, int) else shape)
    if op == "groupnorm":
        groups = m.num_groups if m is not None else _arg(node, 1, "num_groups")
        return math.prod(_shape(node.args[0])[1:]) // groups
    if op == "softmax":
        dim = m.dim if m is not None else _arg(node, 1, "dim")
        if dim is None:
            raise ArchsimError("softmax without an explicit dim is unsupported", field=node.name)
        return _shape(node)[dim]
    return 1


def _arith_class(op: str, node: fx.Node, reads: list[fx.Node]) -> str:
    """mul/div by a python number is 'scale'; by a tensor, 'mul' (a constant
    divisor is a reciprocal computed once). Division by an activation is not modelled."""
    if op == "div" and isinstance(d := _arg(node, 1, "other"), fx.Node) and d in reads:
        raise ArchsimError("unsupported op: division by an activation tensor is not modelled",
                           field=node.name)
    tensors = [a for a in _operands(node) if "tensor_meta" in a.meta]
    return "scale" if len(tensors) == 1 else "mul"


class _Dag:
    """Ops and tensors as trace() meets them, in program order."""

    def __init__(self):
        self.ops: list = []
        self.tensors: dict[str, TensorInfo] = {}
        self.readers: dict[str, list[str]] = {}
        self.alias: dict[fx.Node, str] = {}   # live node -> name of the tensor it is (a view of)
        self.latest: dict[str, str] = {}      # tensor -> the tensor an in-place op wrote over it

    def name(self, node: fx.Node) -> str:
        t = self.alias[node]
        while t in self.latest:
            t = self.latest[t]
        return t

    def write(self, node: fx.Node, producer: Optional[str]) -> str:
        self.alias[node] = node.name
        self.tensors[node.name] = TensorInfo(node.name, _elems(node), producer)
        self.readers[node.name] = []
        return node.name

    def add(self, op, node: fx.Node, inplace: bool = False) -> None:
        """Record `op` (its inputs already named) writing `node`'s tensor."""
        for t in dict.fromkeys(op.inputs):
            self.readers[t].append(op.name)
        op.output = self.write(node, op.name)
        if inplace and op.inputs:
            self.latest[op.inputs[0]] = op.output  # later readers of the operand read this
        self.ops.append(op)

    def layer(self, spec: LayerSpec, reads: list[fx.Node], node: fx.Node) -> None:
        spec.inputs = tuple(self.name(r) for r in reads)
        self.add(spec, node)

    def vector(self, name: str, op: str, node: fx.Node, reads: list[fx.Node], m=None,
               inplace: bool = False) -> None:
        v = VectorOp(name=name, op=op, elems=_elems(node), inputs=tuple(self.name(r) for r in reads),
                     in_elems=tuple(_elems(r) for r in reads), output="", window=_window(op, node, m))
        self.add(v, node, inplace)

    def workload(self, inputs: tuple, outputs: tuple) -> Workload:
        names = [o.name for o in self.ops]
        if len(set(names)) != len(names):
            dup = next(n for i, n in enumerate(names) if n in names[:i])
            raise ArchsimError("two operators have the same name", field=dup)
        return finish_workload(self.ops, self.tensors, self.readers, inputs, outputs)


def finish_workload(ops: list, tensors: dict, readers: dict, inputs: tuple, outputs: tuple) -> Workload:
    """The Workload of a DAG an importer built (trace, workloads.onnx_import):
    each tensor's consumers from `readers` (tensor -> op names, in program
    order), and `after_gemm` on each elementwise op whose one input is a GEMM
    layer's (or another such op's) output that nothing else reads."""
    for name, info in tensors.items():
        info.consumers = tuple(readers[name])
    by_name = {o.name: o for o in ops}
    for v in ops:
        if isinstance(v, VectorOp) and v.op in _ELEMENTWISE and len(v.inputs) == 1:
            t = tensors[v.inputs[0]]
            p = by_name.get(t.producer)
            v.after_gemm = (t.consumers == (v.name,) and t.elems == v.elems
                            and (isinstance(p, LayerSpec) or getattr(p, "after_gemm", False)))
    return Workload(ops, tensors, inputs, outputs)


def trace(model: nn.Module, example_input, formats: Optional[Mapping[str, WeightFormat]] = None
          ) -> Workload:
    """The Workload of `model` for `example_input` (a tensor, or a tuple of
    tensors for a multi-input forward; its batch size sets M): its LayerSpecs
    as a list, and the DAG of all its operators and activation tensors.

    `formats` maps module qualified names to their WeightFormat (as from
    `compress(...).formats`); Conv2d/Linear layers not in it get
    DenseFormat(bits=8). A key that names no traced Conv2d/Linear raises.
    """
    formats = dict(formats or {})
    for key, fmt in formats.items():
        if not isinstance(fmt, WeightFormat):
            raise ArchsimError(f"format must be a WeightFormat, got {type(fmt).__name__}", field=key)
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)

    gm = _symbolic_trace(model)
    _propagate_shapes(gm, inputs)

    dag = _Dag()
    calls: dict[str, int] = {}   # GEMM module name -> times called so far
    vcalls: dict[str, int] = {}  # vector-op module name -> times called so far
    live: set[fx.Node] = set()   # tensor-valued nodes computed from the model's inputs
    net_inputs: list[str] = []
    net_outputs: tuple = ()

    def call_name(counter: dict, name: str) -> str:
        k = counter.get(name, 0)
        counter[name] = k + 1
        return name if k == 0 else f"{name}:{k}"

    for node in gm.graph.nodes:
        if node.op == "output":
            net_outputs = tuple(dict.fromkeys(dag.name(a) for a in _operands(node) if a in live))
            continue
        is_tensor = "tensor_meta" in node.meta  # not a size, an int, None...
        if node.op == "placeholder":
            if is_tensor:
                live.add(node)
                net_inputs.append(dag.write(node, None))
            continue
        reads = [a for a in _operands(node) if a in live]
        shape_only = ((node.op == "call_function" and node.target in _SHAPE_ONLY_FUNCS)
                      or (node.op == "call_method" and node.target in _SHAPE_ONLY_METHODS))
        if is_tensor and reads and not shape_only:
            live.add(node)

        if node.op == "call_module":
            m = gm.get_submodule(node.target)
            name = node.target
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fmt = formats.get(name, DenseFormat(bits=8))
                layer_name = call_name(calls, name)
                in_shape = _shape(node.args[0])
                if isinstance(m, nn.Conv2d):
                    spec = _conv_spec(layer_name, m, in_shape, _shape(node), fmt)
                else:
                    spec = _linear_spec(layer_name, m, in_shape, fmt)
                spec.fmt = fmt.for_layer(spec)
                live.add(node)
                dag.layer(spec, reads, node)
            elif hasattr(m, "layer_spec"):
                layer_name = call_name(calls, name)
                spec = m.layer_spec(layer_name, _shape(node.args[0]), _shape(node), formats.get(name))
                spec.fmt = spec.fmt.for_layer(spec)
                live.add(node)
                dag.layer(spec, reads, node)
            elif isinstance(m, _VIEW_MODULES):
                if node in live:
                    dag.alias[node] = dag.name(node.args[0])
            elif (op := _module_op(m)) is None:
                raise ArchsimError(f"unsupported layer kind {type(m).__name__}: no mapping to "
                                   "conv/dwconv/linear/matmul or to a vector op", field=name)
            elif node in live:
                dag.vector(call_name(vcalls, name), op, node, reads, m,
                           inplace=getattr(m, "inplace", False))
            continue

        if node.op not in ("call_function", "call_method"):
            continue  # get_attr: a parameter or buffer
        target = node.target
        is_fn = node.op == "call_function"
        if (target in _MATMUL_FUNCS) if is_fn else (target in _MATMUL_METHODS):
            spec = _matmul_spec(node, live)
            dag.layer(spec, [node.args[0], node.args[1]], node)
            continue
        if (target in _UNMAPPED_FUNCS) if is_fn else (target in _UNMAPPED_METHODS):
            what = getattr(target, "__name__", str(target))
            raise ArchsimError(f"unsupported op {what} called functionally; use nn.Conv2d / "
                               "nn.Linear modules or torch.matmul", field=node.name)
        if node not in live:
            continue  # computed from constants only: part of some op's weights
        if (target in _VIEW_FUNCS) if is_fn else (target in _VIEW_METHODS):
            src = node.args[0]
            if target is operator.getitem and any(r is not src for r in reads):
                raise ArchsimError("unsupported op: indexing by an activation tensor (a gather) "
                                   "is not modelled; use nn.Embedding", field=node.name)
            if src in live:  # other live operands (view_as(y), type_as(y)) lend a shape only
                dag.alias[node] = dag.name(src)
            else:  # const.expand_as(x): still a constant
                live.discard(node)
            continue
        if is_fn and target in _CONCAT_FUNCS:
            pieces = node.args[0] if isinstance(node.args[0], (list, tuple)) else [node.args[0]]
            if len(pieces) == 1 and pieces[0] in live and isinstance(
                    pieces[0].meta["tensor_meta"], TensorMetadata):
                dag.alias[node] = dag.name(pieces[0])
            else:
                dag.vector(node.name, "concat", node, reads)
            continue
        if is_fn:
            op, inplace = _FUNC_OPS.get(target), target in _INPLACE_FUNCS
        else:
            base = target[:-1] if target.endswith("_") and not target.endswith("__") else target
            op, inplace = _METHOD_OPS.get(base), base != target
        if op is None:
            what = getattr(target, "__name__", str(target))
            raise ArchsimError(f"unsupported op {what}: it computes on activations and is "
                               "neither a GEMM, a view nor a modelled vector op", field=node.name)
        if op in ("mul", "div"):
            op = _arith_class(op, node, reads)
        dag.vector(node.name, op, node, reads, inplace=inplace or node.kwargs.get("inplace") is True)

    unknown = sorted(set(formats) - set(calls))
    if unknown:
        raise ArchsimError("format given for a name that is not a traced Conv2d/Linear module",
                           field=unknown[0])
    return dag.workload(tuple(net_inputs), net_outputs)
