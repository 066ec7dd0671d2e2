"""Fashion-MNIST models beyond FashionCNN: ResNet-20 and a small DeiT-style ViT.

Both take 1x32x32 inputs: the 28x28 images, standardised as for FashionCNN,
zero-padded by 2 px on each side with the normalised value of a black pixel
(`workloads.datasets.pad_to_32`). Checkpoints are shipped next to fmnist_cnn.pt:

    resnet20_fmnist.pt / .json   ResNet-20 (He et al. 2016, option-B shortcuts), in_ch=1
    vit_fmnist.pt / .json        DeiT-tiny-style ViT, patch 4, dim 96, depth 6,
                                 3 heads, MLP 384 (64 patches + class token)

`load_fmnist_model(name)` builds the network and loads its checkpoint;
`FMNIST_MODELS` lists the names the table script and tests use.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional, Union

import torch
from torch import nn

from ..datasets import pad_to_32
from ..evaluate import EvalSet, evaluate
from .fmnist_cnn import CHECKPOINT_DIR, FashionCNN
from .resnet import resnet20
from .vit import VisionTransformer


def vit_fmnist(num_classes: int = 10, in_ch: int = 1) -> VisionTransformer:
    """DeiT-tiny in shape (pre-norm blocks, class token, GELU MLP x4, 3 heads)
    at a CPU-trainable size: 32x32 input, patch 4, dim 96, depth 6."""
    return VisionTransformer(img=32, patch=4, in_ch=in_ch, num_classes=num_classes,
                             dim=96, depth=6, heads=3, mlp_dim=384)


def resnet20_fmnist(num_classes: int = 10, in_ch: int = 1) -> nn.Module:
    return resnet20(in_ch=in_ch, num_classes=num_classes)


# name -> (builder, input size (H == W), checkpoint stem)
FMNIST_MODELS: dict[str, tuple[Callable[[], nn.Module], int, str]] = {
    "fmnist_cnn": (FashionCNN, 28, "fmnist_cnn"),
    "resnet20_fmnist": (resnet20_fmnist, 32, "resnet20_fmnist"),
    "vit_fmnist": (vit_fmnist, 32, "vit_fmnist"),
}


def checkpoint_paths(name: str) -> tuple[Path, Path]:
    stem = FMNIST_MODELS[name][2]
    return CHECKPOINT_DIR / f"{stem}.pt", CHECKPOINT_DIR / f"{stem}.json"


def prepare_images(name: str, x: torch.Tensor) -> torch.Tensor:
    """Standardised [N,1,28,28] images in the input size model `name` takes."""
    return pad_to_32(x) if FMNIST_MODELS[name][1] == 32 else x


def load_fmnist_model(name: str, path: Optional[Union[str, Path]] = None) -> nn.Module:
    """Build Fashion-MNIST model `name`, load its shipped (or given) checkpoint,
    return it in eval mode."""
    if name not in FMNIST_MODELS:
        raise KeyError(f"unknown Fashion-MNIST model {name!r}; known: {', '.join(FMNIST_MODELS)}")
    ckpt = Path(path) if path is not None else checkpoint_paths(name)[0]
    if not ckpt.is_file():
        raise FileNotFoundError(f"{name} checkpoint not found: {ckpt} "
                                f"(train it with scripts/train_fmnist_zoo.py --model {name})")
    model = FMNIST_MODELS[name][0]()
    model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    return model.eval()


def recorded_accuracy(name: str) -> dict:
    """The metadata JSON written next to the checkpoint by the training script."""
    return json.loads(checkpoint_paths(name)[1].read_text())


SUBSET_SIZE = 2000  # the fixed subset of the test set (its first images) tests score on


def subset_top1(name: str, model: Optional[nn.Module] = None, size: int = SUBSET_SIZE) -> float:
    """Top-1 of model `name` (default: its shipped checkpoint) on the first
    `size` test images (uncached evaluation)."""
    model = model if model is not None else load_fmnist_model(name)
    ds = EvalSet.fashion_mnist("test", size=size, input_size=FMNIST_MODELS[name][1])
    return evaluate(model, ds, cache_dir=False)["top1"]


def record_subset_accuracy(name: str) -> dict:
    """Write the checkpoint's accuracy on the fixed test subset into its
    metadata JSON ("subset_test_accuracy", "subset_size"); returns the metadata."""
    meta_path = checkpoint_paths(name)[1]
    meta = json.loads(meta_path.read_text())
    meta["subset_size"] = SUBSET_SIZE
    meta["subset_test_accuracy"] = round(subset_top1(name), 4)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return meta
