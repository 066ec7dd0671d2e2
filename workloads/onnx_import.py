"""Import an ONNX file as the Workload that workloads.compile.trace builds
from a torch model: the same LayerSpecs (op, M, N, K, groups, ConvGeom,
weights) and the same DAG of VectorOps and activation tensors.

    layers = load_onnx("model.onnx", formats=None, batch=1)

The `onnx` package's shape inference gives every value's shape. A symbolic
leading dimension of a graph input (a dynamic batch) is fixed to `batch`;
any other symbolic dimension is refused, and so is a batch other than 1 for
a file whose batch is fixed.

What becomes a LayerSpec, in graph order:
  * Conv (2-D)  -> 'conv'; 'dwconv' when group == in_ch == out_ch (> 1)
  * Gemm, and MatMul whose second operand is a constant (an initializer)
    -> 'linear' with the weight as nn.Linear holds it, (N, K); the bias Add
    that torch.onnx emits after such a MatMul belongs to the layer (as
    nn.Linear's bias does), so it is no VectorOp
  * MatMul of two activations -> 'matmul', batch dimensions as groups
Non-GEMM operators become the VectorOps compile.py gives (VECTOR_OPS):
  Add/Sub -> 'add'; Mul/Div by a scalar constant (or Neg) -> 'scale', by a
  tensor -> 'mul'; Relu, Clip(0, 6) -> 'relu6', Gelu (and the Div, Erf, Add,
  Mul, Mul that torch.onnx writes for it before opset 20), Sigmoid, Tanh,
  HardSwish; MaxPool, AveragePool, GlobalAveragePool -> 'adaptive_avgpool';
  BatchNormalization, LayerNormalization, Softmax; Concat of two or more
  pieces; Gather from a constant table by activation indices -> 'embedding'.
Views alias their input (no tensor, no op), as compile.py's do: Reshape,
Flatten, Transpose, Squeeze, Unsqueeze, Identity, Dropout, Cast, Expand,
Slice, Split, and Gather by constant indices (x[:, 0]). Shape and Size make
no activation; whatever is computed from constants alone (shape plumbing,
Constant, ConstantOfShape...) belongs to the op that reads it. Any other
operator on activations raises ArchsimError naming the node.

Names. torch.onnx names a node by its module scope and op, e.g.
'/layer1/layer1.0/conv1/Conv'; each scope level is the module's name within
its parent, except that a Sequential child repeats its parent's name
('layer1.0'). The module qualified name is rebuilt from them ('layer1.0.conv1'),
so GEMM layers have trace()'s names and `formats` takes the same keys (a
second GEMM node in one scope gets ':1'). VectorOps and activation matmuls
are named '<module>/<op>' (e.g. 'layer1.0/Add', 'layer1.0.relu/Relu'), since
the scope cannot tell a leaf module's op from a functional call. A node name
without a scope is used as it is; a node without a name is '<OpType>_<index>'.
Tensors are named by their ONNX value names.

GELU's tanh form before opset 20 has no pattern here: it comes out as its
pieces (mul, scale, add, tanh), where trace() gives one 'gelu'.

What the file cannot say: torch.onnx in eval mode folds BatchNormalization
into the preceding Conv (its weights are the folded ones, no 'batchnorm'
op); export with training=torch.onnx.TrainingMode.TRAINING to keep it.
"""
from __future__ import annotations

import math
from typing import Mapping, Optional

import numpy as np
import torch

from archsim.ir.errors import ArchsimError
from archsim.ir.formats import DenseFormat, WeightFormat
from archsim.ir.layer_spec import ConvGeom, LayerSpec, TensorInfo, VectorOp, Workload

from .compile import finish_workload

_VIEWS = {"Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Dropout",
          "Cast", "Expand", "Slice", "Split"}
_SHAPE_ONLY = {"Shape", "Size"}  # read an activation's shape, not its data
_SIMPLE = {"Add": "add", "Sub": "add", "Neg": "scale", "Relu": "relu", "Gelu": "gelu",
           "Sigmoid": "sigmoid", "Tanh": "tanh", "HardSwish": "hardswish",
           "MaxPool": "maxpool", "AveragePool": "avgpool",
           "GlobalAveragePool": "adaptive_avgpool", "BatchNormalization": "batchnorm",
           "LayerNormalization": "layernorm", "Softmax": "softmax"}


def module_path(node_name: str) -> str:
    """The module qualified name of a torch.onnx node name:
    '/layer1/layer1.0/conv1/Conv' -> 'layer1.0.conv1'; '' without a scope."""
    if not node_name.startswith("/"):
        return ""
    parts: list[str] = []
    for comp in node_name.split("/")[1:-1]:
        if parts and comp.startswith(parts[-1] + "."):
            parts[-1] = comp  # a Sequential child: 'layer1' then 'layer1.0'
        else:
            parts.append(comp)
    return ".".join(parts)


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _load(path, batch: int):
    """The model with every value's shape inferred, and name -> shape."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as e:  # a missing file, or protobuf's DecodeError for a bad one
        raise ArchsimError(f"cannot read ONNX file ({type(e).__name__}: {e})", file=str(path)) from None
    inits = {i.name for i in model.graph.initializer}
    del model.graph.value_info[:]  # inferred below; a symbolic batch written here would stay
    for out in model.graph.output:
        out.type.tensor_type.ClearField("shape")
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        for i, d in enumerate(inp.type.tensor_type.shape.dim):
            if not d.HasField("dim_value"):
                if i != 0:
                    raise ArchsimError(f"input {inp.name!r} has a symbolic dimension {i} "
                                       f"({d.dim_param or '?'}); export it with a fixed shape",
                                       file=str(path))
                d.dim_value = batch  # a dynamic batch
            elif i == 0 and batch != 1 and d.dim_value != batch:
                raise ArchsimError(f"input {inp.name!r} has a fixed batch of {d.dim_value}, so batch "
                                   f"{batch} cannot be set; export it with a dynamic batch dimension "
                                   "(torch.onnx.export's dynamic_axes)", file=str(path), field="batch")
    model = _infer(model, path)
    while (folded := _fold_constants(model, _static_shapes(model))) is not None:
        model = _infer(folded, path)
    return model, _static_shapes(model)


def _infer(model, path):
    import onnx

    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as e:
        raise ArchsimError(f"ONNX shape inference failed: {str(e).splitlines()[0]}", file=str(path)) from None


def _static_shapes(model) -> dict:
    shapes = {}
    for v in (*model.graph.input, *model.graph.value_info, *model.graph.output):
        dims = v.type.tensor_type.shape.dim
        if v.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[v.name] = tuple(d.dim_value for d in dims)
    return shapes


def _fold_constants(model, shapes):
    """The model with every node that computes from constants alone (or from
    an activation's static shape: Shape, Size) replaced by initializers, or
    None if there is none. torch.onnx writes shape plumbing (Shape -> Slice ->
    Concat -> Reshape, a class token's Expand through Where) that shape
    inference cannot see through; its values make the shapes static."""
    import onnx
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    g = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    opsets = {o.domain: o.version for o in model.opset_import}
    kept, folded = [], []
    for node in g.node:
        ins = [i for i in node.input if i]
        feeds = None
        if node.op_type in _SHAPE_ONLY and ins[0] in shapes and ins[0] not in consts:
            feeds = {ins[0]: np.zeros(shapes[ins[0]], np.float32)}  # only its shape is read
        elif (all(i in consts for i in ins) and not node.op_type.startswith("Random")
              and not any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                          for a in node.attribute)):
            feeds = {i: consts[i] for i in ins}
        if feeds is None:
            kept.append(node)
            continue
        values = ReferenceEvaluator(node, opsets=opsets).run(None, feeds)
        for out, value in zip(node.output, values):
            if out:
                consts[out] = np.asarray(value)
                folded.append(numpy_helper.from_array(consts[out], out))
    if not folded:
        return None
    del g.node[:]
    g.node.extend(kept)
    del g.value_info[:]  # inferred again: an unknown dimension kept here would stay unknown
    g.initializer.extend(folded)
    return model


class _Importer:
    def __init__(self, model, shapes, formats, path):
        from onnx import numpy_helper

        self.path = str(path)
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 20)
        self.index = 0  # the node being read, for the name of a node that has none
        self.shapes = shapes
        self.formats = formats
        self.const = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        self.consumers: dict[str, list] = {}  # value -> the nodes that read it (patterns)
        for n in model.graph.node:
            for i in dict.fromkeys(n.input):
                self.consumers.setdefault(i, []).append(n)
        self.skip: set[str] = set()  # outputs of nodes a pattern (GELU's Erf form) took in
        self.alias: dict[str, str] = {}        # live value -> the tensor it is (a view of)
        self.tensors: dict[str, TensorInfo] = {}
        self.readers: dict[str, list[str]] = {}
        self.ops: list = []
        self.names: dict[str, int] = {}
        self.linear_out: dict[str, LayerSpec] = {}  # output of a MatMul-with-weight linear

    # ---------------------------------------------------------------- helpers
    def shape(self, value: str, node=None) -> tuple:
        try:
            return self.shapes[value]
        except KeyError:
            where = value if node is None else (node.name or node.op_type)
            raise ArchsimError(f"shape inference gave no static shape for {value!r}",
                               file=self.path, field=where) from None

    def elems(self, value: str, node=None) -> int:
        return math.prod(self.shape(value, node))

    def unique(self, name: str) -> str:
        k = self.names.get(name, 0)
        self.names[name] = k + 1
        return name if k == 0 else f"{name}:{k}"

    def write(self, value: str, producer: Optional[str], node=None) -> str:
        self.alias[value] = value
        self.tensors[value] = TensorInfo(value, self.elems(value, node), producer)
        self.readers[value] = []
        return value

    def add(self, op, node) -> None:
        for t in dict.fromkeys(op.inputs):
            self.readers[t].append(op.name)
        op.output = self.write(node.output[0], op.name, node)
        self.ops.append(op)

    def refuse(self, node, why: str):
        raise ArchsimError(f"unsupported ONNX operator {node.op_type}: {why}",
                           file=self.path, field=node.name or node.op_type)

    def weight(self, value: str, node) -> np.ndarray:
        if value not in self.const:
            self.refuse(node, f"its weight {value!r} is computed, not an initializer")
        return self.const[value]

    # ------------------------------------------------------------------ GEMMs
    def gemm_name(self, node) -> str:
        return self.unique(module_path(node.name) or node.name or f"{node.op_type}_{self.index}")

    def op_name(self, node) -> str:
        """'<module>/<op>': a VectorOp's or an activation matmul's name."""
        path = module_path(node.name)
        return self.unique(f"{path}/{node.name.rsplit('/', 1)[1]}" if path else
                           node.name.lstrip("/") or f"{node.op_type}_{self.index}")

    def layer(self, spec: LayerSpec, node, reads: list[str]) -> None:
        if spec.op != "matmul":
            fmt = self.formats.get(spec.name.split(":")[0], DenseFormat(bits=8))
            spec.fmt = fmt.for_layer(spec)
        spec.inputs = tuple(self.alias[r] for r in reads)
        self.add(spec, node)

    def conv(self, node, name: str, x: str) -> LayerSpec:
        a = _attrs(node)
        w = self.weight(node.input[1], node)
        in_shape, out_shape = self.shape(x, node), self.shape(node.output[0], node)
        if len(in_shape) != 4:
            self.refuse(node, f"only 2-D convolution is modelled (input {in_shape})")
        b, c, h, wd = in_shape
        _, o, p, q = out_shape
        kh, kw = w.shape[2:]
        g = a.get("group", 1)
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            self.refuse(node, f"dilation {a['dilations']} is not modelled")
        strides = a.get("strides", [1, 1])
        pads = a.get("pads", [0, 0, 0, 0])
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
            self.refuse(node, "auto_pad SAME is not modelled; export with explicit pads")
        if len(set(strides)) != 1 or len(set(pads)) != 1:
            self.refuse(node, f"strides {strides} / pads {pads} differ between height and width "
                        "or sides; only equal values are supported")
        return LayerSpec(
            name=name, op="dwconv" if g > 1 and g == c == o else "conv",
            M=b * p * q, N=o // g, K=(c // g) * kh * kw, groups=g,
            conv=ConvGeom(in_ch=c, out_ch=o, kh=kh, kw=kw, stride=strides[0], pad=pads[0],
                          in_h=h, in_w=wd, out_h=p, out_w=q, groups=g),
            weight=torch.from_numpy(w.copy()), in_elems=b * c * h * wd)

    def matmul(self, node, name: str, a: str, b: str) -> LayerSpec:
        sa, sb = self.shape(a, node), self.shape(b, node)
        if node.op_type == "Gemm":  # 2-D, maybe transposed
            at = _attrs(node)
            sa = sa[::-1] if at.get("transA", 0) else sa
            sb = sb[::-1] if at.get("transB", 0) else sb
        if len(sa) == 1:
            sa = (1, *sa)
        if len(sb) == 1:
            sb = (*sb, 1)
        batch = np.broadcast_shapes(sa[:-2], sb[:-2])
        return LayerSpec(name=name, op="matmul", M=sa[-2], N=sb[-1], K=sa[-1],
                         groups=math.prod(batch), fmt=DenseFormat(bits=8))

    def linear(self, node, name: str, x: str) -> LayerSpec:
        w = self.weight(node.input[1], node)
        sx = self.shape(x, node)
        if node.op_type == "Gemm":
            at = _attrs(node)
            if at.get("transA", 0):
                self.refuse(node, "transA=1 (a transposed activation) is not modelled")
            w = w if at.get("transB", 0) else w.T  # nn.Linear holds (out, in)
        else:
            if w.ndim != 2:
                self.refuse(node, f"a {w.ndim}-D weight operand is not modelled")
            w = w.T
        n, k = w.shape
        return LayerSpec(name=name, op="linear", M=math.prod(sx[:-1]), N=n, K=k,
                         weight=torch.from_numpy(w.copy()))

    # ------------------------------------------------------------ vector ops
    def vector(self, node, op: str, reads: list[str], window: int = 1, name: str = "") -> None:
        """A VectorOp writing `node`'s output; named after `node` unless `name` is given."""
        v = VectorOp(name=self.unique(name) if name else self.op_name(node), op=op,
                     elems=self.elems(node.output[0], node), inputs=tuple(self.alias[r] for r in reads),
                     in_elems=tuple(self.elems(r, node) for r in reads), output="", window=window)
        self.add(v, node)

    def window(self, node, op: str, x: str) -> int:
        a = _attrs(node)
        if op in ("maxpool", "avgpool"):
            return math.prod(a["kernel_shape"])
        if op == "adaptive_avgpool":
            return math.prod(self.shape(x, node)[2:])
        if op == "layernorm":
            return math.prod(self.shape(x, node)[a.get("axis", -1):])
        if op == "softmax":
            if self.opset < 13:  # softmax over the flattened axes from `axis` on (default 1)
                return math.prod(self.shape(x, node)[a.get("axis", 1):])
            return self.shape(x, node)[a.get("axis", -1)]
        return 1

    def clip_bounds(self, node) -> tuple:
        a = _attrs(node)
        if "min" in a or "max" in a:  # opset < 11
            return a.get("min"), a.get("max")
        vals = []
        for i in (1, 2):
            if len(node.input) <= i or not node.input[i]:
                vals.append(None)
            elif node.input[i] in self.const:
                vals.append(float(self.const[node.input[i]]))
            else:
                self.refuse(node, "bounds that are not constants are not modelled")
        return tuple(vals)

    # ------------------------------------------------------------------- walk
    def node(self, node, index: int) -> None:
        self.index = index
        t = node.op_type
        ins = [i for i in node.input if i]
        reads = [i for i in ins if i in self.alias]
        if not reads or node.output[0] in self.skip:
            return  # a constant _fold_constants could not fold, or part of a pattern
        x = reads[0]
        if t == "Conv":
            if ins[0] != x or node.input[1] in self.alias:
                self.refuse(node, "a convolution by an activation weight is not modelled")
            self.layer(self.conv(node, self.gemm_name(node), x), node, [x])
        elif t in ("MatMul", "Gemm"):
            a, b = ins[0], ins[1]
            if a in self.alias and b in self.alias:
                self.layer(self.matmul(node, self.op_name(node), a, b), node, [a, b])
            elif a in self.alias:
                spec = self.linear(node, self.gemm_name(node), a)
                self.layer(spec, node, [a])
                if t == "MatMul":
                    self.linear_out[node.output[0]] = spec
            else:
                self.refuse(node, "a matmul with a constant first operand is not modelled; "
                            "hold the weight as the second operand")
        elif t in _VIEWS or (t == "Gather" and x == ins[0] and ins[1] not in self.alias):
            # Split: every piece names the whole source; Dropout's mask is no activation
            for out in node.output[:None if t == "Split" else 1]:
                if out:
                    self.alias[out] = self.alias[x]
        elif t == "Gather":
            if ins[0] in self.alias:
                self.refuse(node, "indexing by an activation tensor (a gather) is not modelled")
            self.vector(node, "embedding", reads)
        elif t == "Concat":
            if len(ins) == 1:
                self.alias[node.output[0]] = self.alias[x]
            else:
                self.vector(node, "concat", reads)
        elif t == "Add" and self.bias_fold(node, ins, reads):
            pass
        elif t == "Div" and (gelu := self.erf_gelu(node, ins)):
            path = module_path(node.name)
            self.vector(gelu[-1], "gelu", [x], name=f"{path}/Gelu" if path else "Gelu")
            self.skip.update(n.output[0] for n in gelu)
        elif t in ("Mul", "Div"):
            if t == "Div" and ins[1] in self.alias:
                self.refuse(node, "division by an activation tensor is not modelled")
            scalar = len(reads) == 1 and all(
                i in self.alias or (i in self.const and self.const[i].size == 1) for i in ins)
            self.vector(node, "scale" if scalar else "mul", reads)
        elif t == "Clip":
            lo, hi = self.clip_bounds(node)
            if (lo, hi) != (0.0, 6.0):
                self.refuse(node, f"only Clip(0, 6) (relu6) is modelled, got ({lo}, {hi})")
            self.vector(node, "relu6", reads)
        elif t in _SIMPLE:
            op = _SIMPLE[t]
            self.vector(node, op, reads, self.window(node, op, x))
        elif t == "Erf":
            self.refuse(node, "an Erf outside GELU's pattern (x * (1 + erf(x / sqrt 2)) * 0.5) "
                        "is not modelled")
        else:
            self.refuse(node, "it computes on activations and is neither a GEMM, a view "
                        "nor a modelled vector op")

    def only_reader(self, value: str, op_type: str, other=None):
        """The one node reading `value`, if it is an `op_type` whose other
        operand is `other` (a value name) or, with other=None, a constant."""
        readers = self.consumers.get(value, [])
        if len(readers) != 1 or readers[0].op_type != op_type:
            return None
        rest = [i for i in readers[0].input if i != value]
        ok = (rest == [other]) if other is not None else all(i in self.const for i in rest)
        return readers[0] if ok else None

    def erf_gelu(self, div, ins: list[str]):
        """torch.onnx before opset 20 writes GELU as x * (1 + erf(x / sqrt 2)) * 0.5:
        Div, Erf, Add, Mul, Mul. Their nodes after the Div, or None."""
        x = ins[0]
        if ins[1] not in self.const:
            return None
        erf = self.only_reader(div.output[0], "Erf")
        add = erf and self.only_reader(erf.output[0], "Add")
        mul = add and self.only_reader(add.output[0], "Mul", other=x)
        half = mul and self.only_reader(mul.output[0], "Mul")
        return (erf, add, mul, half) if half else None

    def bias_fold(self, node, ins: list[str], reads: list[str]) -> bool:
        """torch.onnx writes nn.Linear as MatMul + Add(bias): the Add is the
        layer's bias when it alone reads the MatMul and adds an N-vector."""
        if len(reads) != 1 or reads[0] not in self.linear_out or len(self.consumers[reads[0]]) != 1:
            return False
        other = next(i for i in ins if i != reads[0])
        spec = self.linear_out[reads[0]]
        if other not in self.const or self.const[other].size != spec.N:
            return False
        self.alias[node.output[0]] = self.alias[reads[0]]
        return True

    def workload(self, inputs: tuple, outputs: tuple) -> Workload:
        return finish_workload(self.ops, self.tensors, self.readers, inputs, outputs)


def load_onnx(path, formats: Optional[Mapping[str, WeightFormat]] = None, batch: int = 1) -> Workload:
    """The Workload of the ONNX model at `path` (see the module docstring).
    `formats` maps GEMM layer names (module qualified names) to their
    WeightFormat; layers not in it get DenseFormat(bits=8). A key that names
    no GEMM layer raises. `batch` fixes a dynamic leading input dimension."""
    formats = dict(formats or {})
    for key, fmt in formats.items():
        if not isinstance(fmt, WeightFormat):
            raise ArchsimError(f"format must be a WeightFormat, got {type(fmt).__name__}", field=key)
    model, shapes = _load(path, batch)
    imp = _Importer(model, shapes, formats, path)
    net_inputs = []
    for inp in model.graph.input:
        if inp.name not in imp.const:
            net_inputs.append(imp.write(inp.name, None))
    for index, node in enumerate(model.graph.node):
        imp.node(node, index)
    outputs = tuple(dict.fromkeys(imp.alias[o.name] for o in model.graph.output if o.name in imp.alias))
    layers = {o.name.split(":")[0] for o in imp.ops if isinstance(o, LayerSpec) and o.op != "matmul"}
    unknown = sorted(set(formats) - layers)
    if unknown:
        raise ArchsimError("format given for a name that is not a Conv/Gemm/MatMul layer of the "
                           "ONNX model", file=str(path), field=unknown[0])
    return imp.workload(tuple(net_inputs), outputs)
