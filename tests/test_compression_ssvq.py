"""SSVQ: sign split, magnitude codebook, learnable signs, and progressive
freezing (frozen signs never change again)."""
import math

import pytest
import torch
import torch.nn as nn

from workloads.compression import compress
from workloads.compression._common import target_layers
from workloads.compression.ssvq import (SignFreezer, sign_of, ssvq_init_tensor, ssvq_reconstruct,
                                        ste_sign, train_ssvq)


def test_ste_sign_forward_and_gradient():
    x = torch.tensor([-0.3, 0.0, 2.0], requires_grad=True)
    y = ste_sign(x)
    assert y.tolist() == [-1.0, 1.0, 1.0]
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert x.grad.tolist() == [1.0, 2.0, 3.0]


def test_freezer_threshold_is_cosine():
    f = SignFreezer(torch.ones(3), interval=5, total_steps=100, flip_rate_start=0.4, flip_rate_end=0.1)
    assert f.threshold(0) == pytest.approx(0.4)
    assert f.threshold(50) == pytest.approx(0.25)
    assert f.threshold(100) == pytest.approx(0.1)
    assert f.threshold(25) == pytest.approx(0.1 + 0.15 * (1 + math.cos(math.pi / 4)))


def test_freezer_freezes_flippers_to_majority_and_keeps_them():
    f = SignFreezer(torch.ones(3), interval=4, total_steps=100, flip_rate_start=0.3, flip_rate_end=0.3)
    # position 0 flips 3 times in 4 steps and is mostly negative; 1 never flips; 2 flips once
    seq = [[-1, 1, 1], [-1, 1, -1], [1, 1, -1], [-1, 1, -1]]
    newly = [f.observe(torch.tensor(s, dtype=torch.float32)) for s in seq]
    assert newly == [0, 0, 0, 1]
    assert f.frozen.tolist() == [True, False, False]  # rates 0.75, 0, 0.25 vs threshold 0.3
    assert f.frozen_sign[0] == -1  # majority over the interval
    # whatever the latent does now, the effective sign of position 0 stays -1
    for _ in range(12):
        f.observe(torch.tensor([1.0, -1.0, 1.0]))
        assert f.effective(torch.tensor([1.0, 1.0, 1.0]))[0] == -1
    assert f.frozen[0]


def test_init_splits_signs_and_magnitudes():
    w = torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(0))
    st = ssvq_init_tensor(w, k=32, d=8, seed=0)
    assert (st["codebook"] >= 0).all()
    w_hat = ssvq_reconstruct(st["codebook"], sign_of(w), st)
    assert w_hat.shape == w.shape
    nz = w_hat != 0
    assert torch.equal(torch.sign(w_hat[nz]), torch.sign(w[nz]))
    # unsigned 8-bit codebook: integer multiples of max/255
    q = st["codebook"] / (st["codebook"].max() / 255)
    assert torch.allclose(q, q.round(), atol=1e-3)
    # every magnitude is a codebook entry
    assert torch.isin(w_hat.abs(), st["codebook"].flatten()).all()


def _tiny():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(16, 4))
    g = torch.Generator().manual_seed(1)
    calib = [(torch.randn(16, 8, 6, 6, generator=g), torch.randint(0, 4, (16,), generator=g)) for _ in range(3)]
    return model, calib


def test_frozen_signs_never_change_during_training():
    model, calib = _tiny()
    states = {n: ssvq_init_tensor(m.weight.detach(), k=16, d=8, seed=0) for n, m in target_layers(model)}
    history = []
    # a large sign learning rate makes signs flip, so that some freeze
    res = train_ssvq(model, states, calib, steps=24, lr_sign=0.05, freeze_interval=3,
                     flip_rate_start=0.2, flip_rate_end=0.05,
                     on_step=lambda step, signs, frozen: history.append((signs, frozen)))
    assert res["frozen_fraction"] > 0
    for name in states:
        for t in range(len(history)):
            signs_t, frozen_t = history[t][0][name], history[t][1][name]
            for later in history[t + 1:]:
                assert (later[1][name] >= frozen_t).all()  # once frozen, stays frozen
                assert torch.equal(later[0][name][frozen_t], signs_t[frozen_t])
        frozen = states[name]["frozen"]
        assert torch.equal(states[name]["sign"][frozen], history[-1][0][name][frozen])


def test_compress_ssvq_trains_and_is_deterministic():
    model, calib = _tiny()
    kw = dict(k=16, d=8, steps=6, lr_sign=0.02, lr_codebook=1e-3, freeze_interval=2)
    a = compress(model, "ssvq", calib=calib, seed=3, **kw)
    b = compress(model, "ssvq", calib=calib, seed=3, **kw)
    assert a.info["trained"] and len(a.info["finetune_loss"]) == 6
    for n in a.formats:
        assert torch.equal(dict(a.model.named_modules())[n].weight, dict(b.model.named_modules())[n].weight)
    untrained = compress(model, "ssvq", k=16, d=8)
    assert not untrained.info["trained"]
    assert not torch.equal(a.model[0].weight, untrained.model[0].weight)
    f = a.formats["0"]
    n = 16 * 8 * 9
    assert f.storage_bits(n) == n // 8 * 4 + n + 16 * 8 * 8 + 32  # 4-bit idx, 1 sign, codebook, scale
