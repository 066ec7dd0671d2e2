"""The shared, cached evaluator (workloads/evaluate.py)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from workloads.evaluate import EvalSet, evaluate, model_digest


def _setup():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (300,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 10)).eval()
    return model, EvalSet(x, y, name="toy")


def test_cache_returns_the_fresh_numbers(tmp_path):
    model, ds = _setup()
    fresh = evaluate(model, ds, cache_dir=False)
    first = evaluate(model, ds, cache_dir=tmp_path)
    again = evaluate(model, ds, cache_dir=tmp_path)
    assert not fresh["cached"] and not first["cached"] and again["cached"]
    for key in ("top1", "top5", "loss", "n"):
        assert fresh[key] == first[key] == again[key]
    assert 0 <= fresh["top1"] <= fresh["top5"] <= 1
    # by hand
    with torch.no_grad():
        out = model(ds.images)
    assert fresh["top1"] == pytest.approx(float((out.argmax(1) == ds.labels).float().mean()))
    assert fresh["loss"] == pytest.approx(float(nn.functional.cross_entropy(out, ds.labels)), rel=1e-5)


def test_cache_misses_when_a_weight_or_the_data_changes(tmp_path):
    model, ds = _setup()
    evaluate(model, ds, cache_dir=tmp_path)
    d0 = model_digest(model)
    with torch.no_grad():
        model[4].weight[3, 7] += 1e-3
    assert model_digest(model) != d0
    changed = evaluate(model, ds, cache_dir=tmp_path)
    assert not changed["cached"]
    assert changed == {**evaluate(model, ds, cache_dir=False), "cached": False}
    # a buffer (BN statistics) counts too
    with torch.no_grad():
        model[1].running_mean[0] += 0.5
    assert not evaluate(model, ds, cache_dir=tmp_path)["cached"]
    other = EvalSet(ds.images.clone(), ds.labels.clone(), name="toy")
    other.labels[0] = (other.labels[0] + 1) % 10
    assert not evaluate(model, other, cache_dir=tmp_path)["cached"]
    assert evaluate(model, ds, cache_dir=tmp_path)["cached"]


def test_env_var_sets_the_cache_dir(tmp_path, monkeypatch):
    model, ds = _setup()
    monkeypatch.setenv("ARCHSIM_EVAL_CACHE", str(tmp_path / "c"))
    evaluate(model, (ds.images, ds.labels))
    assert any((tmp_path / "c").rglob("*.json"))
    assert evaluate(model, (ds.images, ds.labels))["cached"]
