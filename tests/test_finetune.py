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


def _top1(model, x, y):
    with torch.no_grad():
        return float((model.eval()(x).argmax(1) == y).float().mean())


def test_validation_split_keeps_the_best_step_when_the_loop_overfits():
    """16 calibration images with shuffled labels: the loop learns them and
    loses the task (the third-party MNIST case: 97.8% on the calibration
    images, 13% on others). With a held-apart split it returns the best
    step it saw, never worse than the post-training model there."""
    model, _, x, y = _problem()
    res = compress(model, "trunc", bits=2)
    g = torch.Generator().manual_seed(1)
    calib = [(x[:16], y[:16][torch.randperm(16, generator=g)])]
    val, unseen = (x[256:384], y[256:384]), (x[384:], y[384:])
    post = _top1(res.model, *val)
    kw = dict(steps=60, lr=5e-2, lr_rest=5e-2, distill=False, progress=False)
    blind = finetune_result(res, model, calib, **kw)
    assert _top1(blind.model, *val) < post - 0.05  # the overfitting this guards against happens
    ft = finetune_result(res, model, calib, val=val, val_every=5, **kw)
    curve = ft.info["finetune_val"]
    assert curve[0] == [0, post] and curve[-1][0] == 60 and len(curve) == 13
    best_step, best = max(curve, key=lambda c: (c[1], -c[0]))
    assert ft.info["finetune_best_step"] == best_step
    assert _top1(ft.model, *val) == pytest.approx(best) and best >= post
    assert _top1(ft.model, *unseen) > _top1(blind.model, *unseen)
    check_storage(ft)


def test_validation_returns_the_post_training_model_when_nothing_beats_it():
    model, _, x, y = _problem()
    res = compress(model, "int", bits=4)
    calib = [(x[:8], (y[:8] + 1) % 4)]  # every label wrong: each step makes the model worse
    ft = finetune_result(res, model, calib, steps=20, lr=5e-2, lr_rest=5e-2, distill=False, progress=False,
                         val=(x[256:], y[256:]), val_every=4)
    assert ft.info["finetune_best_step"] == 0
    for a, b in zip(ft.model.state_dict().values(), res.model.state_dict().values()):
        assert torch.equal(a, b)


def test_compress_finetuned_caches_the_fine_tuned_model(tmp_path):
    from workloads.compression.finetune import compress_finetuned

    model, batches, x, y = _problem()
    kw = dict(steps=8, val=(x[256:384], y[256:384]), cache_dir=tmp_path, progress=False, lr=1e-2)
    first = compress_finetuned(model, "vq", dict(k=4, d=4), batches, **kw)
    again = compress_finetuned(model, "vq", dict(k=4, d=4), batches, **kw)
    assert not first.info["finetune_cached"] and again.info["finetune_cached"]
    assert len(list(tmp_path.rglob("*.pt"))) == 1
    with torch.no_grad():
        assert torch.equal(first.model(x), again.model(x))
    check_storage(again)  # the compression state (codebooks, indices) came back with the weights
    assert again.info["finetune_best_step"] == first.info["finetune_best_step"]
    # another budget, seed or params is another entry
    compress_finetuned(model, "vq", dict(k=4, d=4), batches, **{**kw, "steps": 9})
    compress_finetuned(model, "vq", dict(k=4, d=4), batches, seed=1, **kw)
    compress_finetuned(model, "vq", dict(k=8, d=4), batches, **kw)
    assert len(list(tmp_path.rglob("*.pt"))) == 4
