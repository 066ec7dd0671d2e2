"""PQ of activations (PQA): the LUT module computes exactly the product of
the selected prototypes with the weights, equals the convolution when the
activations are prototypes, and the format counts prototypes + LUTs."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from workloads.compression import compress
from workloads.compression.pq import PQConv2d, PQLinear, build_pq_layer, layer_columns, weight_matrix


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
