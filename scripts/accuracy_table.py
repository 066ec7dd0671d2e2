"""Accuracy of every compression method on a real model and real data.

Compresses the shipped Fashion-MNIST CNN (workloads/checkpoints/fmnist_cnn.pt)
with every method at matched bits-per-weight points and evaluates top-1 on the
full 10k test set. Writes benchmarks/accuracy_fmnist.csv and .md.

Bits/weight count everything stored for the compressed layers (indices,
codebooks, masks, signs, shift tables, per-channel scales, prototypes, LUTs;
see workloads/compression). `top1_bn_recal` is the same model after
re-estimating BatchNorm statistics on 20 training batches (no training).
Methods that train (MVQ codebook fine-tuning,
SSVQ signs, SWIS STE retraining, PQ prototypes) use training-set batches only.

The CSV is rewritten after every configuration; run again after an
interruption and the configurations already in it are not recomputed
(--fresh starts over).

Usage: python scripts/accuracy_table.py [--quick] [--fresh] [--out benchmarks/accuracy_fmnist]
"""
from __future__ import annotations

import argparse
import copy
import csv
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workloads.compression import compress  # noqa: E402
from workloads.datasets import iterate_batches, load_fashion_mnist  # noqa: E402
from workloads.zoo.fmnist_cnn import evaluate_accuracy, load_fmnist_cnn  # noqa: E402

# (point, method, params): points group configurations of about the same bits/weight
CONFIGS = [
    ("fp32", "none", {}),
    ("8 b", "int", dict(bits=8)),
    ("~5 b", "nm", dict(n=2, m=4)),
    ("~4 b", "int", dict(bits=4)),
    ("~4 b", "trunc", dict(bits=4)),
    ("~4 b", "swis", dict(group_size=8, shared_bits=2)),
    ("~4 b", "swis", dict(group_size=8, shared_bits=3)),
    ("~4 b", "vq", dict(k=256, d=2)),
    ("~2 b", "int", dict(bits=2)),
    ("~2 b", "trunc", dict(bits=2)),
    ("~2 b", "swis", dict(group_size=8, shared_bits=1)),
    ("~2 b", "swis", dict(group_size=8, shared_bits=1, retrain_steps=300, lr=1e-3)),
    ("~2 b", "vq", dict(k=256, d=4)),
    ("~2 b", "vq", dict(k=256, d=8)),
    # plain VQ with codebook fine-tuning: MVQ with a 4:4 mask, which costs 0 bits combinatorially
    ("~2 b", "mvq", dict(n=4, m=4, k=256, d=4, mask_encoding="combinatorial", finetune_steps=300, lr=1e-3)),
    ("~2 b", "mvq", dict(n=2, m=4, k=256, d=8)),
    ("~2 b", "ssvq", dict(k=256, d=8, steps=0)),
    ("~2 b", "mvq", dict(n=2, m=4, k=256, d=8, finetune_steps=300, lr=1e-3)),
    ("~2 b", "ssvq", dict(k=256, d=8, steps=600, freeze_interval=100)),
    ("~1.5 b", "vq", dict(k=64, d=4)),
    ("~1.5 b", "mvq", dict(n=2, m=4, k=256, d=16)),
    ("~1.5 b", "mvq", dict(n=2, m=4, k=256, d=16, finetune_steps=300, lr=1e-3)),
    ("~1.5 b", "ssvq", dict(k=256, d=16, steps=600, freeze_interval=100)),
    ("PQ", "pq", dict(Ls=9, Np=16, max_batches=32)),
    ("PQ", "pq", dict(Ls=9, Np=16, proto_bits=6, lut_bits=5, max_batches=32)),
]


def calib_loader(images, labels, batch: int, seed: int):
    """One seeded, shuffled epoch of training batches; training methods cycle
    it as far as their step count needs, PQ samples `max_batches` of it."""
    gen = torch.Generator().manual_seed(seed)
    return iterate_batches(images, labels, batch, shuffle=True, generator=gen, drop_last=True)


@torch.no_grad()
def recalibrate_bn(model, images, labels, batches: int, seed: int):
    """BatchNorm re-estimation: recompute running statistics on training
    batches with the compressed weights (a standard, training-free repair of
    the statistics shift that weight compression causes). Returns a copy."""
    model = copy.deepcopy(model)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches
    model.eval()
    for bn in bns:
        bn.train()
    for i, (x, _) in enumerate(calib_loader(images, labels, 256, seed)):
        if i == batches:
            break
        model(x)
    return model.eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "accuracy_fmnist"))
    ap.add_argument("--quick", action="store_true", help="2000 test images, fewer training steps (smoke run)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fresh", action="store_true", help="ignore results already in the CSV")
    ap.add_argument("--only", help="comma-separated methods to run (default: all)")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    x_tr, y_tr = load_fashion_mnist("train", as_tensor=True, normalize=True)
    x_te, y_te = load_fashion_mnist("test", as_tensor=True, normalize=True)
    if args.quick:
        x_te, y_te = x_te[:2000], y_te[:2000]
    base = load_fmnist_cnn()
    base_acc = evaluate_accuracy(base, x_te, y_te)
    out = Path(args.out + ("_quick" if args.quick else ""))
    out.parent.mkdir(parents=True, exist_ok=True)
    csv_path = out.with_suffix(".csv")
    done = {}
    if csv_path.exists() and not args.fresh:
        done = {(r["method"], r["settings"]): r for r in csv.DictReader(open(csv_path))}
    rows = []
    for point, method, params in CONFIGS:
        if args.only and method not in args.only.split(","):
            continue
        params = dict(params)
        if args.quick:
            for key in ("steps", "finetune_steps", "retrain_steps"):
                if key in params:
                    params[key] = min(params[key], 20)
            if "freeze_interval" in params:
                params["freeze_interval"] = 5
        settings = " ".join(f"{k}={v}" for k, v in params.items())
        if (method, settings) in done:
            rows.append(done[(method, settings)])
            continue
        t0 = time.perf_counter()
        if method == "none":
            model, info = base, {"bits_per_weight": 32.0, "compression_vs_fp32": 1.0, "compression_vs_int8": 0.25,
                                 "weight_mse": 0.0}
        else:
            res = compress(base, method, calib=calib_loader(x_tr, y_tr, 128, args.seed), seed=args.seed, **params)
            model, info = res.model, res.info
        wall_s = time.perf_counter() - t0
        acc = evaluate_accuracy(model, x_te, y_te)
        acc_bn = evaluate_accuracy(recalibrate_bn(model, x_tr, y_tr, 20, args.seed), x_te, y_te)
        # PQ replaces the weights by tables: it reports the layer-output error instead
        mse = info.get("weight_mse")
        mse = f"{mse:.3g}" if mse is not None else f"out {info.get('output_mse', float('nan')):.3g}"
        row = dict(point=point, method=method, settings=settings,
                   bits_per_weight=round(info["bits_per_weight"], 3),
                   ratio_vs_fp32=round(info["compression_vs_fp32"], 2),
                   ratio_vs_int8=round(info["compression_vs_int8"], 2),
                   top1=round(100 * acc, 2), delta_vs_fp32=round(100 * (acc - base_acc), 2),
                   top1_bn_recal=round(100 * acc_bn, 2),
                   weight_mse=mse, wall_s=round(wall_s, 2))
        rows.append(row)
        print(" | ".join(f"{v}" for v in row.values()), flush=True)
        with open(csv_path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            # keep results from an earlier run that this run has not reached yet
            seen = {(r["method"], r["settings"]) for r in rows}
            w.writerows(rows + [r for k, r in done.items() if k not in seen])

    n_test = x_te.shape[0]
    lines = [f"Fashion-MNIST CNN ({sum(p.numel() for p in base.parameters()):,} parameters), "
             f"top-1 on {n_test:,} test images; FP32 {100 * base_acc:.2f}%.", "",
             "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(str(v) for v in r.values()) + " |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}.csv and {out}.md")


if __name__ == "__main__":
    main()
