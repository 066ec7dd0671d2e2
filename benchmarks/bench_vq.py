"""VQ compression speed: all of ResNet-18's weights (11.7 M) with k=256, d=4.

Target: <= 60 s on the 2-core CPU. Uses workloads.zoo.build('resnet18')
(seeded random init, torchvision's layer shapes). The forward pass is not
needed: VQ only reads the weights.

    python benchmarks/bench_vq.py [--k 256] [--d 4] [--repeats 1]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from workloads import zoo  # noqa: E402
from workloads.compression import compress  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=256)
    ap.add_argument("--d", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args(argv)
    model, source = zoo.build("resnet18"), "workloads.zoo resnet18"
    n_w = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    times_s = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        res = compress(model, "vq", seed=0, k=args.k, d=args.d)
        times_s.append(time.perf_counter() - t0)
    info = res.info
    print(f"model: {source}, {n_w / 1e6:.2f} M weights in {len(res.formats)} layers")
    print(f"VQ k={args.k} d={args.d}: wall {min(times_s):.2f} s (best of {args.repeats}; all: "
          f"{', '.join(f'{t:.2f}' for t in times_s)})")
    print(f"bits/weight {info['bits_per_weight']:.4f}, x{info['compression_vs_fp32']:.2f} vs FP32, "
          f"x{info['compression_vs_int8']:.2f} vs INT8, weight MSE {info['weight_mse']:.3e}")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
          f"{platform.processor() or platform.machine()}")
    return min(times_s)


if __name__ == "__main__":
    main()
