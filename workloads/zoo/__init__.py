"""Model zoo: networks defined in the project (no torchvision, no downloads).

    model = build("resnet18", seed=0)          # random init, seeded
    x = default_input("resnet18", batch=1)     # seeded input of the right shape
    model = build("fmnist_cnn", pretrained=True)   # the trained checkpoint shipped in workloads/checkpoints

`MODELS` maps each name to its builder and input shape (C, H, W). Keyword
arguments of `build` go to the builder (e.g. num_classes; in_ch for the
networks that take it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from archsim.ir.errors import ArchsimError

from .mobilenet import mobilenetv2
from .resnet import resnet18, resnet20, resnet50
from .vit import deit_tiny


def _fmnist_cnn(**kw) -> nn.Module:
    # Imported here so the rest of the zoo works without that module.
    from .fmnist_cnn import FashionCNN

    return FashionCNN(**kw)


def _fmnist_cnn_pretrained(**kw) -> nn.Module:
    from .fmnist_cnn import load_fmnist_cnn

    if kw:
        raise ArchsimError(f"the trained fmnist_cnn takes no builder arguments (got {sorted(kw)})", field="model")
    return load_fmnist_cnn()  # torch.load(..., weights_only=True)


@dataclass(frozen=True)
class ZooEntry:
    builder: Callable[..., nn.Module]
    input_shape: tuple[int, int, int]  # (C, H, W) of one sample
    pretrained: Optional[Callable[..., nn.Module]] = None  # loads trained weights shipped with archsim


MODELS: dict[str, ZooEntry] = {
    "resnet18": ZooEntry(resnet18, (3, 224, 224)),
    "resnet20": ZooEntry(resnet20, (3, 32, 32)),
    "resnet50": ZooEntry(resnet50, (3, 224, 224)),
    "mobilenetv2": ZooEntry(mobilenetv2, (3, 224, 224)),
    "deit_tiny": ZooEntry(deit_tiny, (3, 224, 224)),
    "fmnist_cnn": ZooEntry(_fmnist_cnn, (1, 28, 28), pretrained=_fmnist_cnn_pretrained),
}


def _entry(name: str) -> ZooEntry:
    try:
        return MODELS[name]
    except KeyError:
        raise ArchsimError(f"unknown model {name!r}; known: {', '.join(MODELS)}", field="model") from None


def build(name: str, seed: int = 0, pretrained: bool = False, **kw) -> nn.Module:
    """Build zoo model `name` with weights drawn from `seed`, in eval mode.
    The global torch RNG state is left as it was. pretrained=True loads the
    trained weights shipped with archsim instead (fmnist_cnn: 92.7% top-1 on
    the Fashion-MNIST test set)."""
    entry = _entry(name)
    if pretrained:
        if entry.pretrained is None:
            have = ", ".join(n for n, e in MODELS.items() if e.pretrained is not None)
            raise ArchsimError(f"no trained weights for {name!r} (models with them: {have})", field="pretrained")
        return entry.pretrained(**kw).eval()
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
