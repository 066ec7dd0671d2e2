"""Model zoo: networks defined in the project (no torchvision, no downloads).

    model = build("resnet18", seed=0)          # random init, seeded
    x = default_input("resnet18", batch=1)     # seeded input of the right shape

`MODELS` maps each name to its builder and input shape (C, H, W). Keyword
arguments of `build` go to the builder (e.g. num_classes; in_ch for the
networks that take it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from archsim.errors import ArchsimError

from .mobilenet import mobilenetv2
from .resnet import resnet18, resnet20, resnet50
from .vit import deit_tiny


def _fmnist_cnn(**kw) -> nn.Module:
    # Imported here so the rest of the zoo works without that module.
    from .fmnist_cnn import FashionCNN

    return FashionCNN(**kw)


@dataclass(frozen=True)
class ZooEntry:
    builder: Callable[..., nn.Module]
    input_shape: tuple[int, int, int]  # (C, H, W) of one sample


MODELS: dict[str, ZooEntry] = {
    "resnet18": ZooEntry(resnet18, (3, 224, 224)),
    "resnet20": ZooEntry(resnet20, (3, 32, 32)),
    "resnet50": ZooEntry(resnet50, (3, 224, 224)),
    "mobilenetv2": ZooEntry(mobilenetv2, (3, 224, 224)),
    "deit_tiny": ZooEntry(deit_tiny, (3, 224, 224)),
    "fmnist_cnn": ZooEntry(_fmnist_cnn, (1, 28, 28)),
}


def _entry(name: str) -> ZooEntry:
    try:
        return MODELS[name]
    except KeyError:
        raise ArchsimError(f"unknown model {name!r}; known: {', '.join(MODELS)}", field="model") from None


def build(name: str, seed: int = 0, **kw) -> nn.Module:
    """Build zoo model `name` with weights drawn from `seed`, in eval mode.
    The global torch RNG state is left as it was."""
    entry = _entry(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = entry.builder(**kw)
    return model.eval()


def default_input(name: str, batch: int = 1, seed: int = 0, in_ch: int | None = None) -> torch.Tensor:
    """A seeded standard-normal input batch for model `name`; `in_ch`
    overrides the channel count for a model built with a different in_ch."""
    c, h, w = _entry(name).input_shape
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, in_ch or c, h, w, generator=gen)


__all__ = ["MODELS", "ZooEntry", "build", "default_input"]
