"""INTb and truncation baselines: error bounds, level counts, dropped bits."""
import pytest
import torch

from workloads.compression.uniform import quantize_int_tensor, truncate_tensor


@pytest.fixture
def w():
    g = torch.Generator().manual_seed(0)
    return torch.randn(16, 8, 3, 3, generator=g) * torch.linspace(0.01, 1.0, 16).reshape(16, 1, 1, 1)


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_int_error_bound_and_levels(w, bits):
    w_hat, q, scale = quantize_int_tensor(w, bits)
    qmax = 2 ** (bits - 1) - 1
    assert w_hat.shape == w.shape
    assert scale.shape == (16, 1, 1, 1)  # one scale per output channel
    # round-to-nearest without clipping: error <= half a step of that channel
    assert ((w - w_hat).abs() <= scale / 2 + 1e-7).all()
    assert q.abs().max() <= qmax and torch.equal(q, q.round())
    # the largest magnitude of each channel maps exactly to +-qmax
    assert torch.equal(q.abs().reshape(16, -1).amax(1), torch.full((16,), float(qmax)))
    for o in range(16):
        assert len(torch.unique(q[o])) <= 2 * qmax + 1


def test_int_zero_channel():
    w = torch.zeros(2, 3)
    w[1] = torch.tensor([0.5, -1.0, 0.25])
    w_hat, _, _ = quantize_int_tensor(w, 8)
    assert torch.equal(w_hat[0], torch.zeros(3))
    assert torch.isfinite(w_hat).all()


@pytest.mark.parametrize("bits", [6, 4, 2])
def test_trunc_drops_low_bits(w, bits):
    w_hat, qt, scale = truncate_tensor(w, bits, source_bits=8)
    _, q8, _ = quantize_int_tensor(w, 8)
    drop = 8 - bits
    mag = qt.abs().to(torch.int64)
    assert (mag % (2 ** drop) == 0).all()  # the dropped bits are zero
    assert ((q8.abs() - qt.abs()) >= 0).all() and ((q8.abs() - qt.abs()) < 2 ** drop).all()  # toward zero
    assert torch.equal(torch.sign(qt[qt != 0]), torch.sign(q8[qt != 0]))
    assert torch.allclose(w_hat, qt * scale)


def test_trunc_8_of_8_is_int8(w):
    assert torch.equal(truncate_tensor(w, 8)[0], quantize_int_tensor(w, 8)[0])
