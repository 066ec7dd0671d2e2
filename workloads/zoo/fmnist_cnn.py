"""FashionCNN: a compact CNN for 1x28x28 Fashion-MNIST images (10 classes).

Design constraints (why it looks like this):
  - Only Conv2d / BatchNorm2d / ReLU / MaxPool2d / AdaptiveAvgPool2d / Flatten /
    Linear, and a straight-line forward(), so torch.fx can trace it and the
    compiler sees plain conv/linear layers.
  - Conv channel counts are multiples of 16 (32, 64, 128) so vector-quantisation
    sub-vectors of length 4/8/16 along the input-channel axis divide evenly.
    conv1 has a single input channel; that is inherent to grayscale input.
  - Convs have no bias because each is followed by BatchNorm (a bias would be
    cancelled by the BN mean subtraction).
  - ReLU is not in-place so forward hooks / activation capture see the
    pre-activation tensors unmodified.

Layer shapes (input 1x28x28):
  conv1 3x3  1->32   @28x28 -> pool1 -> 14x14
  conv2 3x3 32->64   @14x14 -> pool2 -> 7x7
  conv3 3x3 64->128  @7x7
  conv4 3x3 128->128 @7x7  -> global avg pool -> fc 128->10
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn as nn

NUM_CLASSES = 10
# Resolved relative to this file so it works from any working directory.
CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
DEFAULT_CHECKPOINT = CHECKPOINT_DIR / "fmnist_cnn.pt"
DEFAULT_METADATA = CHECKPOINT_DIR / "fmnist_cnn.json"


class FashionCNN(nn.Module):
    """4 conv + 1 linear, ~242k parameters. Expects inputs standardised with
    workloads.datasets.FMNIST_MEAN / FMNIST_STD (see normalize_images)."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)

        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)

        self.conv3 = nn.Conv2d(64, 128, kernel_size=3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(128)
        self.relu3 = nn.ReLU()

        self.conv4 = nn.Conv2d(128, 128, kernel_size=3, padding=1, bias=False)
        self.bn4 = nn.BatchNorm2d(128)
        self.relu4 = nn.ReLU()

        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        x = self.relu3(self.bn3(self.conv3(x)))
        x = self.relu4(self.bn4(self.conv4(x)))
        return self.fc(self.flatten(self.gap(x)))


@torch.no_grad()
def evaluate_accuracy(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 1000,
) -> float:
    """Top-1 accuracy of ``model`` on already-normalised float images [N,1,28,28].
    Puts the model in eval mode (BN uses running stats) and leaves it there."""
    model.eval()
    correct = 0
    for start in range(0, images.shape[0], batch_size):
        logits = model(images[start:start + batch_size])
        correct += int((logits.argmax(1) == labels[start:start + batch_size]).sum())
    return correct / images.shape[0]


def load_fmnist_cnn(
    path: Optional[Union[str, Path]] = None,
    map_location: Union[str, torch.device] = "cpu",
) -> FashionCNN:
    """Build FashionCNN, load the shipped (or given) checkpoint, return it in eval mode."""
    ckpt = Path(path) if path is not None else DEFAULT_CHECKPOINT
    if not ckpt.is_file():
        raise FileNotFoundError(
            f"FashionCNN checkpoint not found: {ckpt} "
            f"(train one with `python scripts/train_fmnist.py`)"
        )
    # weights_only=True: the file is a plain state_dict; refuse arbitrary pickles.
    state = torch.load(ckpt, map_location=map_location, weights_only=True)
    model = FashionCNN()
    model.load_state_dict(state)
    model.eval()
    return model
