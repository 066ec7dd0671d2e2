"""The compress() contract, for every method: a deep copy comes back, formats
name the compressed modules, info carries the model-wide accounting."""
import copy

import pytest
import torch
import torch.nn as nn

from archsim.ir.errors import ArchsimError
from workloads.compression import METHODS, CompressionError, CompressionResult, compress
from archsim.ir.formats import WeightFormat, format_from_dict


SMALL = {  # small settings so the suite stays fast
    "int": {}, "trunc": {}, "nm": {}, "vq": {"k": 16}, "mvq": {"k": 16, "d": 8},
    "ssvq": {"k": 16, "d": 8, "steps": 2, "freeze_interval": 1}, "pq": {"Np": 8, "max_columns": 128},
    "swis": {}, "aqlm": {"k": 16, "niter": 5}, "lcvq": {"k": 64, "residual_k": 8, "niter": 5},
}


@pytest.fixture(scope="module")
def model_and_calib():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    g = torch.Generator().manual_seed(1)
    calib = [(torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 10, (4,), generator=g)) for _ in range(2)]
    return model, calib


def test_registry_covers_all_methods():
    assert set(METHODS) == set(SMALL)
    with pytest.raises(ArchsimError, match="unknown compression method") as e:
        compress(nn.Linear(2, 2), "magic")
    assert e.value.field == "method"
    with pytest.raises(CompressionError) as e:
        compress(nn.Linear(2, 2), "vq", kk=3)  # a typo is an error, not silently ignored
    assert e.value.field == "kk" and isinstance(e.value, ValueError)
    with pytest.raises(CompressionError) as e:
        compress(nn.Linear(2, 2), "swis", policy="best")
    assert e.value.field == "policy"


@pytest.mark.parametrize("method", sorted(SMALL))
def test_contract(method, model_and_calib):
    model, calib = model_and_calib
    before = copy.deepcopy(model.state_dict())
    res = compress(model, method, calib=calib, seed=0, **SMALL[method])
    assert isinstance(res, CompressionResult)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{method} modified the input model ({k})"
    assert set(res.formats) == {"0", "2", "6"}
    for name, fmt in res.formats.items():
        assert isinstance(fmt, WeightFormat)
        assert format_from_dict(fmt.describe()) == fmt
    info = res.info
    for key in ("method", "params", "wall_s", "weight_mse", "bits_per_weight",
                "compression_vs_fp32", "compression_vs_int8", "layers"):
        assert key in info
    assert info["method"] == method
    n = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    bits = sum(f.storage_bits(dict(model.named_modules())[k].weight.numel()) for k, f in res.formats.items())
    assert info["n_weights"] == n and info["storage_bits"] == bits
    assert info["bits_per_weight"] == pytest.approx(bits / n)
    assert info["compression_vs_fp32"] == pytest.approx(32 * n / bits)
    assert info["compression_vs_int8"] == pytest.approx(8 * n / bits)
    out = res.model(calib[0][0])
    assert out.shape == (4, 10) and torch.isfinite(out).all()


def test_skip_layers_and_threads(model_and_calib):
    model, _ = model_and_calib
    prev = torch.get_num_threads()
    res = compress(model, "int", bits=4, skip_layers=("0", "6"), num_threads=prev + 1)
    assert torch.get_num_threads() == prev
    assert set(res.formats) == {"2"}
    assert torch.equal(res.model[0].weight, model[0].weight)
    with pytest.raises(ValueError):
        compress(model, "int", skip_layers=("nope",))
