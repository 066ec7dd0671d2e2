"""Plain VQ: layout along the input channels, codeword reconstruction,
padding, determinism and the format it reports."""
import pytest
import torch
import torch.nn as nn

from workloads.compression import compress
from workloads.compression._common import from_rows, to_rows
from workloads.compression.vq import vq_tensor


def test_rows_layout_round_trip():
    w = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    rows = to_rows(w)
    assert rows.shape == (2 * 2 * 2, 3)
    assert rows[0].tolist() == w[0, :, 0, 0].tolist()  # a row is the input-channel vector
    assert torch.equal(from_rows(rows, w.shape), w)
    dw = torch.randn(4, 1, 3, 3)  # depthwise: run along the kernel window
    assert to_rows(dw).shape == (4, 9) and torch.equal(from_rows(to_rows(dw), dw.shape), dw)


def test_subvectors_run_along_input_channels():
    # every input-channel vector (length 4 = d) is one of 3 patterns; with k=3
    # VQ must be exact. Cut along any other direction it would not be.
    pats = torch.tensor([[127.0, -127.0, 0.0, 64.0], [1.0, 2.0, 3.0, 4.0], [-5.0, 0.0, 5.0, 0.0]]) / 127
    g = torch.Generator().manual_seed(0)
    choice = torch.randint(0, 3, (8, 3, 3), generator=g)
    w = pats[choice].permute(0, 3, 1, 2).contiguous()  # [O=8, I=4, 3, 3]
    w_hat, fmt, st = vq_tensor(w, k=3, d=4, codebook_bits=8, seed=0)
    assert torch.allclose(w_hat, w, atol=1e-6)
    assert fmt.k == 3 and fmt.d == 4


@pytest.mark.parametrize("shape", [(16, 8, 3, 3), (10, 24), (8, 3, 3, 3), (6, 1, 3, 3)])
def test_reconstruction_uses_codewords(shape):
    g = torch.Generator().manual_seed(2)
    w = torch.randn(shape, generator=g)
    w_hat, fmt, st = vq_tensor(w, k=16, d=4, codebook_bits=8, seed=3)
    assert w_hat.shape == w.shape
    cb, idx = st["codebook"], st["indices"]
    rows = to_rows(w)
    padded = -(-rows.shape[1] // 4) * 4
    assert idx.numel() == rows.shape[0] * padded // 4  # padded sub-vectors are indexed too
    assert fmt.n_vectors(w.numel()) == idx.numel()
    rec = cb[idx].reshape(rows.shape[0], padded)[:, :rows.shape[1]]
    assert torch.equal(from_rows(rec, w.shape), w_hat)
    # 8-bit symmetric codebook: integer multiples of one scale, |q| <= 127
    scale = cb.abs().max() / 127
    q = cb / scale
    assert torch.allclose(q, q.round(), atol=1e-4)
    # each sub-vector takes its nearest codeword
    vecs = torch.nn.functional.pad(rows, (0, padded - rows.shape[1])).reshape(-1, 4)
    d2 = torch.cdist(vecs, cb)
    assert torch.allclose(d2.gather(1, idx[:, None]).squeeze(1), d2.min(1).values, atol=1e-5)


def test_vq_is_deterministic_and_seeded():
    w = torch.randn(64, 32, 3, 3, generator=torch.Generator().manual_seed(4))
    a = vq_tensor(w, k=32, d=4, seed=7)[0]
    b = vq_tensor(w, k=32, d=4, seed=7)[0]
    c = vq_tensor(w, k=32, d=4, seed=8)[0]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_compress_vq_accounting():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(16, 32, 3), nn.Flatten(), nn.Linear(32, 8))
    res = compress(model, "vq", k=64, d=4, codebook_bits=8)
    assert set(res.formats) == {"0", "2"}
    f = res.formats["0"]
    n = 32 * 16 * 9
    assert f.storage_bits(n) == n // 4 * 6 + 64 * 4 * 8 + 32  # 6-bit indices, codebook, FP32 scale
    assert res.info["n_weights"] == n + 32 * 8
    # the linear layer has 64 sub-vectors of 4 <= k: its codebook is the data itself
    assert res.formats["2"].k == 64
    assert res.info["weight_mse"] > 0 and res.info["wall_s"] > 0
    assert not torch.equal(res.model[0].weight, model[0].weight)
