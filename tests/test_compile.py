"""torch.fx compiler: the LayerSpecs of the zoo networks have the real layer
shapes (ResNet-18 checked against the reference shape table), special
layers map as documented, and whatever cannot be mapped is refused by name."""
from __future__ import annotations

import csv
import functools
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archsim.ir.errors import ArchsimError
from workloads.compile import trace
from archsim.ir.formats import DenseFormat, VQFormat
from workloads.zoo import build, default_input

REFERENCE = Path(__file__).resolve().parent / "data"  # provenance: tests/data/scalesim/README.md
SHAPES_CSV = REFERENCE / "scalesim" / "inputs" / "resnet18_shapes.csv"


@functools.lru_cache(maxsize=None)
def built(name: str) -> nn.Module:
    return build(name)


@functools.lru_cache(maxsize=None)
def traced(name: str, batch: int = 1):
    model = built(name)
    return model, trace(model, default_input(name, batch))


def resnet18_names() -> list[str]:
    names = ["conv1"]
    for stage in range(1, 5):
        for block in range(2):
            prefix = f"layer{stage}.{block}"
            names += [f"{prefix}.conv1", f"{prefix}.conv2"]
            if stage > 1 and block == 0:
                names.append(f"{prefix}.downsample.0")
    return names + ["fc"]


def test_resnet18_matches_reference_shape_table():
    model, layers = traced("resnet18")
    with SHAPES_CSV.open() as f:
        rows = list(csv.DictReader(f))
    assert len(layers) == len(rows) == 21
    assert [l.name for l in layers] == resnet18_names()
    for layer, row in zip(layers, rows):
        ref = {k: int(v) for k, v in row.items() if k != "layer"}
        if row["layer"] == "FC":
            # The table writes the FC layer as a 1x1 conv on a 1x1 map.
            assert (layer.op, layer.M, layer.N, layer.K) == ("linear", 1, ref["K"], ref["C"])
            assert layer.macs == ref["MACs"]
            continue
        g = layer.conv
        got = dict(C=g.in_ch, K=g.out_ch, R=g.kh, S=g.kw, stride=g.stride, pad=g.pad,
                   H_in=g.in_h, W_in=g.in_w, P_out=g.out_h, Q_out=g.out_w, MACs=layer.macs)
        assert got == ref, row["layer"]
        assert (layer.op, layer.groups) == ("conv", 1)
        assert (layer.M, layer.N, layer.K) == (g.out_h * g.out_w, g.out_ch, g.in_ch * g.kh * g.kw)
        assert layer.in_elems == g.in_ch * g.in_h * g.in_w
    assert sum(l.macs for l in layers) == 1_814_073_344


def test_layers_carry_the_real_weights_and_default_format():
    model, layers = traced("resnet18")
    assert layers[0].weight.data_ptr() == model.conv1.weight.data_ptr()
    assert not layers[0].weight.requires_grad
    assert layers[-1].weight.shape == (1000, 512)
    assert all(l.fmt == DenseFormat(bits=8) for l in layers)


@pytest.mark.parametrize("name, macs, n_layers", [
    ("resnet50", 4_089_184_256, 54),    # 53 conv + fc; ~4.1 GMACs
    ("mobilenetv2", 300_774_272, 53),   # 52 conv + classifier; ~300 MMACs
    ("resnet20", 40_813_184, 22),       # 19 conv + 2 option-B shortcuts + fc
])
def test_total_macs(name, macs, n_layers):
    _, layers = traced(name)
    assert len(layers) == n_layers
    assert sum(l.macs for l in layers) == macs


def test_mobilenetv2_depthwise_convs():
    _, layers = traced("mobilenetv2")
    dw = [l for l in layers if l.op == "dwconv"]
    assert len(dw) == 17  # one per inverted residual block
    for l in dw:
        c = l.conv.in_ch
        assert (l.groups, l.N, l.K, l.conv.out_ch, l.conv.groups) == (c, 1, 9, c, c)
        assert l.M == l.conv.out_h * l.conv.out_w
    first = dw[0]
    assert (first.name, first.groups, first.conv.out_h) == ("features.1.conv.0.0", 32, 112)
    assert sum(l.macs for l in dw) == sum(l.groups * l.M * 9 for l in dw)


def test_deit_tiny_attention_matmuls():
    _, layers = traced("deit_tiny")
    by_op = {op: [l for l in layers if l.op == op] for op in ("conv", "linear", "matmul")}
    assert [len(v) for v in by_op.values()] == [1, 12 * 4 + 1, 12 * 2]
    qk, av = by_op["matmul"][0], by_op["matmul"][1]
    assert (qk.groups, qk.M, qk.N, qk.K) == (3, 197, 197, 64)
    assert (av.groups, av.M, av.N, av.K) == (3, 197, 64, 197)
    assert all(l.weight is None for l in by_op["matmul"])
    patch = by_op["conv"][0]
    assert (patch.M, patch.N, patch.K, patch.conv.stride) == (196, 192, 768, 16)
    qkv = next(l for l in layers if l.name == "blocks.0.attn.qkv")
    assert (qkv.M, qkv.N, qkv.K) == (197, 576, 192)
    assert (layers[-1].name, layers[-1].M, layers[-1].N) == ("head", 1, 1000)


def test_batch_multiplies_rows_and_attention_groups():
    _, layers = traced("deit_tiny", batch=2)
    mm = next(l for l in layers if l.op == "matmul")
    assert (mm.groups, mm.M) == (6, 197)
    assert layers[0].M == 2 * 196 and layers[0].in_elems == 2 * 3 * 224 * 224
    assert layers[1].M == 2 * 197


def test_formats_are_attached_by_name():
    model = build("resnet20")
    vq = VQFormat(k=256, d=4)
    layers = trace(model, default_input("resnet20"), formats={"layer2.0.conv1": vq})
    by_name = {l.name: l for l in layers}
    assert by_name["layer2.0.conv1"].fmt is vq
    assert by_name["layer2.0.conv2"].fmt == DenseFormat(bits=8)
    assert not hasattr(layers[0], "act_bits")  # activation width has one owner: pe_array.act_bits


def test_unknown_format_key_is_refused():
    with pytest.raises(ArchsimError) as e:
        trace(build("resnet20"), default_input("resnet20"), formats={"layer9.conv": DenseFormat(bits=4)})
    assert e.value.field == "layer9.conv"


def test_trace_leaves_model_state_alone():
    model = build("resnet20").train()
    stats = model.bn1.running_mean.clone()
    trace(model, default_input("resnet20", batch=4))
    assert model.training and torch.equal(model.bn1.running_mean, stats)
    assert int(model.bn1.num_batches_tracked) == 0


class Grouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.grouped = nn.Conv2d(8, 16, 3, padding=1, groups=4)
        self.mult = nn.Conv2d(16, 32, 3, stride=2, padding="valid", groups=16)  # depth multiplier 2
        self.rect = nn.Conv2d(32, 8, (1, 3), padding=0)
        self.same = nn.Conv2d(8, 8, 5, padding="same", bias=False)

    def forward(self, x):
        return self.same(self.rect(self.mult(self.grouped(x))))


def test_grouped_rectangular_and_same_padded_convs():
    grouped, mult, rect, same = trace(Grouped(), torch.randn(1, 8, 16, 16))
    assert (grouped.op, grouped.groups, grouped.N, grouped.K, grouped.M) == ("conv", 4, 4, 18, 256)
    assert (mult.op, mult.groups, mult.N, mult.K) == ("conv", 16, 2, 9)
    assert (mult.conv.out_h, mult.conv.pad, mult.conv.stride) == (7, 0, 2)
    assert (rect.conv.kh, rect.conv.kw, rect.K, rect.conv.out_h, rect.conv.out_w) == (1, 3, 96, 7, 5)
    assert (same.conv.pad, same.conv.out_h, same.K) == (2, 7, 200)


class Matmuls(nn.Module):
    def forward(self, a, b):
        c = torch.bmm(a, b)                    # (4, 5, 6) @ (4, 6, 7)
        d = c @ b.transpose(1, 2)              # operator.matmul, (4, 5, 7) @ (4, 7, 6)
        return d.matmul(torch.ones(6))         # method; constant operand built in forward


def test_matmul_forms_and_constant_operand_refused():
    model, a, b = Matmuls(), torch.randn(4, 5, 6), torch.randn(4, 6, 7)
    with pytest.raises(ArchsimError) as e:
        trace(model, (a, b))
    assert e.value.field == "matmul_1" and "constant" in str(e.value)

    class TwoMatmuls(Matmuls):
        def forward(self, a, b):
            return torch.bmm(a, b) @ b.transpose(1, 2)

    bmm, mm = trace(TwoMatmuls(), (a, b))
    assert (bmm.op, bmm.groups, bmm.M, bmm.N, bmm.K) == ("matmul", 4, 5, 7, 6)
    assert (mm.groups, mm.M, mm.N, mm.K) == (4, 5, 6, 7)


class Wrap(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), inner)

    def forward(self, x):
        return self.body(x)


@pytest.mark.parametrize("inner, x", [
    (nn.Conv3d(2, 4, 3), torch.randn(1, 2, 5, 5, 5)),
    (nn.ConvTranspose2d(2, 4, 3), torch.randn(1, 2, 5, 5)),
    (nn.Conv1d(2, 4, 3), torch.randn(1, 2, 9)),
    (nn.LSTM(4, 8), torch.randn(3, 1, 4)),
])
def test_unsupported_layer_names_the_module(inner, x):
    with pytest.raises(ArchsimError) as e:
        trace(Wrap(inner), x)
    assert e.value.field == "body.1"
    assert type(inner).__name__ in str(e.value) and "unsupported" in str(e.value)


class FunctionalConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 2, 3, 3))

    def forward(self, x):
        return F.conv2d(torch.relu(x), self.w)


class WeightMatmul(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(6, 3))

    def forward(self, x):
        return torch.matmul(x, self.w)


def test_functional_calls_with_weights_are_refused():
    with pytest.raises(ArchsimError) as e:
        trace(FunctionalConv(), torch.randn(1, 2, 8, 8))
    assert e.value.field == "conv2d" and "unsupported" in str(e.value)
    with pytest.raises(ArchsimError) as e:
        trace(WeightMatmul(), torch.randn(2, 6))
    assert e.value.field == "matmul"


def test_dilated_conv_is_refused():
    with pytest.raises(ArchsimError) as e:
        trace(Wrap(nn.Conv2d(2, 2, 3, dilation=2)), torch.randn(1, 2, 9, 9))
    assert e.value.field == "body.1" and "dilat" in str(e.value)


class DataDependent(nn.Module):
    def forward(self, x):
        return x * 2 if x.sum() > 0 else x


def test_untraceable_model_is_a_user_error():
    with pytest.raises(ArchsimError) as e:
        trace(DataDependent(), torch.randn(3))
    assert e.value.field == "DataDependent" and "\n" not in str(e.value)


def test_shape_errors_name_the_failing_node():
    with pytest.raises(ArchsimError) as e:
        trace(Wrap(nn.Linear(4, 4)), torch.randn(2, 5))  # input width 5 for in_features 4
    assert e.value.field == "body.1" and "\n" not in str(e.value)
