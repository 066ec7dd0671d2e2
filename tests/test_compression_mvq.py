"""MVQ: masked k-means ignores pruned positions, masks are N:M, the result
is mask * C[idx], and codebook fine-tuning keeps the mask."""
import pytest
import torch
import torch.nn as nn

from workloads.compression import compress
from workloads.compression._common import to_rows
from workloads.compression.nm import nm_prune_tensor
from workloads.compression.mvq import masked_assign, masked_centroids, masked_kmeans, mvq_tensor


def test_centroid_is_mean_of_unpruned_entries():
    x = torch.tensor([[1.0, 100.0], [3.0, 5.0], [2.0, -7.0]])
    m = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    c, counts = masked_centroids(x * m, m, torch.zeros(3, dtype=torch.long), 1)
    # position 0: (1+3)/2 (row 2 pruned); position 1: (5-7)/2 (row 0's 100 pruned)
    assert c.tolist() == [[2.0, -1.0]]
    assert counts.tolist() == [3]
    # and the full k-means with k=1 lands on the same point
    ck, idx = masked_kmeans(x, m, 1, seed=0)
    assert torch.allclose(ck, torch.tensor([[2.0, -1.0]]))


def test_position_nobody_keeps_keeps_previous_value():
    x = torch.tensor([[1.0, 9.0]])
    m = torch.tensor([[1.0, 0.0]])
    c, _ = masked_centroids(x * m, m, torch.zeros(1, dtype=torch.long), 1, prev=torch.tensor([[0.0, 4.0]]))
    assert c.tolist() == [[1.0, 4.0]]


def test_assignment_ignores_pruned_positions():
    x = torch.tensor([[1.0, 100.0]])
    m = torch.tensor([[1.0, 0.0]])
    codebook = torch.tensor([[1.0, 0.0], [50.0, 100.0]])
    idx, dist = masked_assign(x * m, m, codebook)
    assert idx.tolist() == [0]  # unmasked L2 would pick codeword 1
    assert dist.tolist() == [0.0]


def test_masked_kmeans_blind_to_pruned_values():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 8, generator=g)
    m = (torch.rand(500, 8, generator=g) > 0.5).float()
    garbage = torch.where(m > 0, x, torch.randn(500, 8, generator=g) * 1000)
    c1, i1 = masked_kmeans(x, m, 16, seed=3)
    c2, i2 = masked_kmeans(garbage, m, 16, seed=3)
    assert torch.equal(i1, i2) and torch.allclose(c1, c2)
    # it does better (masked error) than plain k-means' assignment on the same codebook
    c3, i3 = masked_kmeans(x, torch.ones_like(m), 16, seed=3)
    err_masked = (m * (x - c1[i1]) ** 2).sum()
    err_plain = (m * (x - c3[i3]) ** 2).sum()
    assert err_masked < err_plain


@pytest.mark.parametrize("n,m,d", [(2, 4, 16), (1, 4, 8), (2, 8, 4)])
def test_mvq_tensor(n, m, d):
    w = torch.randn(32, 24, 3, 3, generator=torch.Generator().manual_seed(5))
    w_hat, fmt, st = mvq_tensor(w, n=n, m=m, k=32, d=d, seed=1)
    assert w_hat.shape == w.shape
    mask = st["mask"].reshape(-1, m)
    assert (mask.sum(1) == n).all()  # N:M in the padded layout
    rows = to_rows(w_hat)
    padded_mask = st["mask"].reshape(st["rows_shape"])[:, :rows.shape[1]]
    assert (rows[padded_mask == 0] == 0).all()  # pruned -> exactly zero
    rec = (st["codebook"][st["indices"]] * st["mask"]).reshape(st["rows_shape"])[:, :rows.shape[1]]
    assert torch.equal(rows, rec)
    assert fmt.n == n and fmt.m == m and fmt.n_vectors(w.numel()) == st["indices"].numel()
    # deterministic
    assert torch.equal(mvq_tensor(w, n=n, m=m, k=32, d=d, seed=1)[0], w_hat)


def test_compress_mvq_with_finetune_keeps_mask():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(16, 4))
    g = torch.Generator().manual_seed(1)
    calib = [(torch.randn(8, 8, 6, 6, generator=g), torch.randint(0, 4, (8,), generator=g)) for _ in range(2)]
    base = compress(model, "mvq", k=16, d=8, seed=0)
    tuned = compress(model, "mvq", calib=calib, k=16, d=8, seed=0, finetune_steps=6, lr=1e-2)
    w0, w1 = base.model[0].weight, tuned.model[0].weight
    _, mask, _ = nm_prune_tensor(model[0].weight.detach(), 2, 4, pad_multiple=8)
    assert (to_rows(w1)[~mask] == 0).all()  # pruned positions got no gradient: still zero
    assert (to_rows(w1).reshape(-1, 4).ne(0).sum(1) <= 2).all()
    assert not torch.allclose(w0, w1)  # the codebook moved
    assert len(tuned.info["finetune_loss"]) == 6
    assert tuned.formats["0"] == base.formats["0"]
    with pytest.raises(ValueError):
        compress(model, "mvq", finetune_steps=2)  # needs calib


def test_masked_assign_matches_brute_force():
    g = torch.Generator().manual_seed(9)
    m = (torch.rand(3000, 16, generator=g) > 0.5).float()
    x = torch.randn(3000, 16, generator=g) * m
    codebook = torch.randn(64, 16, generator=g)
    idx, dist = masked_assign(x, m, codebook)
    full = (m.unsqueeze(1) * (x.unsqueeze(1) - codebook.unsqueeze(0)) ** 2).sum(-1)  # [V, k]
    assert torch.allclose(full.gather(1, idx[:, None]).squeeze(1), full.min(1).values, atol=1e-4)
    assert torch.allclose(dist, full.min(1).values, atol=1e-4)
