"""The shared compression-aware fine-tuning loop (workloads/compression/finetune.py)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from workloads.compression import check_storage, compress, finetune_result


def _problem(seed=0, n=512):
    """A tiny separable 4-class problem and an MLP trained on it for a moment."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 16, generator=g)
    w = torch.randn(16, 4, generator=g)
    y = (x @ w).argmax(1)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    batches = [(x[i:i + 64], y[i:i + 64]) for i in range(0, n, 64)]
    return model, batches, x, y


@torch.no_grad()
def _loss(model, x, y):
    model.eval()
    return float(nn.functional.cross_entropy(model(x), y))


CASES = [
    ("vq", dict(k=4, d=4)),
    ("mvq", dict(n=2, m=4, k=4, d=4)),
    ("ssvq", dict(k=4, d=4, steps=0)),
    ("swis", dict(group_size=8, shared_bits=1)),
    ("trunc", dict(bits=2)),
    ("int", dict(bits=2)),
    ("nm", dict(n=2, m=4)),
    ("pq", dict(Ls=4, Np=4, max_batches=4)),
]


def test_finetune_lowers_the_loss():
    model, batches, x, y = _problem()
    res = compress(model, "vq", k=4, d=8)
    before = _loss(res.model, x, y)
    ft = finetune_result(res, model, batches, steps=60, lr=1e-2, lr_rest=1e-2, distill=False, progress=False)
    after = _loss(ft.model, x, y)
    assert after < 0.8 * before, (before, after)
    assert len(ft.info["finetune_loss"]) == 60
    # the input result is untouched
    assert _loss(res.model, x, y) == pytest.approx(before)


@pytest.mark.parametrize("method,params", CASES, ids=[c[0] for c in CASES])
def test_bits_after_finetune_equal_the_format_accounting(method, params):
    model, batches, x, y = _problem()
    res = compress(model, method, calib=batches, **params)
    ft = finetune_result(res, model, batches, steps=12, lr=1e-2, progress=False,
                         reassign_every=5, freeze_interval=3)
    n = ft.info["n_weights"]
    accounted = sum(f.storage_bits(ft.info["layers"][k]["n_weights"]) for k, f in ft.formats.items())
    assert ft.info["storage_bits"] == accounted
    assert ft.info["bits_per_weight"] == pytest.approx(accounted / n)
    assert ft.info["bits_per_weight"] == pytest.approx(res.info["bits_per_weight"])
    check_storage(ft)  # the final weights are what the formats store
    assert _loss(ft.model, x, y) < 10


def test_check_storage_catches_weights_off_the_format():
    model, batches, _, _ = _problem()
    ft = finetune_result(compress(model, "vq", k=4, d=4), model, batches, steps=3, progress=False)
    with torch.no_grad():
        ft.model[0].weight[0, 0] += 0.123
    with pytest.raises(AssertionError):
        check_storage(ft)


def test_ssvq_freezing_keeps_one_sign_per_weight():
    model, batches, _, _ = _problem()
    res = compress(model, "ssvq", k=4, d=4, steps=0)
    ft = finetune_result(res, model, batches, steps=20, lr=5e-2, freeze_interval=2, progress=False)
    assert 0.0 <= ft.info["frozen_fraction"] <= 1.0
    for name, st in ft.state.items():
        assert st["sign"].shape == st["frozen"].shape == model.get_submodule(name).weight.shape
        assert set(st["sign"].unique().tolist()) <= {-1.0, 1.0}


def test_mvq_finetune_keeps_the_mask():
    model, batches, _, _ = _problem()
    res = compress(model, "mvq", n=2, m=4, k=4, d=4)
    ft = finetune_result(res, model, batches, steps=10, lr=1e-2, reassign_every=4, progress=False)
    for name in res.state:
        assert torch.equal(res.state[name]["mask"], ft.state[name]["mask"])
    check_storage(ft)  # zero wherever the N:M mask is, weights == mask * C[idx]
