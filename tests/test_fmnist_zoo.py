"""The three shipped Fashion-MNIST checkpoints: they load, are small, and
score within 0.5 point of their recorded accuracy on the fixed test subset
(the first 2000 test images; recorded by scripts/train_fmnist_zoo.py).
No training here."""
from __future__ import annotations

import json

import pytest
import torch

from workloads.datasets import fashion_mnist_available
from workloads.zoo.fmnist_models import (FMNIST_MODELS, SUBSET_SIZE, checkpoint_paths, load_fmnist_model,
                                         pad_to_32, subset_top1)

NAMES = list(FMNIST_MODELS)


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_ships_and_loads(name):
    pt, meta_path = checkpoint_paths(name)
    assert pt.is_file(), f"{pt} missing: train it with scripts/train_fmnist_zoo.py --model {name}"
    assert pt.stat().st_size < 5 * 1024 * 1024
    meta = json.loads(meta_path.read_text())
    assert meta["test_set_size"] == 10000 and meta["subset_size"] == SUBSET_SIZE
    model = load_fmnist_model(name)
    size = FMNIST_MODELS[name][1]
    out = model(torch.zeros(2, 1, size, size))
    assert out.shape == (2, 10) and not model.training


def test_pad_to_32_keeps_the_image_centred():
    x = torch.randn(3, 1, 28, 28)
    p = pad_to_32(x)
    assert p.shape == (3, 1, 32, 32) and torch.equal(p[:, :, 2:30, 2:30], x)


@pytest.mark.skipif(not fashion_mnist_available(),
                    reason="Fashion-MNIST not installed: apt-get install dataset-fashion-mnist")
@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_scores_its_recorded_accuracy(name):
    meta = json.loads(checkpoint_paths(name)[1].read_text())
    acc = subset_top1(name)
    assert abs(acc - meta["subset_test_accuracy"]) <= 0.005, (acc, meta["subset_test_accuracy"])
