"""Fashion-MNIST loader reading the raw IDX files directly (gzip + numpy).

Why not torchvision: it is not installed, and nothing may download at run time.
The data comes from the Debian package ``dataset-fashion-mnist``, which installs
gzipped IDX files under /usr/share/datasets/fashion-mnist. Set the environment
variable ARCHSIM_FMNIST_DIR to point somewhere else.

IDX format (big-endian): magic (2 zero bytes, dtype code, ndim), then ndim
uint32 dimension sizes, then the raw data. Codes: 0x08 = uint8.
"""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path
from typing import Callable, Iterator, Optional, Tuple, Union

import numpy as np
import torch

DEFAULT_FMNIST_DIR = "/usr/share/datasets/fashion-mnist"
FMNIST_ENV_VAR = "ARCHSIM_FMNIST_DIR"

_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_SPLIT_SIZES = {"train": 60000, "test": 10000}

# Per-pixel statistics of the 60k training images after scaling to [0, 1].
# Fixed constants (not recomputed) so train and eval normalise identically.
FMNIST_MEAN = 0.2860
FMNIST_STD = 0.3530

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

# IDX dtype codes we accept; Fashion-MNIST only uses uint8.
_IDX_DTYPES = {0x08: np.uint8}


def fashion_mnist_root(root: Optional[Union[str, os.PathLike]] = None) -> Path:
    """Resolve the data directory: explicit arg > env var > Debian default."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get(FMNIST_ENV_VAR) or DEFAULT_FMNIST_DIR)


def fashion_mnist_available(root: Optional[Union[str, os.PathLike]] = None) -> bool:
    """True when all four IDX files exist under the resolved root."""
    base = fashion_mnist_root(root)
    return all((base / f).is_file() for pair in _FILES.values() for f in pair)


def _read_idx(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(
            f"Fashion-MNIST file not found: {path} "
            f"(install with `apt-get install dataset-fashion-mnist` or set "
            f"{FMNIST_ENV_VAR} to the directory holding the IDX .gz files)"
        )
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unsupported IDX dtype code 0x{code:02x}")
    header_bytes = 4 + 4 * ndim
    dims = struct.unpack(">" + "I" * ndim, raw[4:header_bytes])
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(dims)) * np.dtype(dtype).itemsize
    if len(raw) - header_bytes != expected:
        raise ValueError(
            f"{path}: payload is {len(raw) - header_bytes} bytes, header says {expected}"
        )
    # .copy() so the array owns writable memory (torch.from_numpy warns otherwise).
    return np.frombuffer(raw, dtype=dtype, offset=header_bytes).reshape(dims).copy()


def load_fashion_mnist(
    split: str = "train",
    root: Optional[Union[str, os.PathLike]] = None,
    as_tensor: bool = False,
    normalize: bool = False,
) -> Tuple[Union[np.ndarray, torch.Tensor], Union[np.ndarray, torch.Tensor]]:
    """Load one split.

    Returns (images, labels):
      - default: images uint8 ndarray [N, 28, 28], labels int64 ndarray [N].
      - as_tensor=True: images float32 tensor [N, 1, 28, 28] scaled to [0, 1]
        (standardised with FMNIST_MEAN/STD when normalize=True), labels int64 tensor.
    """
    if split not in _FILES:
        raise ValueError(f"split must be one of {sorted(_FILES)}, got {split!r}")
    base = fashion_mnist_root(root)
    img_name, lbl_name = _FILES[split]
    images = _read_idx(base / img_name)
    labels = _read_idx(base / lbl_name).astype(np.int64)
    if images.ndim != 3 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{base}: images {images.shape} and labels {labels.shape} do not match"
        )
    if not as_tensor:
        if normalize:
            raise ValueError("normalize=True requires as_tensor=True")
        return images, labels
    return to_float_tensor(images, normalize=normalize), torch.from_numpy(labels)


def to_float_tensor(images_u8: np.ndarray, normalize: bool = True) -> torch.Tensor:
    """uint8 [N, 28, 28] -> float32 [N, 1, 28, 28], in [0, 1] or standardised."""
    x = torch.from_numpy(np.ascontiguousarray(images_u8)).float().div_(255.0)
    x = x.unsqueeze(1)
    if normalize:
        x = normalize_images(x)
    return x


def normalize_images(x01: torch.Tensor) -> torch.Tensor:
    """Standardise [0, 1] images with the fixed training-set mean/std."""
    return (x01 - FMNIST_MEAN) / FMNIST_STD


def pad_to_32(x: torch.Tensor) -> torch.Tensor:
    """[N,1,28,28] standardised images -> [N,1,32,32], padded by 2 px with the
    standardised value of a black pixel (the background)."""
    if x.shape[-1] == 32:
        return x
    return torch.nn.functional.pad(x, (2, 2, 2, 2), value=(0.0 - FMNIST_MEAN) / FMNIST_STD)


def iterate_batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    shuffle: bool = False,
    generator: Optional[torch.Generator] = None,
    drop_last: bool = False,
) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x, y) batches by tensor slicing; much cheaper than a DataLoader
    for an in-memory dataset. Pass a seeded ``generator`` for a reproducible
    shuffle order."""
    n = images.shape[0]
    if labels.shape[0] != n:
        raise ValueError(f"images ({n}) and labels ({labels.shape[0]}) differ in length")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    order = torch.randperm(n, generator=generator) if shuffle else None
    stop = n - (n % batch_size) if drop_last else n
    for start in range(0, stop, batch_size):
        if order is None:
            yield images[start:start + batch_size], labels[start:start + batch_size]
        else:
            idx = order[start:start + batch_size]
            yield images[idx], labels[idx]


def training_batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int, steps: int, seed: int,
                     transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> list:
    """Fine-tuning data: `steps` full batches of one seeded shuffle of the
    training set, wrapping into a further shuffle if one epoch is not enough.
    The same (seed, batch_size) gives the same batches to every method."""
    if steps > 0 and len(images) < batch_size:
        raise ValueError(f"{len(images)} images make no full batch of {batch_size}")
    gen = torch.Generator().manual_seed(seed)
    out = []
    while len(out) < steps:
        for xb, yb in iterate_batches(images, labels, batch_size, shuffle=True, generator=gen, drop_last=True):
            out.append((transform(xb) if transform else xb, yb))
            if len(out) == steps:
                break
    return out
