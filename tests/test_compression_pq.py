"""PQ of activations (PQA): the LUT module computes exactly the product of
the selected prototypes with the weights, equals the convolution when the
activations are prototypes, and the format counts prototypes + LUTs.
Sequential calibration feeds each layer the PQ'd outputs of the earlier
ones; BatchNorm re-estimation averages the batch statistics; fine-tuning
lowers the loss, keeps argmin + table lookup as the forward pass and leaves
the tables on their bit grids; the fused soft-assignment gradient matches
autograd; a calib generator is read only as far as needed."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from workloads.compression import compress
from workloads.compression import pq as pq_mod
from workloads.compression.pq import (PQConv2d, PQLinear, _LutLookup, _SoftAssignGrad, build_pq_layer, layer_columns,
                                      recalibrate_bn, weight_matrix)


def _conv_and_cols(k=3, stride=1, cin=4, cout=6, seed=0):
    torch.manual_seed(seed)
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=0 if stride == k else 1)
    x = torch.relu(torch.randn(4, cin, 8, 8, generator=torch.Generator().manual_seed(seed + 1)))
    return conv, x, layer_columns(conv, x)


def test_lut_output_is_selected_prototypes_times_weights():
    conv, x, cols = _conv_and_cols()
    pq = build_pq_layer(conv, cols, Ls=5, Np=8, proto_bits=8, lut_bits=None, seed=0)  # K=36 -> Ns=8, padded
    assert isinstance(pq, PQConv2d) and pq.prototypes.shape == (8, 8, 5) and pq.lut.shape == (8, 8, 6)
    idx = pq.encode(cols)
    dense = pq.decode(idx) @ weight_matrix(conv).T + conv.bias
    assert torch.allclose(pq.pq_matmul(cols), dense, atol=1e-5)
    # and the module's conv-shaped forward is that product, laid out as a conv output
    y = pq(x)
    assert y.shape == conv(x).shape
    assert torch.allclose(y.permute(0, 2, 3, 1).reshape(-1, 6), dense, atol=1e-5)


def test_encode_is_nearest_prototype():
    conv, x, cols = _conv_and_cols()
    for dist, p in (("l2", 2), ("l1", 1)):
        pq = build_pq_layer(conv, cols, Ls=4, Np=8, seed=0, distance=dist)
        idx = pq.encode(cols)
        xs = pq.split(cols)
        d = torch.stack([torch.cdist(xs[:, s], pq.prototypes[s], p=p) for s in range(pq.n_subspaces)], 1)
        picked = d.gather(2, idx.unsqueeze(2)).squeeze(2)
        assert torch.allclose(picked, d.min(2).values, atol=1e-4)


def test_equals_conv_when_activations_are_prototypes():
    # 2x2 kernel, stride 2: windows do not overlap, so any choice of
    # prototypes per window can be folded back into an input image
    conv, x, cols = _conv_and_cols(k=2, stride=2, cin=3, cout=5)
    pq = build_pq_layer(conv, cols, Ls=4, Np=4, proto_bits=8, lut_bits=None, seed=0)  # K=12 -> Ns=3
    g = torch.Generator().manual_seed(3)
    n_cols = 4 * 4 * 4
    choice = torch.randint(0, 4, (n_cols, 3), generator=g)
    chosen = pq.decode(choice)  # [n_cols, 12]
    xin = F.fold(chosen.reshape(4, 16, 12).transpose(1, 2), (8, 8), 2, stride=2)
    assert torch.allclose(layer_columns(conv, xin), chosen)
    assert torch.allclose(pq(xin), conv(xin), atol=1e-5)
    # with 16-bit LUT entries it is close, within Ns half-steps of the LUT grid
    pq16 = build_pq_layer(conv, cols, Ls=4, Np=4, proto_bits=8, lut_bits=16, seed=0)
    step = pq16.lut.abs().max() / (2 ** 15 - 1)
    assert (pq16(xin) - conv(xin)).abs().max() <= 3 * step / 2 + 1e-6


def test_linear_on_token_input():
    torch.manual_seed(0)
    lin = nn.Linear(10, 7)
    x = torch.randn(2, 5, 10)
    pq = build_pq_layer(lin, layer_columns(lin, x), Ls=3, Np=4, lut_bits=None, seed=0)
    assert isinstance(pq, PQLinear)
    y = pq(x)
    assert y.shape == (2, 5, 7)
    cols = x.reshape(-1, 10)
    ref = pq.decode(pq.encode(cols)) @ lin.weight.T + lin.bias
    assert torch.allclose(y.reshape(-1, 7), ref, atol=1e-5)


def _model_and_calib():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(),
                          nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    g = torch.Generator().manual_seed(1)
    calib = [(torch.randn(4, 3, 8, 8, generator=g), torch.zeros(4, dtype=torch.long)) for _ in range(3)]
    return model, calib


def test_compress_pq_model_and_accounting():
    model, calib = _model_and_calib()
    res = compress(model, "pq", calib=calib, Ls=9, Np=16, max_columns=256)
    assert isinstance(res.model[0], PQConv2d) and isinstance(res.model[4], PQConv2d)
    assert isinstance(res.model[8], PQLinear)
    assert isinstance(res.model[2], nn.Conv2d) and res.info["skipped"] == ["2"]  # depthwise stays dense
    assert set(res.formats) == {"0", "4", "8"}
    x = calib[0][0]
    assert res.model(x).shape == model(x).shape
    f = res.formats["4"]
    n = 16 * 8 * 9  # K=72, Ls=9 -> Ns=8
    assert f.cout == 16 and f.n_subspaces(n) == 8
    assert f.storage_bits(n) == 8 * 16 * 9 * 8 + 8 * 16 * 16 * 16 + 2 * 32
    assert res.info["weight_mse"] is None and res.info["output_mse"] > 0
    # more prototypes -> smaller layer-output error on the calibration columns
    fine = compress(model, "pq", calib=calib, Ls=9, Np=64, max_columns=256)
    assert fine.info["output_mse"] < res.info["output_mse"]
    again = compress(model, "pq", calib=calib, Ls=9, Np=16, max_columns=256)
    assert torch.equal(again.model[4].lut, res.model[4].lut)  # deterministic
    assert isinstance(model[0], nn.Conv2d)  # the original model is untouched
    with pytest.raises(ValueError):
        compress(model, "pq")  # no calib


# ---------------------------------------------------------------------------
# sequential calibration, BatchNorm re-estimation, fine-tuning
# ---------------------------------------------------------------------------


def _toy(n_batches=4, bs=16, seed=0):
    """A conv net with BatchNorm, and labels it can learn (its own argmax)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4)).eval()
    with torch.no_grad():
        model[-1].weight.mul_(20.0)  # confident outputs: a target worth distilling
    g = torch.Generator().manual_seed(seed + 1)
    xs = [torch.randn(bs, 3, 8, 8, generator=g) for _ in range(n_batches)]
    with torch.no_grad():
        calib = [(x, model(x).argmax(1)) for x in xs]
    return model, calib


def _spy_columns(monkeypatch):
    seen = []
    real = pq_mod.build_pq_layer

    def spy(mod, cols, *args, **kwargs):
        seen.append(cols.clone())
        return real(mod, cols, *args, **kwargs)

    monkeypatch.setattr(pq_mod, "build_pq_layer", spy)
    return seen


def test_sequential_calibration_feeds_pq_outputs(monkeypatch):
    model, calib = _toy()
    kw = dict(Ls=4, Np=4, max_columns=10 ** 6, bn_recalibrate=False)  # keep every column, in order
    seen = _spy_columns(monkeypatch)
    res = compress(model, "pq", calib=calib, sequential=True, **kw)
    seq = list(seen)
    seen.clear()
    compress(model, "pq", calib=calib, sequential=False, **kw)
    one_pass = list(seen)
    assert len(seq) == len(one_pass) == 3  # conv 0, conv 3, linear 7
    with torch.no_grad():
        orig = torch.cat([layer_columns(model[3], model[:3](x)) for x, _ in calib])
        via_pq = torch.cat([layer_columns(model[3], res.model[:3](x)) for x, _ in calib])
    assert isinstance(res.model[0], PQConv2d)
    assert torch.equal(seq[0], one_pass[0])  # the first layer sees the input either way
    assert torch.equal(one_pass[1], orig)  # one pass: the original model's activations
    assert torch.equal(seq[1], via_pq)  # sequential: what PQ layer 0 really feeds layer 3
    assert not torch.allclose(seq[1], orig, atol=1e-3)
    assert not torch.allclose(seq[2], one_pass[2], atol=1e-3)


def test_recalibrate_bn_is_the_mean_of_batch_statistics():
    model, calib = _toy()
    m = model[:2].eval()
    assert recalibrate_bn(m, calib) == 1
    with torch.no_grad():
        h = [model[0](x) for x, _ in calib]
    mean = torch.stack([t.mean((0, 2, 3)) for t in h]).mean(0)
    var = torch.stack([t.var((0, 2, 3), unbiased=True) for t in h]).mean(0)
    assert torch.allclose(m[1].running_mean, mean, atol=1e-5)
    assert torch.allclose(m[1].running_var, var, atol=1e-5)
    assert not m.training and m[1].momentum == 0.1


def _ce(model, calib):
    with torch.no_grad():
        return sum(float(F.cross_entropy(model(x), y)) for x, y in calib) / len(calib)


def test_finetune_reduces_training_loss():
    model, calib = _toy()
    kw = dict(Ls=4, Np=8, max_columns=512, bn_recalibrate=False, distill=False)
    base = compress(model, "pq", calib=calib, **kw)
    ft = compress(model, "pq", calib=calib, finetune_steps=60, lr=3e-2, **kw)
    losses = ft.info["finetune_loss"]
    assert len(losses) == 60
    assert sum(losses[-5:]) / 5 < 0.7 * losses[0]
    assert _ce(ft.model, calib) < 0.7 * _ce(base.model, calib)
    # distillation: the KL divergence to the original model goes down too
    kd = compress(model, "pq", calib=calib, finetune_steps=60, lr=3e-2, **dict(kw, distill=True))
    kl = kd.info["finetune_loss"]
    assert sum(kl[-5:]) / 5 < 0.5 * kl[0]
    assert isinstance(model[0], nn.Conv2d) and model[0].weight.requires_grad  # the original is untouched


def test_finetuned_module_is_argmin_plus_table_lookup_on_the_grids():
    model, calib = _toy()
    kw = dict(Ls=4, Np=4, proto_bits=6, lut_bits=5, max_columns=512)
    base = compress(model, "pq", calib=calib, **kw)
    ft = compress(model, "pq", calib=calib, finetune_steps=20, lr=1e-2, **kw)
    x = calib[0][0]
    inputs = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: inputs.__setitem__(n, (i[0], o)))
             for n, m in ft.model.named_modules() if isinstance(m, PQConv2d)]
    with torch.no_grad():
        ft.model(x)
    for h in hooks:
        h.remove()
    for name in ("0", "3"):
        pq, b = ft.model.get_submodule(name), base.model.get_submodule(name)
        assert pq.soft_temperature is None
        # on the configured grids, with the build-time steps; and actually trained
        for t, scale, qmax in ((pq.lut, pq.lut_scale, 15), (pq.prototypes, pq.proto_scale, 31)):
            q = t / scale
            assert torch.allclose(q, q.round(), atol=1e-4) and q.round().abs().max() <= qmax
        assert torch.equal(pq.lut_scale, b.lut_scale) and torch.equal(pq.proto_scale, b.proto_scale)
        assert not torch.equal(pq.lut, b.lut)
        # the forward is: nearest prototype per subspace, then sum of LUT rows
        xin, out = inputs[name]
        cols = layer_columns(model.get_submodule(name), xin)  # same geometry as the PQ layer
        xs = pq.split(cols).double()
        d = ((xs.unsqueeze(2) - pq.prototypes.double().unsqueeze(0)) ** 2).sum(-1)  # [N, Ns, Np]
        idx = pq.encode(cols)
        assert torch.allclose(d.gather(2, idx.unsqueeze(2)).squeeze(2), d.min(2).values, atol=1e-5)
        ref = pq.lut.double()[torch.arange(pq.n_subspaces), idx].sum(1) + pq.bias.double()
        y = out.permute(0, 2, 3, 1).reshape(-1, out.shape[1])
        assert torch.allclose(y.double(), ref, atol=1e-5)
        with torch.enable_grad():  # no training path left behind
            pq.train()
            assert torch.equal(pq(xin), out)
            pq.eval()


def test_soft_assignment_gradient_matches_autograd():
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(11, 3, 4, generator=g, requires_grad=True)
    p = torch.randn(3, 5, 4, generator=g, requires_grad=True)
    lut = torch.randn(3, 5, 6, generator=g)
    w = torch.randn(11, 6, generator=g)
    t = 2.5
    z = _SoftAssignGrad.apply(xs, p, lut, t, 4)  # chunks of 4 rows
    assert torch.equal(z, torch.zeros(11, 6))
    gx, gp = torch.autograd.grad((z * w).sum(), (xs, p))
    d = ((xs.unsqueeze(2) - p.unsqueeze(0)) ** 2).sum(-1)  # [N, Ns, Np]
    s = torch.einsum("nsp,spo->no", torch.softmax(-d / t, -1), lut)
    rx, rp = torch.autograd.grad((s * w).sum(), (xs, p))
    assert torch.allclose(gx, rx, atol=1e-5) and torch.allclose(gp, rp, atol=1e-5)
    # and the LUT gradient of the hard lookup is embedding_bag's
    idx = torch.randint(0, 5, (11, 3), generator=g)
    lut_p = lut.clone().requires_grad_()
    (gl,) = torch.autograd.grad((_LutLookup.apply(idx, lut_p) * w).sum(), lut_p)
    ref = F.embedding_bag(idx + torch.arange(3) * 5, lut_p.reshape(15, 6), mode="sum")
    (rl,) = torch.autograd.grad((ref * w).sum(), lut_p)
    assert torch.allclose(gl, rl, atol=1e-6)


def test_calib_generator_is_read_only_as_far_as_needed():
    model, calib = _toy(n_batches=2, bs=4)
    taken = []

    def stream():
        i = 0
        while True:  # endless
            taken.append(i)
            yield calib[i % 2]
            i += 1

    compress(model, "pq", calib=stream(), Ls=4, Np=4, max_columns=256, max_batches=2, sequential=True)
    assert len(taken) == 2  # two batches, reused by every pass
    taken.clear()
    res = compress(model, "pq", calib=stream(), Ls=4, Np=4, max_columns=256, max_batches=2, finetune_steps=3)
    assert len(taken) == 3 and len(res.info["finetune_loss"]) == 3  # 2 cached + 1 fresh
    taken.clear()
    compress(model, "pq", calib=stream(), Ls=4, Np=4, max_columns=256, bn_recalibrate=False)
    assert len(taken) == pq_mod.DEFAULT_CALIB_BATCHES  # max_batches None on a generator


def test_finetune_l1_distance_and_frozen_prototypes():
    model, calib = _toy(n_batches=2)
    kw = dict(Ls=4, Np=4, proto_bits=6, lut_bits=8, max_columns=256, distance="l1")
    base = compress(model, "pq", calib=calib, **kw)
    ft = compress(model, "pq", calib=calib, finetune_steps=5, lr=1e-2, proto_lr=0, **kw)
    assert len(ft.info["finetune_loss"]) == 5
    pq, b = ft.model[3], base.model[3]
    assert torch.equal(pq.prototypes, b.prototypes)  # proto_lr=0: frozen
    q = pq.lut / pq.lut_scale
    assert not torch.equal(pq.lut, b.lut) and torch.allclose(q, q.round(), atol=1e-4) and q.round().abs().max() <= 127
