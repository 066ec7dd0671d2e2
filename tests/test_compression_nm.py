"""N:M pruning: the mask is really N:M along the input channels, keeps the
largest magnitudes, and the format counts values + mask."""
import pytest
import torch
import torch.nn as nn

from workloads.compression import compress
from workloads.compression._common import to_rows
from workloads.compression.nm import nm_mask_rows, nm_prune_tensor


@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (2, 8)])
def test_mask_is_n_of_m(n, m):
    g = torch.Generator().manual_seed(1)
    w = torch.randn(6, 16, 3, 3, generator=g)
    pruned, mask, _ = nm_prune_tensor(w, n, m)
    groups = mask.reshape(mask.shape[0], -1, m)
    assert (groups.sum(-1) == n).all()
    # the kept ones are the largest |w| of their group
    rows = to_rows(w).reshape(mask.shape[0], -1, m).abs()
    kept_min = torch.where(groups, rows, torch.inf).amin(-1)
    dropped_max = torch.where(groups, -torch.inf, rows).amax(-1)
    assert (kept_min >= dropped_max).all()
    # zeros in the weight exactly where the mask is off, in the weight's own layout
    assert torch.equal(to_rows(pruned) != 0, mask)


def test_mask_runs_along_input_channels():
    # one output channel, 1x1 kernel: the run is I; channels 0..3 form one group
    w = torch.tensor([1.0, 4.0, 2.0, 3.0, 8.0, 5.0, 6.0, 7.0]).reshape(1, 8, 1, 1)
    pruned, _, _ = nm_prune_tensor(w, 2, 4)
    assert pruned.flatten().tolist() == [0, 4, 0, 3, 8, 0, 0, 7]


def test_padding_never_kept_over_real_weights():
    # I=6 with M=4: the second group has 2 real weights + 2 padding; keep both real ones
    w = torch.tensor([[0.0, 0.0, 0.0, 1.0, 1e-6, -1e-6]])
    pruned, mask, _ = nm_prune_tensor(w, 2, 4)
    # first group: the 1 and (stable tie-break) the first zero; second: both real weights
    assert mask.tolist() == [[True, False, False, True, True, True, False, False]]
    assert pruned.shape == w.shape and pruned[0, 4:].ne(0).all()


def test_nm_mask_rows_rejects_bad_shapes():
    with pytest.raises(ValueError):
        nm_mask_rows(torch.zeros(2, 6), 2, 4)


def test_compress_nm_format_and_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 4 * 4, 10))
    res = compress(model, "nm", n=2, m=4, value_bits=8, mask_encoding="combinatorial")
    conv = res.model[0].weight
    assert (to_rows(conv).reshape(-1, 4).ne(0).sum(1) <= 2).all()
    f = res.formats["0"]
    n = conv.numel()
    assert f.storage_bits(n) == n // 4 * (2 * 8 + 3) + 16 * 32
    assert res.info["bits_per_weight"] == pytest.approx(
        sum(res.formats[k].storage_bits(v["n_weights"]) for k, v in res.info["layers"].items())
        / res.info["n_weights"])
    assert (model[0].weight != 0).all()  # the original model is not modified
