"""workloads.onnx_import.load_onnx: the zoo's models exported through
torch.onnx give the Workload that trace() gives (layers, MACs, weight bytes,
VectorOps and the DAG's edges); what ONNX cannot say (BatchNorm folded by an
eval-mode export) differs as documented; unsupported operators are refused
by node name."""
from __future__ import annotations

import collections
import functools
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from archsim.cli import main
from archsim.ir.errors import ArchsimError
from archsim.ir.formats import NMFormat
from test_workload_dag import check_consistent
from workloads.compile import trace
from workloads.onnx_import import load_onnx, module_path
from workloads.zoo import build, default_input

TRAINING, EVAL = torch.onnx.TrainingMode.TRAINING, torch.onnx.TrainingMode.EVAL


@functools.lru_cache(maxsize=None)
def traced(name):
    return trace(build(name), default_input(name))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model name, mode) -> path of its ONNX file, exported once, with a
    dynamic batch. The legacy (TorchScript) exporter: the default dynamo one
    needs onnxscript. A training-mode export keeps BatchNormalization; eval
    mode folds it."""
    made = {}

    def get(name, mode):
        if (name, mode) not in made:
            path = tmp_path_factory.mktemp("onnx") / f"{name}_{mode.name}.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
                torch.onnx.export(build(name), (default_input(name),), str(path), dynamo=False,
                                  training=mode, input_names=["x"], dynamic_axes={"x": {0: "N"}})
            made[name, mode] = path
        return made[name, mode]

    return get


def layer_key(layer):
    return (layer.name, layer.op, layer.M, layer.N, layer.K, layer.groups, layer.conv, layer.fmt,
            layer.in_elems)


def weight_bytes(w):
    return sum(layer.fmt.storage_bits(layer.n_weights) for layer in w) // 8


def vector_multiset(w, drop=()):
    return collections.Counter((v.op, v.elems, v.window, v.in_elems) for v in w.vector_ops
                               if v.op not in drop)


def edges(w, drop=()):
    """Every op as (class, the positions of its inputs' producers), positions
    counted over the ops not dropped; views followed through as the DAG does."""
    kept = [o for o in w.ops if getattr(o, "op", None) not in drop]
    index = {o.name: i for i, o in enumerate(kept)}
    by_name = {o.name: o for o in w.ops}

    def source(t):
        p = w.tensors[t].producer
        while p is not None and p not in index:  # a dropped op: follow its input
            p = w.tensors[by_name[p].inputs[0]].producer
        return None if p is None else index[p]

    return [(o.op, tuple(source(t) for t in o.inputs)) for o in kept]


# ------------------------------------------------------------ zoo vs trace()


@pytest.mark.parametrize("name,mode", [("resnet20", TRAINING), ("resnet18", TRAINING),
                                       ("mobilenetv2", TRAINING), ("deit_tiny", EVAL)])
def test_zoo_model_imports_as_trace_gives_it(exported, name, mode):
    w, t = load_onnx(exported(name, mode)), traced(name)
    check_consistent(w)
    gemm = [layer_key(x) for x in w if x.op != "matmul"]
    assert gemm == [layer_key(x) for x in t if x.op != "matmul"]
    # activation matmuls: same shapes; named '<module>/<op>' (trace: fx's 'matmul_3')
    assert [layer_key(x)[1:] for x in w if x.op == "matmul"] == \
           [layer_key(x)[1:] for x in t if x.op == "matmul"]
    assert sum(x.macs for x in w) == sum(x.macs for x in t)
    assert weight_bytes(w) == weight_bytes(t)
    assert vector_multiset(w) == vector_multiset(t)
    assert edges(w) == edges(t)  # the same DAG, op by op
    assert sum(o.after_gemm for o in w.vector_ops) == sum(o.after_gemm for o in t.vector_ops)
    assert len(w.tensors) == len(t.tensors) and len(w.outputs) == len(t.outputs) == 1
    assert w.tensors[w.inputs[0]].elems == t.tensors[t.inputs[0]].elems
    # the real weights, as the modules hold them (Linear's (out, in) from MatMul's (in, out))
    for a, b in zip(w, t):
        assert (a.weight is None) == (b.weight is None)
        if a.weight is not None:
            assert torch.equal(a.weight, b.weight), a.name


def test_a_dynamic_batch_takes_batch_through_torch_onnx_shape_plumbing(exported):
    """deit_tiny's reshapes and class-token expand take the batch from Shape
    nodes: folded to constants once the batch is set, they give trace()'s batch-2 workload."""
    w, t = load_onnx(exported("deit_tiny", EVAL), batch=2), trace(build("deit_tiny"), default_input("deit_tiny", 2))
    check_consistent(w)
    assert [layer_key(x)[1:] for x in w] == [layer_key(x)[1:] for x in t]
    assert vector_multiset(w) == vector_multiset(t) and edges(w) == edges(t)
    assert w.tensors[w.inputs[0]].elems == 2 * 3 * 224 * 224


def test_eval_mode_export_folds_batchnorm_into_the_convs(exported):
    """torch.onnx in eval mode folds each BatchNorm into its Conv: the same
    layers, MACs and bytes, no 'batchnorm' op, and the conv weights are the folded ones."""
    w, t = load_onnx(exported("resnet20", EVAL)), traced("resnet20")
    check_consistent(w)
    assert [layer_key(x) for x in w] == [layer_key(x) for x in t]
    assert weight_bytes(w) == weight_bytes(t)
    assert not [v for v in w.vector_ops if v.op == "batchnorm"]
    assert vector_multiset(w) == vector_multiset(t, drop={"batchnorm"})
    assert edges(w) == edges(t, drop={"batchnorm"})
    conv1 = w[0]
    assert conv1.weight.shape == t[0].weight.shape and not torch.equal(conv1.weight, t[0].weight)


def test_formats_key_layers_by_module_name(exported):
    path = exported("resnet20", TRAINING)
    fmt = NMFormat(n=2, m=4)
    w = load_onnx(path, formats={"layer1.0.conv1": fmt})
    t = trace(build("resnet20"), default_input("resnet20"), formats={"layer1.0.conv1": fmt})
    assert [layer_key(x) for x in w] == [layer_key(x) for x in t]
    assert weight_bytes(w) == weight_bytes(t) < weight_bytes(load_onnx(path))
    with pytest.raises(ArchsimError, match="layer1.0.conv9"):
        load_onnx(path, formats={"layer1.0.conv9": fmt})


@pytest.mark.parametrize("node_name,qualified", [
    ("/layer1/layer1.0/conv1/Conv", "layer1.0.conv1"),
    ("/blocks/blocks.0/mlp/mlp.0/MatMul", "blocks.0.mlp.0"),
    ("/features/features.3/conv/conv.1/conv.1.0/Conv", "features.3.conv.1.0"),
    ("/fc/Gemm", "fc"), ("/Add", ""), ("conv_7", ""),
])
def test_module_path_rebuilds_the_qualified_name(node_name, qualified):
    assert module_path(node_name) == qualified


# ---------------------------------------------------------- hand-built graphs


def save(tmp_path, nodes, inputs, outputs, inits=(), opset=20):
    graph = helper.make_graph(nodes, "g", inputs, outputs,
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    return path


def vin(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def test_operators_map_to_layers_and_vector_ops(tmp_path):
    """Gather from a table -> embedding; Gemm (transB=0) -> linear with the
    (out, in) weight; Clip(0, 6) -> relu6; Mul by a scalar -> scale, by a
    tensor -> mul; Softmax's window is its axis; a dynamic batch takes `batch`."""
    rng = np.random.default_rng(0)
    table, wgt = rng.standard_normal((50, 8), np.float32), rng.standard_normal((8, 4), np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["e"], name="emb"),
        helper.make_node("Flatten", ["e"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "w"], ["g"], name="/fc/Gemm"),
        helper.make_node("Clip", ["g", "lo", "hi"], ["c"], name="/act/Clip"),
        helper.make_node("Mul", ["c", "half"], ["s"], name="/Mul"),
        helper.make_node("Mul", ["s", "c"], ["m"], name="/Mul_1"),
        helper.make_node("Softmax", ["m"], ["y"], name="/Softmax", axis=-1),
    ]
    path = save(tmp_path, nodes, [vin("ids", ["N", 1], TensorProto.INT64)], [vin("y", None)],
                [("table", table), ("w", wgt), ("lo", np.float32(0)), ("hi", np.float32(6)),
                 ("half", np.float32(0.5))])
    w = load_onnx(path, batch=3)
    check_consistent(w)
    assert [(o.name, o.op) for o in w.ops] == [("emb", "embedding"), ("fc", "linear"),
                                               ("act/Clip", "relu6"), ("Mul", "scale"),
                                               ("Mul_1", "mul"), ("Softmax", "softmax")]
    fc = w[0]
    assert (fc.M, fc.N, fc.K) == (3, 4, 8) and torch.equal(fc.weight, torch.from_numpy(wgt.T))
    emb, relu6, mul = w.ops[0], w.ops[2], w.ops[4]
    assert emb.elems == 3 * 8 and emb.inputs == ("ids",) and emb.in_elems == (3,)
    assert relu6.after_gemm and not w.ops[3].after_gemm  # 'c' has two readers
    assert mul.inputs == ("s", "c")
    assert mul.in_elems == (12, 12) and w.ops[5].window == 4
    assert w.outputs == ("y",)


def test_batch_sets_a_dynamic_batch_and_is_refused_for_a_fixed_one(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="r")]
    dynamic = save(tmp_path, nodes, [vin("x", ["N", 4])], [vin("y", ["N", 4])])
    assert load_onnx(dynamic, batch=5).ops[0].elems == 20
    (tmp_path / "fixed").mkdir()
    fixed = save(tmp_path / "fixed", nodes, [vin("x", [2, 4])], [vin("y", None)])
    assert load_onnx(fixed).ops[0].elems == 8  # batch=1 (the default) takes the file's
    with pytest.raises(ArchsimError, match="fixed batch of 2"):
        load_onnx(fixed, batch=3)
    (tmp_path / "sym").mkdir()
    sym = save(tmp_path / "sym", nodes, [vin("x", [1, "T"])], [vin("y", None)])
    with pytest.raises(ArchsimError, match="symbolic dimension 1"):
        load_onnx(sym)


def test_unsupported_operator_is_refused_naming_the_node(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="/act/Relu"),
             helper.make_node("LRN", ["r"], ["y"], name="/norm/LRN", size=3)]
    path = save(tmp_path, nodes, [vin("x", [1, 4, 8, 8])], [vin("y", None)])
    with pytest.raises(ArchsimError) as e:
        load_onnx(path)
    msg = str(e.value)
    assert "/norm/LRN" in msg and "LRN" in msg and "\n" not in msg


@pytest.mark.parametrize("node,why", [
    (helper.make_node("Clip", ["x", "lo", "hi"], ["y"], name="clip3"), "Clip"),
    (helper.make_node("Div", ["x", "x"], ["y"], name="div_act"), "division by an activation"),
    (helper.make_node("Erf", ["x"], ["y"], name="erf"), "Erf outside GELU"),
])
def test_unmodelled_forms_are_refused(tmp_path, node, why):
    path = save(tmp_path, [node], [vin("x", [2, 4])], [vin("y", None)],
                [("lo", np.float32(0)), ("hi", np.float32(3))])
    with pytest.raises(ArchsimError, match=why) as e:
        load_onnx(path)
    assert node.name in str(e.value)


def test_gelu_before_opset_20_is_one_gelu(tmp_path):
    """Before opset 20 torch.onnx writes GELU as Div, Erf, Add, Mul, Mul: one 'gelu'."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4)).eval()
    x = torch.zeros(2, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(tmp_path / "g.onnx"), dynamo=False, opset_version=17)
    assert "Erf" in {n.op_type for n in onnx.load(str(tmp_path / "g.onnx")).graph.node}
    w, t = load_onnx(tmp_path / "g.onnx"), trace(model, x)
    check_consistent(w)
    assert [(o.op, w.tensors[o.output].elems) for o in w.ops] == \
           [(o.op, t.tensors[o.output].elems) for o in t.ops]
    assert w.ops[1].name == "1/Gelu" and w.ops[1].after_gemm and edges(w) == edges(t)


def test_a_file_that_is_not_onnx_is_one_line(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not a model")
    with pytest.raises(ArchsimError, match="bad.onnx"):
        load_onnx(bad)
    with pytest.raises(ArchsimError, match="missing.onnx"):
        load_onnx(tmp_path / "missing.onnx")


# ------------------------------------------------------------------ the CLI


def total_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("TOTAL"))


def test_cli_run_onnx_simulates_as_the_model_does(exported, tmp_path, capsys):
    common = ["--arch", "sa32_ws", "--out", str(tmp_path), "--no-plot", "--quiet"]
    assert main(["run", "--onnx", str(exported("resnet20", TRAINING))] + common) == 0
    from_onnx = capsys.readouterr().out
    assert main(["run", "--model", "resnet20"] + common) == 0
    assert total_line(from_onnx) == total_line(capsys.readouterr().out)
    assert list(tmp_path.glob("resnet20_TRAINING*/report.json"))  # the run folder is the file's stem


def test_cli_run_onnx_errors_are_one_line(tmp_path, capsys):
    nodes = [helper.make_node("LRN", ["x"], ["y"], name="/norm/LRN", size=3)]
    path = save(tmp_path, nodes, [vin("x", [1, 4, 8, 8])], [vin("y", None)])
    for argv, what in ((["--onnx", str(path)], "/norm/LRN"),
                       (["--onnx", str(tmp_path / "none.onnx")], "none.onnx"),
                       (["--onnx", str(path), "--profile", "4"], "--profile"),
                       (["--onnx", str(path), "--topology", "t.csv"], "--onnx")):
        assert main(["run", *argv, "--out", str(tmp_path), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("archsim: error: ") and what in err


def test_a_study_takes_an_onnx_workload(exported, tmp_path, capsys):
    study = tmp_path / "s.yaml"
    study.write_text(f"name: onnx_study\nworkload: {{onnx: {exported('resnet20', TRAINING)}}}\narchs: [sa32_ws]\n"
                     "space:\n  pe_array.rows: {choices: [16, 32]}\nobjectives: [latency, energy]\n"
                     "sampler: grid\ntrials: 2\n")
    assert main(["explore", str(study), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert "2 points, 2 feasible" in capsys.readouterr().out
    study.write_text("name: s\nworkload: {onnx: missing.onnx}\nobjectives: [latency]\n")
    assert main(["validate", str(study)]) == 2
    assert "workload.onnx" in capsys.readouterr().err
