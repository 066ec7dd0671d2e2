"""Shared evaluator: `evaluate(model, dataset) -> {"top1", "top5", "loss", "n"}`.

Used by the accuracy tables, the tests and design-space exploration. Results
are cached on disk, keyed by a content hash of the model (every tensor of its
state_dict, plus each module's type and plain hyper-parameters such as
stride, padding or a PQ layer's distance) and of the data set (images and
labels), so asking again for the accuracy of an unchanged model is a file
read. Any changed weight, buffer or sample gives a different key.

Cache directory: the `cache_dir` argument, else $ARCHSIM_EVAL_CACHE, else
~/.cache/archsim/eval. cache_dir=False turns the cache off.

    ds = EvalSet.fashion_mnist("test", size=2000, input_size=32)
    evaluate(model, ds)   # {'top1': 0.93, 'top5': 0.998, 'loss': 0.21, 'n': 2000, 'cached': False}
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

CACHE_ENV_VAR = "ARCHSIM_EVAL_CACHE"
# bump when the meaning of the cached numbers changes
_CACHE_VERSION = 1


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV_VAR)
    return Path(env) if env else Path.home() / ".cache" / "archsim" / "eval"


def _hash_tensor(h, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    if t.dtype == torch.bfloat16:
        t = t.float()
    h.update(t.numpy().tobytes())


@dataclass
class EvalSet:
    """An in-memory labelled data set: images ready for the model, labels."""

    images: torch.Tensor
    labels: torch.Tensor
    name: str = "data"
    _digest: Optional[str] = field(default=None, repr=False)

    def __post_init__(self):
        if self.images.shape[0] != self.labels.shape[0]:
            raise ValueError(f"{self.images.shape[0]} images but {self.labels.shape[0]} labels")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def digest(self) -> str:
        if self._digest is None:
            h = hashlib.sha256()
            _hash_tensor(h, self.images)
            _hash_tensor(h, self.labels)
            self._digest = h.hexdigest()
        return self._digest

    @classmethod
    def fashion_mnist(cls, split: str = "test", size: Optional[int] = None, input_size: int = 28,
                      root=None) -> "EvalSet":
        """The first `size` images of a Fashion-MNIST split (all: None),
        standardised, padded to 32x32 when input_size=32."""
        from .datasets import load_fashion_mnist, pad_to_32

        x, y = load_fashion_mnist(split, root=root, as_tensor=True, normalize=True)
        if size is not None:
            x, y = x[:size], y[:size]
        if input_size == 32:
            x = pad_to_32(x)
        elif input_size != 28:
            raise ValueError(f"input_size must be 28 or 32, got {input_size}")
        return cls(x.contiguous(), y, name=f"fmnist-{split}-{len(y)}-{input_size}px")


_PLAIN = (int, float, str, bool, type(None))


def model_digest(model: nn.Module) -> str:
    """Content hash of a model: module types, plain hyper-parameters, and
    every state_dict tensor (parameters and buffers)."""
    h = hashlib.sha256()
    for name, mod in model.named_modules():
        attrs = {k: v for k, v in vars(mod).items()
                 if not k.startswith("_") and k != "training"
                 and (isinstance(v, _PLAIN) or (isinstance(v, tuple) and all(isinstance(e, _PLAIN) for e in v)))}
        h.update(f"{name}:{type(mod).__module__}.{type(mod).__qualname__}:{sorted(attrs.items())!r};".encode())
    for key, t in model.state_dict().items():
        h.update(key.encode())
        _hash_tensor(h, t)
    return h.hexdigest()


@torch.no_grad()
def _evaluate(model: nn.Module, data: EvalSet, batch_size: int) -> dict:
    was_training = model.training
    model.eval()
    n = len(data)
    c1 = c5 = 0
    loss = 0.0
    try:
        for s in range(0, n, batch_size):
            x, y = data.images[s:s + batch_size], data.labels[s:s + batch_size]
            out = model(x)
            loss += float(F.cross_entropy(out.float(), y, reduction="sum"))
            top = out.topk(min(5, out.shape[1]), dim=1).indices
            c1 += int((top[:, 0] == y).sum())
            c5 += int((top == y[:, None]).any(1).sum())
    finally:
        model.train(was_training)
    return {"top1": c1 / n, "top5": c5 / n, "loss": loss / n, "n": n}


def evaluate(model: nn.Module, dataset: Union[EvalSet, tuple], batch_size: int = 500,
             cache_dir: Union[None, bool, str, os.PathLike] = None) -> dict:
    """Top-1, top-5 (fractions) and mean cross-entropy of `model` on
    `dataset` (an EvalSet or an (images, labels) pair). The model is run in
    eval mode and left in the mode it was in. Returns those plus "n" and
    "cached" (whether the numbers came from the cache)."""
    data = dataset if isinstance(dataset, EvalSet) else EvalSet(dataset[0], dataset[1])
    if cache_dir is False:
        return {**_evaluate(model, data, batch_size), "cached": False}
    base = Path(cache_dir) if cache_dir not in (None, True) else default_cache_dir()
    key = hashlib.sha256(f"v{_CACHE_VERSION}:{model_digest(model)}:{data.digest()}".encode()).hexdigest()
    path = base / key[:2] / f"{key}.json"
    if path.is_file():
        try:
            hit = json.loads(path.read_text())
            return {k: hit[k] for k in ("top1", "top5", "loss", "n")} | {"cached": True}
        except (OSError, ValueError):
            pass  # unreadable entry: recompute and overwrite
    res = _evaluate(model, data, batch_size)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({**res, "data": data.name}))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache never breaks evaluation
    return {**res, "cached": False}


__all__ = ["evaluate", "EvalSet", "model_digest", "default_cache_dir", "CACHE_ENV_VAR"]
