"""The workload DAG of workloads.compile.trace: every operator and activation
tensor with its producer and consumers, views aliased away, non-GEMM
arithmetic as VectorOps, and unmodelled arithmetic refused by node name."""
from __future__ import annotations

import functools
import math
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archsim.ir.errors import ArchsimError
from workloads.compile import trace
from archsim.ir.layer_spec import VECTOR_OPS, LayerSpec, TensorInfo, VectorOp, Workload
from workloads.zoo import build, default_input


@functools.lru_cache(maxsize=None)
def built(name: str) -> nn.Module:
    return build(name)


@functools.lru_cache(maxsize=None)
def traced(name: str, batch: int = 1) -> Workload:
    return trace(built(name), default_input(name, batch))


def by_name(w: Workload) -> dict:
    return {o.name: o for o in w.ops}


def check_consistent(w: Workload) -> None:
    """Invariants every traced DAG keeps."""
    ops = by_name(w)
    assert len(ops) == len(w.ops)  # op names are unique
    assert list(w) == [o for o in w.ops if isinstance(o, LayerSpec)]
    order = {o.name: i for i, o in enumerate(w.ops)}
    for o in w.ops:
        assert w.tensors[o.output].producer == o.name
        for t in o.inputs:
            info = w.tensors[t]
            assert o.name in info.consumers
            # a tensor is written before it is read
            assert info.producer is None or order[info.producer] < order[o.name]
    for t in w.tensors.values():
        assert isinstance(t, TensorInfo) and t.elems > 0
        assert [order[c] for c in t.consumers] == sorted(order[c] for c in t.consumers)
        assert len(set(t.consumers)) == len(t.consumers)
        for c in t.consumers:
            assert t.name in ops[c].inputs
        assert (t.producer is None) == (t.name in w.inputs)
    for v in w.ops:
        if isinstance(v, VectorOp):
            assert v.op in VECTOR_OPS and len(v.in_elems) == len(v.inputs)
    assert all(t in w.tensors for t in w.outputs)


# ------------------------------------------------------------------ ResNet-18


def test_resnet18_dag_is_consistent_and_layers_are_the_list():
    w = traced("resnet18")
    check_consistent(w)
    assert isinstance(w, list) and len(w) == 21
    assert w.inputs == ("x",) and w.outputs == ("fc",)
    assert w.tensors["x"].elems == 3 * 224 * 224


@pytest.mark.parametrize("batch", [1, 2])
def test_resnet18_layer_inputs_have_the_layers_element_counts(batch):
    w = traced("resnet18", batch)
    for layer in w:
        assert len(layer.inputs) == 1 and layer.output
        (t,) = layer.inputs
        if layer.op == "conv":
            g = layer.conv
            assert w.tensors[t].elems == layer.in_elems == batch * g.in_ch * g.in_h * g.in_w
            assert w.tensors[layer.output].elems == batch * g.out_ch * g.out_h * g.out_w
        else:  # fc reads the flattened pool output
            assert w.tensors[t].elems == layer.M * layer.K == batch * 512
            assert w.tensors[layer.output].elems == batch * 1000


def test_resnet18_element_counts_are_the_shape_products():
    model, x = built("resnet18"), default_input("resnet18")
    shapes = {}  # an eager forward pass records every leaf module's first output shape

    def record(name):
        def hook(module, args, out):
            shapes.setdefault(name, tuple(out.shape))
        return hook

    hooks = [m.register_forward_hook(record(n)) for n, m in model.named_modules() if not list(m.children())]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    w = traced("resnet18")
    for name, shape in shapes.items():
        assert w.tensors[by_name(w)[name].output].elems == math.prod(shape), name
    assert w.tensors["add"].elems == 64 * 56 * 56


def resnet18_blocks():
    for stage in range(1, 5):
        for block in range(2):
            yield stage, block, f"layer{stage}.{block}"


def test_resnet18_residual_adds_read_the_skip_and_the_main_path():
    w = traced("resnet18")
    ops = by_name(w)
    adds = [o for o in w.ops if isinstance(o, VectorOp) and o.op == "add"]
    assert len(adds) == 8
    for add, (stage, block, prefix) in zip(adds, resnet18_blocks()):
        main, skip = add.inputs
        # main path: conv2 -> bn2 (fusable into conv2's write-back) -> add
        bn2 = ops[f"{prefix}.bn2"]
        assert main == bn2.output and bn2.inputs == (ops[f"{prefix}.conv2"].output,)
        assert bn2.op == "batchnorm" and bn2.after_gemm
        # skip path: the block input, or the downsample branch's output
        block_input = ops[f"{prefix}.conv1"].inputs[0]
        if stage > 1 and block == 0:
            ds = ops[f"{prefix}.downsample.1"]
            assert ds.op == "batchnorm" and ds.inputs == (ops[f"{prefix}.downsample.0"].output,)
            assert skip == ds.output
            assert ops[f"{prefix}.downsample.0"].inputs == (block_input,)
            assert w.tensors[block_input].consumers == (f"{prefix}.conv1", f"{prefix}.downsample.0")
        else:
            assert skip == block_input
            # the skip tensor lives until the add: its last consumer
            assert w.tensors[skip].consumers == (f"{prefix}.conv1", add.name)
        assert not add.after_gemm and add.in_elems == (add.elems, add.elems)
        relu = ops[f"{prefix}.relu:1"]  # the block's second call of its ReLU module
        assert relu.inputs == (add.output,) and relu.op == "relu"


def test_resnet18_views_alias_and_pools_have_windows():
    w = traced("resnet18")
    ops = by_name(w)
    pool = ops["avgpool"]
    assert (pool.op, pool.window, pool.elems) == ("adaptive_avgpool", 7 * 7, 512)
    assert ops["fc"].inputs == (pool.output,)  # flatten is an alias, not a tensor
    assert not any("flatten" in t for t in w.tensors)
    mp = ops["maxpool"]
    assert (mp.op, mp.window, mp.elems, mp.in_elems) == ("maxpool", 9, 64 * 56 * 56, (64 * 112 * 112,))
    assert ops["relu"].after_gemm and ops["bn1"].after_gemm and not mp.after_gemm


def test_hand_built_layers_have_unknown_edges_and_ops_are_checked():
    layer = LayerSpec(name="l", op="linear", M=1, N=2, K=3)
    assert (layer.inputs, layer.output) == ((), "")  # the tiler chains such layers in program order
    assert Workload([layer]) == [layer] and Workload([layer]).tensors == {}
    with pytest.raises(ValueError):
        VectorOp(name="v", op="cumsum", elems=4, inputs=("x",), in_elems=(4,), output="v")
    with pytest.raises(ValueError):
        VectorOp(name="v", op="add", elems=4, inputs=("x", "y"), in_elems=(4,), output="v")


def test_workload_pickles_with_its_dag():
    w = traced("resnet20")
    back = pickle.loads(pickle.dumps(w))
    assert isinstance(back, Workload) and back.tensors == w.tensors and back.outputs == w.outputs
    assert [l.name for l in back] == [l.name for l in w]


# ------------------------------------------------------------- other zoo nets


def test_deit_tiny_block_ops():
    w = traced("deit_tiny")
    check_consistent(w)
    ops = by_name(w)
    tokens, dim, heads = 197, 192, 3
    # the class token joins the patches: a copy; the position embedding is a constant operand
    cat = ops["cat"]
    assert (cat.op, cat.inputs, cat.elems) == ("concat", (ops["patch_embed.proj"].output,), tokens * dim)
    assert cat.in_elems == (196 * dim,)
    x0 = ops["add"]
    assert (x0.op, x0.inputs) == ("add", (cat.output,))

    n1, n2 = ops["blocks.0.norm1"], ops["blocks.0.norm2"]
    assert (n1.op, n1.window, n1.elems, n1.inputs) == ("layernorm", dim, tokens * dim, (x0.output,))
    qkv = ops["blocks.0.attn.qkv"]
    assert qkv.inputs == (n1.output,) and w.tensors[qkv.output].elems == tokens * 3 * dim
    qk, av = ops["matmul"], ops["matmul_1"]
    # q, k and v are slices of the qkv output: they alias it
    assert qk.inputs == (qkv.output, qkv.output)
    scale, softmax = ops["mul"], ops["softmax"]
    assert (scale.op, scale.inputs, scale.after_gemm) == ("scale", (qk.output,), True)
    assert (softmax.op, softmax.window, softmax.elems) == ("softmax", tokens, heads * tokens * tokens)
    assert softmax.inputs == (scale.output,) and not softmax.after_gemm
    assert av.inputs == (softmax.output, qkv.output)
    assert w.tensors[qkv.output].consumers == ("matmul", "matmul_1")
    proj = ops["blocks.0.attn.proj"]
    assert proj.inputs == (av.output,)  # transpose + flatten alias the matmul output
    add1 = ops["add_1"]
    assert add1.inputs == (x0.output, proj.output) and add1.op == "add"
    assert w.tensors[x0.output].consumers == ("blocks.0.norm1", "add_1")  # the skip lives until the add
    assert n2.inputs == (add1.output,)
    fc1, gelu, fc2 = ops["blocks.0.mlp.0"], ops["blocks.0.mlp.1"], ops["blocks.0.mlp.2"]
    assert (gelu.op, gelu.inputs, gelu.elems, gelu.after_gemm) == ("gelu", (fc1.output,), tokens * 768, True)
    assert fc2.inputs == (gelu.output,)
    assert ops["add_2"].inputs == (add1.output, fc2.output)
    # the head reads the class token's row of the final norm: a slice aliases its tensor
    assert ops["head"].inputs == (ops["norm"].output,) and w.outputs == ("head",)


def test_deit_tiny_matmuls_read_two_activations_in_every_block():
    w = traced("deit_tiny", batch=2)
    mms = [l for l in w if l.op == "matmul"]
    assert len(mms) == 24
    for mm in mms:
        assert len(mm.inputs) == 2
        for t in mm.inputs:
            assert w.tensors[t].producer is not None  # activations, not weights
        # each operand lies within its tensor: A is groups*M*K, B is groups*K*N
        assert w.tensors[mm.inputs[0]].elems >= mm.groups * mm.M * mm.K
        assert w.tensors[mm.inputs[1]].elems >= mm.groups * mm.K * mm.N
    counts = {}
    for v in w.vector_ops:
        counts[v.op] = counts.get(v.op, 0) + 1
    assert counts == {"concat": 1, "add": 1 + 2 * 12, "layernorm": 2 * 12 + 1, "scale": 12,
                      "softmax": 12, "gelu": 12}


def test_mobilenetv2_relu6_and_residual_adds():
    w = traced("mobilenetv2")
    check_consistent(w)
    ops = by_name(w)
    relu6 = [v for v in w.vector_ops if v.op == "relu6"]
    assert len(relu6) == 35  # first conv, 16 expansions, 17 depthwise, last 1x1
    assert all(v.after_gemm and w.tensors[v.inputs[0]].producer.endswith(".1") for v in relu6)
    adds = [v for v in w.vector_ops if v.op == "add"]
    assert len(adds) == 10  # blocks that keep their shape
    for add in adds:
        skip, main = (w.tensors[t] for t in add.inputs)  # x + self.conv(x)
        proj_bn = ops[main.producer]  # the linear bottleneck's BN after its 1x1 projection
        assert proj_bn.op == "batchnorm" and ops[w.tensors[proj_bn.inputs[0]].producer].op == "conv"
        # the skip tensor is the block input: read by the block's first conv and, last, by the add
        assert skip.consumers[-1] == add.name and len(skip.consumers) == 2
        assert ops[skip.consumers[0]].op == "conv" and skip.producer != main.producer
    pool = ops["pool"]
    assert ops["classifier.1"].inputs == (pool.output,)  # flatten and dropout alias
    assert len([v for v in w.vector_ops if v.op == "batchnorm"]) == 52


@pytest.mark.parametrize("name, vector_ops", [
    ("resnet18", 47), ("resnet20", 50), ("resnet50", 120), ("mobilenetv2", 98),
    ("deit_tiny", 87), ("fmnist_cnn", 11),
])
def test_zoo_dags_are_consistent(name, vector_ops):
    w = traced(name)
    check_consistent(w)
    assert len(w.vector_ops) == vector_ops
    assert len(w.outputs) == 1 and w.inputs == ("x",)
    for layer in w:
        assert layer.inputs and layer.output and all(t in w.tensors for t in layer.inputs)


# ----------------------------------------------------- forms and refusals


class Forms(nn.Module):
    """Functional, method and in-place forms of the modelled ops."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1)
        self.gamma = nn.Parameter(torch.ones(8, 1, 1))
        self.gn = nn.GroupNorm(2, 8)

    def forward(self, x):
        y = self.conv(x)
        y.relu_()                               # in place: later readers read the relu
        a, b = y.chunk(2, dim=1)                # views of y
        z = torch.cat((a * 2, b), dim=1)        # a join of two activations: a concat
        z = -z * self.gamma                     # neg -> scale, * parameter -> mul
        z = z + y                               # y is the relu's output
        z = F.max_pool2d(z, 2) / 4
        z = self.gn(z)
        return torch.softmax(F.layer_norm(z, (4,)), dim=-1)


def test_functional_method_and_inplace_forms():
    w = trace(Forms(), torch.randn(2, 4, 8, 8))
    check_consistent(w)
    ops = [o for o in w.ops]
    kinds = [(o.name, getattr(o, "op", None) if isinstance(o, VectorOp) else "gemm") for o in ops]
    assert kinds == [("conv", "gemm"), ("relu_", "relu"), ("mul", "scale"), ("cat", "concat"),
                     ("neg", "scale"), ("mul_1", "mul"), ("add", "add"), ("max_pool2d", "maxpool"),
                     ("truediv", "scale"), ("gn", "groupnorm"), ("layer_norm", "layernorm"),
                     ("softmax", "softmax")]
    o = by_name(w)
    assert o["relu_"].inputs == ("conv",) and o["relu_"].after_gemm
    assert o["mul"].inputs == ("relu_",) and o["mul"].in_elems == (2 * 4 * 64,)  # a half of relu_
    assert o["cat"].inputs == ("mul", "relu_") and o["cat"].elems == 2 * 8 * 64
    assert o["add"].inputs == ("mul_1", "relu_")  # read after the in-place relu: the new tensor
    assert w.tensors["conv"].consumers == ("relu_",)
    assert w.tensors["relu_"].consumers == ("mul", "cat", "add")
    assert o["mul_1"].inputs == ("neg",)  # the parameter is not a tensor of the DAG
    assert (o["max_pool2d"].window, o["max_pool2d"].elems) == (4, 2 * 8 * 16)
    assert o["gn"].window == 4 * 16 and o["layer_norm"].window == 4 and o["softmax"].window == 4
    assert w.outputs == ("softmax",)


class Embed(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(100, 16)
        self.norm = nn.RMSNorm(16)
        self.head = nn.Linear(16, 100)

    def forward(self, ids):
        h = self.tok(ids)
        return self.head(F.silu(self.norm(h)) + h)


def test_embedding_and_rms_norm():
    w = trace(Embed(), torch.zeros(2, 5, dtype=torch.long))
    check_consistent(w)
    o = by_name(w)
    assert (o["tok"].op, o["tok"].inputs, o["tok"].in_elems, o["tok"].elems) == ("embedding", ("ids",), (10,), 160)
    assert (o["norm"].op, o["norm"].window) == ("rmsnorm", 16)
    assert o["silu"].op == "silu" and not o["silu"].after_gemm  # its input is no GEMM's
    assert o["add"].inputs == ("silu", "tok") and w.tensors["tok"].consumers == ("norm", "add")
    assert o["head"].inputs == ("add",) and w.outputs == ("head",)


class Inner(nn.Module):
    def forward(self, x):
        return torch.sigmoid(x) * x


class Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.act = Inner()
        self.fc = nn.Linear(6, 6)

    def forward(self, x):
        return self.fc(self.act(x))


def test_nested_user_modules_are_traced_through():
    w = trace(Nested(), torch.randn(3, 6))
    assert [(v.op, v.inputs) for v in w.vector_ops] == [("sigmoid", ("x",)), ("mul", ("sigmoid", "x"))]
    assert w[0].inputs == ("mul",)


class Unmodelled(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.fn = fn

    def forward(self, x):
        return self.fn(self.fc(x))


@pytest.mark.parametrize("fn, node", [
    (lambda x: torch.cumsum(x, 1), "cumsum"),
    (lambda x: torch.sort(x)[0], "sort"),
    (lambda x: x.exp(), "exp"),
    (lambda x: x / x.sum(-1, keepdim=True), "sum_1"),
    (lambda x: 1 / x, "truediv"),
])
def test_unmodelled_arithmetic_names_the_node(fn, node):
    with pytest.raises(ArchsimError) as e:
        trace(Unmodelled(fn), torch.randn(2, 4))
    assert e.value.field == node and "unsupported" in str(e.value)


@pytest.mark.parametrize("leaf", [nn.Softplus(), nn.PReLU(), nn.MaxPool1d(2)])
def test_unmapped_leaf_module_is_refused(leaf):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 1)
            self.odd = leaf

        def forward(self, x):
            return self.odd(self.conv(x).flatten(2))

    with pytest.raises(ArchsimError) as e:
        trace(Net(), torch.randn(1, 4, 4, 4))
    assert e.value.field == "odd" and type(leaf).__name__ in str(e.value)


class Gather(nn.Module):
    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(torch.randn(5, 3))

    def forward(self, x, idx):
        return x[idx] * 2 + self.table[idx]


def test_indexing_by_an_activation_is_refused():
    with pytest.raises(ArchsimError) as e:
        trace(Gather(), (torch.randn(5, 3), torch.tensor([0, 2])))
    assert e.value.field == "getitem" and "gather" in str(e.value)

    class TableOnly(Gather):
        def forward(self, x, idx):
            return x[:2] * self.table[idx]

    with pytest.raises(ArchsimError) as e:  # a parameter indexed by an activation: still a gather
        trace(TableOnly(), (torch.randn(5, 3), torch.tensor([0, 2])))
    assert e.value.field == "getitem_1"


def test_shape_lending_operands_are_not_read():
    class As(nn.Module):
        def forward(self, x, y):
            return x.view_as(y) + y.type_as(x) * 2

    w = trace(As(), (torch.randn(2, 6), torch.randn(3, 4)))
    assert [(v.op, v.inputs) for v in w.vector_ops] == [("scale", ("y",)), ("add", ("x", "mul"))]


def test_constant_computations_are_not_ops():
    class Masked(nn.Module):
        def forward(self, x):
            s = x @ x.transpose(-2, -1)
            mask = torch.ones_like(s).triu(1) * -1e9  # from a shape only: a constant
            return (s + mask + x.new_zeros(4, 4)).softmax(-1)

    w = trace(Masked(), torch.randn(2, 4, 8))
    assert [o.name for o in w.ops] == ["matmul", "add", "add_1", "softmax"]
    assert w.ops[0].inputs == ("x", "x") and w.ops[1].inputs == ("matmul",) and w.ops[2].inputs == ("add",)
    assert w.tensors["x"].consumers == ("matmul",)


def test_self_describing_leaf_gets_its_edges():
    from workloads.compression.pq import PQLinear

    pq = PQLinear(nn.Linear(8, 4), torch.randn(2, 4, 4), torch.randn(2, 4, 4))
    w = trace(nn.Sequential(nn.LayerNorm(8), pq, nn.ReLU()), torch.randn(3, 8))
    (layer,) = w
    assert (layer.name, layer.inputs, layer.output) == ("1", ("_0",), "_1")
    assert w.ops[-1].inputs == ("_1",) and w.ops[-1].after_gemm
