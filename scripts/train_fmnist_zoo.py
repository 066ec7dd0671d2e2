#!/usr/bin/env python3
"""Train ResNet-20 or the small DeiT-style ViT on Fashion-MNIST (32x32 input:
the 28x28 images padded by 2 px) and write the shipped checkpoint + metadata.

Budgeted for a CPU (<= ~25 min per model): a few epochs with a
one-cycle schedule; SGD+Nesterov for ResNet-20, AdamW for the ViT (the usual
recipes for each), the same light augmentation as scripts/train_fmnist.py
(random +-2 px shift, horizontal flip).

Usage:
  python scripts/train_fmnist_zoo.py --model resnet20_fmnist --epochs 5
  python scripts/train_fmnist_zoo.py --model vit_fmnist --epochs 10 --threads 2   # 26 min
  python scripts/train_fmnist_zoo.py --model vit_fmnist --time-steps 20   # measure speed only
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from scripts.train_fmnist import augment  # noqa: E402
from workloads.datasets import iterate_batches, load_fashion_mnist  # noqa: E402
from workloads.zoo.fmnist_cnn import evaluate_accuracy  # noqa: E402
from workloads.zoo.fmnist_models import (FMNIST_MODELS, checkpoint_paths, pad_to_32,  # noqa: E402
                                         record_subset_accuracy)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, choices=["resnet20_fmnist", "vit_fmnist", "fmnist_cnn"])
    ap.add_argument("--record-subset", action="store_true",
                    help="only score the shipped checkpoint on the fixed test subset and record it in its JSON")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr-max", type=float, default=None, help="default 0.1 (SGD) / 2e-3 (AdamW)")
    ap.add_argument("--weight-decay", type=float, default=None, help="default 5e-4 (SGD) / 0.05 (AdamW)")
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--time-steps", type=int, default=0, help="only time this many steps and exit")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    if args.record_subset:
        meta = record_subset_accuracy(args.model)
        print(f"{args.model}: {meta['subset_test_accuracy']:.4f} on the first {meta['subset_size']} test images")
        return 0
    if args.model == "fmnist_cnn":
        ap.error("train fmnist_cnn with scripts/train_fmnist.py")
    torch.manual_seed(args.seed)
    shuffle_gen = torch.Generator().manual_seed(args.seed + 1)
    aug_gen = torch.Generator().manual_seed(args.seed + 2)
    is_vit = args.model == "vit_fmnist"
    lr_max = args.lr_max if args.lr_max is not None else (2e-3 if is_vit else 0.1)
    wd = args.weight_decay if args.weight_decay is not None else (0.05 if is_vit else 5e-4)
    out = args.out or checkpoint_paths(args.model)[0]

    t_start_s = time.perf_counter()
    x_train, y_train = load_fashion_mnist("train", as_tensor=True, normalize=True)
    x_test, y_test = load_fashion_mnist("test", as_tensor=True, normalize=True)
    x_test32 = pad_to_32(x_test)

    model = FMNIST_MODELS[args.model][0]()
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and "pos_embed" not in n and "cls_token" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim > 1 and "pos_embed" not in n and "cls_token" not in n)]
    groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
    if is_vit:
        opt = torch.optim.AdamW(groups, lr=lr_max, betas=(0.9, 0.999))
        opt_name = "AdamW + OneCycleLR"
    else:
        opt = torch.optim.SGD(groups, lr=lr_max, momentum=0.9, nesterov=True)
        opt_name = "SGD(momentum=0.9, nesterov) + OneCycleLR"
    steps_per_epoch = (x_train.shape[0] + args.batch_size - 1) // args.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr_max, epochs=args.epochs,
                                                steps_per_epoch=steps_per_epoch, pct_start=0.2)
    print(f"{args.model}: {n_params} params; {args.epochs} epochs x {steps_per_epoch} steps; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)

    history = []
    step = 0
    for epoch in range(1, args.epochs + 1):
        t_epoch_s = time.perf_counter()
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        for xb, yb in iterate_batches(x_train, y_train, args.batch_size, shuffle=True, generator=shuffle_gen):
            xb = pad_to_32(augment(xb, aug_gen))
            logits = model(xb)
            loss = F.cross_entropy(logits, yb, label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if is_vit:
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * yb.shape[0]
            correct += int((logits.argmax(1) == yb).sum())
            seen += yb.shape[0]
            step += 1
            if step % 50 == 0:
                el = time.perf_counter() - t_epoch_s
                print(f"  step {step}  loss {loss_sum / seen:.4f}  {el / (seen / args.batch_size):.3f}s/step "
                      f"(epoch ~{el / seen * x_train.shape[0]:.0f}s)", flush=True)
            if args.time_steps and step >= args.time_steps:
                el = time.perf_counter() - t_epoch_s
                print(f"timing: {el / step:.3f} s/step -> {el / step * steps_per_epoch:.0f} s/epoch", flush=True)
                return 0
        test_acc = evaluate_accuracy(model, x_test32, y_test)
        rec = {"epoch": epoch, "train_loss": round(loss_sum / seen, 4), "train_acc": round(correct / seen, 4),
               "test_acc": round(test_acc, 4), "epoch_time_s": round(time.perf_counter() - t_epoch_s, 1)}
        history.append(rec)
        print(f"epoch {epoch}/{args.epochs}  loss {rec['train_loss']:.4f}  train {rec['train_acc']:.4f}  "
              f"test {rec['test_acc']:.4f}  ({rec['epoch_time_s']}s)", flush=True)
    wall_time_s = time.perf_counter() - t_start_s

    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    reloaded = FMNIST_MODELS[args.model][0]()
    reloaded.load_state_dict(torch.load(out, weights_only=True))
    final_acc = evaluate_accuracy(reloaded, x_test32, y_test)
    meta = {
        "model": args.model, "checkpoint": out.name, "checkpoint_bytes": out.stat().st_size,
        "checkpoint_sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "test_accuracy": round(final_acc, 4), "test_set_size": int(y_test.shape[0]),
        "epochs": args.epochs, "wall_time_s": round(wall_time_s, 1), "seed": args.seed,
        "param_count": n_params, "torch_version": torch.__version__, "threads": torch.get_num_threads(),
        "optimizer": opt_name, "lr_max": lr_max, "batch_size": args.batch_size, "weight_decay": wd,
        "label_smoothing": args.label_smoothing,
        "augmentation": "random shift +-2px, horizontal flip",
        "input": "28x28 standardised as fmnist_cnn, padded to 32x32 with the background value",
        "history": history,
    }
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    if args.out is None:
        record_subset_accuracy(args.model)
    print(f"test accuracy (full 10k): {final_acc:.4f}; wall {wall_time_s:.1f}s; saved {out} "
          f"({meta['checkpoint_bytes']} bytes)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
