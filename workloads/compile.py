"""Compile a torch model into the list of LayerSpecs the tiler consumes.

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
Ops without MACs (activations, pooling, norms, add, reshape, softmax, ...)
are skipped. Anything else that does MACs (Conv1d/3d, ConvTranspose, RNNs,
nn.MultiheadAttention, F.conv2d / F.linear / einsum called functionally, a
matmul against a parameter) raises ArchsimError naming the module or node:
nothing is dropped silently.

Names are module qualified names ('layer1.0.conv1'); a module called more
than once gets ':1', ':2', ... on its later calls. Matmuls are named by their
fx node ('matmul', 'matmul_1', ...).
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
from torch.fx.passes.shape_prop import ShapeProp
from torch.utils._pytree import tree_map

from archsim.errors import ArchsimError

from .formats import DenseFormat, WeightFormat
from .layer_spec import ConvGeom, LayerSpec

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

# Leaf modules that hold parameters or buffers but do no MACs.
_NO_MAC_MODULES = (
    nn.modules.batchnorm._NormBase,  # BatchNorm*, InstanceNorm*, SyncBatchNorm
    nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.Embedding, nn.EmbeddingBag, nn.PReLU,
)


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


def _has_weights(m: nn.Module) -> bool:
    # Quantized modules keep packed weights outside parameters() but expose `weight`.
    return (next(m.parameters(), None) is not None or next(m.buffers(), None) is not None
            or getattr(m, "weight", None) is not None)


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


def trace(model: nn.Module, example_input, formats: Optional[Mapping[str, WeightFormat]] = None
          ) -> list[LayerSpec]:
    """LayerSpecs of `model` for `example_input` (a tensor, or a tuple of
    tensors for a multi-input forward; its batch size sets M).

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

    layers: list[LayerSpec] = []
    calls: dict[str, int] = {}  # module name -> times called so far
    live: set[fx.Node] = set()  # nodes computed from the model's inputs
    for node in gm.graph.nodes:
        if node.op == "placeholder" or any(a in live for a in node.all_input_nodes):
            live.add(node)

        if node.op == "call_module":
            m = gm.get_submodule(node.target)
            name = node.target
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                k = calls.get(name, 0)
                calls[name] = k + 1
                fmt = formats.get(name, DenseFormat(bits=8))
                layer_name = name if k == 0 else f"{name}:{k}"
                in_shape = _shape(node.args[0])
                if isinstance(m, nn.Conv2d):
                    layers.append(_conv_spec(layer_name, m, in_shape, _shape(node), fmt))
                else:
                    layers.append(_linear_spec(layer_name, m, in_shape, fmt))
                layers[-1].fmt = fmt.for_layer(layers[-1])
            elif hasattr(m, "layer_spec"):
                k = calls.get(name, 0)
                calls[name] = k + 1
                layer_name = name if k == 0 else f"{name}:{k}"
                spec = m.layer_spec(layer_name, _shape(node.args[0]), _shape(node), formats.get(name))
                spec.fmt = spec.fmt.for_layer(spec)
                layers.append(spec)
            elif _has_weights(m) and not isinstance(m, _NO_MAC_MODULES):
                raise ArchsimError(f"unsupported layer kind {type(m).__name__}: it has weights "
                                   "but no mapping to conv/dwconv/linear/matmul", field=name)

        elif node.op in ("call_function", "call_method"):
            target = node.target
            is_fn = node.op == "call_function"
            if (target in _MATMUL_FUNCS) if is_fn else (target in _MATMUL_METHODS):
                layers.append(_matmul_spec(node, live))
            elif (target in _UNMAPPED_FUNCS) if is_fn else (target in _UNMAPPED_METHODS):
                what = getattr(target, "__name__", str(target))
                raise ArchsimError(f"unsupported op {what} called functionally; use nn.Conv2d / "
                                   "nn.Linear modules or torch.matmul", field=node.name)

    unknown = sorted(set(formats) - set(calls))
    if unknown:
        raise ArchsimError("format given for a name that is not a traced Conv2d/Linear module",
                           field=unknown[0])
    return layers
