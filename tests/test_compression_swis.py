"""SWIS: reconstructed weights use only their group's shared bit positions,
the exhaustive search finds the best set, policies meet the budget."""
import itertools
import math

import pytest
import torch
import torch.nn as nn

from workloads.compression import compress
from workloads.compression._common import pad_cols, to_rows
from workloads.compression.swis import (best_sets, policy_greedy, policy_uniform, position_sets,
                                        swis_project, swis_tensor)


def _w(shape=(8, 16, 3, 3), seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_position_sets_table():
    sets, vals, masks = position_sets(8, 3)
    assert sets.shape == (math.comb(8, 3), 3) and vals.shape == (56, 8)
    i = [tuple(s) for s in sets.tolist()].index((0, 2, 5))
    assert vals[i].tolist() == [0, 1, 4, 5, 32, 33, 36, 37]
    assert masks[i] == 0b100101


def _check_shared_bits(w, fmt, st):
    q = st["q_rows"].to(torch.int64)  # integer magnitudes, padded rows
    g = st["group_size"]
    qg = q.reshape(-1, g)
    assert torch.equal(q.float(), st["q_rows"])  # integers
    outside = qg & ~st["set_mask"].unsqueeze(1)
    assert (outside == 0).all()  # no bit outside the group's shared positions
    nbits = torch.tensor([bin(int(mk)).count("1") for mk in st["set_mask"]])
    assert torch.equal(nbits, st["n_per_group"])  # the set has N_g positions


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_reconstruction_uses_only_shared_bits(n):
    w = _w()
    w_hat, fmt, st = swis_tensor(w, group_size=8, shared_bits=n, weight_bits=8)
    assert w_hat.shape == w.shape
    _check_shared_bits(w, fmt, st)
    # w_hat = sign * q * per-channel scale, q from those rows
    rows = to_rows(w_hat.abs() / st["scale"])
    assert torch.allclose(rows, st["q_rows"][:, :rows.shape[1]], atol=1e-3)
    assert fmt.shared_bits == n and fmt.max_shared_bits == n


def test_all_bits_is_lossless_vs_b_bit_source():
    w = _w()
    w_hat, _, st = swis_tensor(w, group_size=4, shared_bits=8, weight_bits=8)
    s = st["scale"]
    assert torch.allclose(w_hat, torch.sign(w) * torch.round(w.abs() / s) * s)


def test_exhaustive_search_is_optimal():
    g = torch.Generator().manual_seed(2)
    t = torch.randint(0, 64, (12, 4), generator=g).float()
    best, err, q = best_sets(t, weight_bits=6, n=2, chunk_elems=64)  # tiny chunks: exercises chunking
    for r in range(12):
        brute = []
        for s in itertools.combinations(range(6), 2):
            reps = sorted({sum(b * 2 ** p for b, p in zip(bits, s))
                           for bits in itertools.product((0, 1), repeat=2)})
            brute.append(sum(min((v - x) ** 2 for v in reps) for x in t[r].tolist()))
        assert err[r].item() == pytest.approx(min(brute))
        assert ((t[r] - q[r]) ** 2).sum().item() == pytest.approx(min(brute))


def test_greedy_policy_hand_case():
    # errors for N = 0..2 of three groups; budget mean 1 -> 3 bits in all
    table = torch.tensor([[100.0, 10.0, 0.0],   # gains 90, 10
                          [50.0, 45.0, 0.0],    # gains 5, 45 -> clipped to 5, 5
                          [30.0, 0.0, 0.0]])    # gains 30, 0
    assert policy_greedy(table, 0, 1.0).tolist() == [2, 0, 1]
    assert policy_greedy(table, 0, 2.0).tolist() == [2, 2, 2]
    assert policy_uniform(table, 0, 1).tolist() == [1, 1, 1]
    with pytest.raises(ValueError):
        policy_uniform(table, 0, 1.5)


def test_greedy_meets_budget_and_beats_uniform():
    w = _w((16, 32, 3, 3), seed=4)
    _, fu, su = swis_tensor(w, group_size=8, shared_bits=2, policy="uniform")
    w_hat, fg, sg = swis_tensor(w, group_size=8, shared_bits=2, policy="greedy", n_min=0, n_max=4)
    ng = sg["n_per_group"]
    assert ng.sum().item() == 2 * ng.numel()  # the budget is used exactly
    assert fg.shared_bits == pytest.approx(2.0) and fg.max_shared_bits == int(ng.max())
    assert fg.group_n_bits == 3  # N in 0..4
    _check_shared_bits(w, fg, sg)
    t = pad_cols(to_rows(torch.round(w.abs() / sg["scale"])), 8)
    err_u = ((t - su["q_rows"]) ** 2).sum()
    err_g = ((t - sg["q_rows"]) ** 2).sum()
    assert err_g < err_u


def test_determinism_and_format():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(12, 8, 3), nn.Flatten(), nn.Linear(8, 4))
    a = compress(model, "swis", group_size=4, shared_bits=3)
    b = compress(model, "swis", group_size=4, shared_bits=3)
    assert torch.equal(a.model[0].weight, b.model[0].weight)
    f = a.formats["0"]
    n = 8 * 12 * 9  # runs of 12 = 3 groups of 4
    assert f.storage_bits(n) == n * 4 + (n // 4) * 3 * 3 + 8 * 32


def test_retraining_stays_on_the_shared_bits():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 4))
    g = torch.Generator().manual_seed(1)
    calib = [(torch.randn(8, 8, 6, 6, generator=g), torch.randint(0, 4, (8,), generator=g)) for _ in range(2)]
    base = compress(model, "swis", group_size=8, shared_bits=2)
    res = compress(model, "swis", calib=calib, group_size=8, shared_bits=2, retrain_steps=5, lr=1e-2)
    w = res.model[0].weight
    assert not torch.equal(w, base.model[0].weight)  # retraining moved weights
    _, _, st = swis_tensor(model[0].weight.detach(), group_size=8, shared_bits=2)
    q = pad_cols(to_rows(w.abs() / st["scale"]), 8)
    qi = torch.round(q).to(torch.int64)
    assert torch.allclose(q, qi.float(), atol=1e-3)
    assert ((qi.reshape(-1, 8) & ~st["set_mask"].unsqueeze(1)) == 0).all()
    # the STE projection passes gradients
    lat = model[0].weight.detach().clone().requires_grad_(True)
    swis_project(lat, st).sum().backward()
    assert lat.grad is not None and lat.grad.abs().sum() > 0
