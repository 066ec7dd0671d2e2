"""Global-buffer size against DRAM traffic and energy, for INT8, VQ and SSVQ.

A shared level `global` (serves weights, activations and partial sums; 64
B/cycle port; activations kept on chip) is added to each format's
accelerator (sa32_ws, vq32_ws, ssvq32_ws) with a 32-lane vector unit for the
non-GEMM operators (BN and ReLU after a GEMM fused), and its capacity swept
from none to "everything fits". Models: ResNet-18, DeiT-tiny, MobileNetV2 at
batch 1 (seeded zoo weights; the hardware numbers depend on shapes and
formats only). VQ: k=256, d=8 on every layer; SSVQ: the same with sign bits
(no fine-tuning: steps=0).

    python benchmarks/global_buffer_study.py   # writes global_buffer_study.{csv,md,png} beside it

This is where compression and on-chip memory trade: a compressed model's
weights shrink, so the activations, which compression does not touch, are
an ever larger share of the traffic until the buffer holds them.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

MODELS = ("resnet18", "deit_tiny", "mobilenetv2")
FORMATS = {"INT8": ("sa32_ws", None, {}), "VQ": ("vq32_ws", "vq", {"k": 256, "d": 8}),
           "SSVQ": ("ssvq32_ws", "ssvq", {"k": 256, "d": 8, "steps": 0})}
SIZES_KIB = (0, 64, 256, 1024, 4096, 16384)
VECTOR = "vector_unit={lanes: 32, fused: [relu, relu6, batchnorm]}"


def level(kib: int) -> list[str]:
    if kib == 0:
        return []
    return [f"memory.levels=[{{name: global, capacity_bytes: {kib * 1024}, word_bits: 128, bytes_per_cycle: 64, "
            f"serves: [weights, activations, psums]}}]", "memory.retain_activations=true"]


def run() -> list[dict]:
    from archsim.api import simulate
    from workloads import zoo
    from workloads.compile import trace
    from workloads.compression import compress

    rows = []
    for model in MODELS:
        for fmt, (arch, method, params) in FORMATS.items():
            net = zoo.build(model)
            formats = compress(net, method, num_threads=1, **params).formats if method else None
            layers = trace(net, zoo.default_input(model), formats=formats)
            for kib in SIZES_KIB:
                r = simulate(layers, arch, overrides=[VECTOR] + level(kib))
                t = r.totals
                rows.append({"model": model, "format": fmt, "arch": arch, "global_kib": kib,
                             "dram_mib": (t["dram_read_bytes"] + t["dram_write_bytes"]) / 2 ** 20,
                             "energy_uj": t["energy_total_pj"] / 1e6, "dram_energy_uj": t["energy_dram_pj"] / 1e6,
                             "latency_ms": t["latency_ms"]})
                print(f"{model:12} {fmt:5} {kib:6} KiB  DRAM {rows[-1]['dram_mib']:8.2f} MiB  "
                      f"energy {rows[-1]['energy_uj']:9.1f} uJ  latency {rows[-1]['latency_ms']:.3f} ms", flush=True)
    return rows


def plot(rows: list[dict], path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(MODELS), figsize=(4.2 * len(MODELS), 7), squeeze=False)
    xs = [max(k, 16) for k in SIZES_KIB]  # 0 KiB (no level) drawn at the left edge of the log axis
    for j, model in enumerate(MODELS):
        for i, (key, label) in enumerate((("dram_mib", "DRAM traffic (MiB)"), ("energy_uj", "energy (uJ)"))):
            ax = axes[i][j]
            for fmt in FORMATS:
                ys = [r[key] for r in rows if r["model"] == model and r["format"] == fmt]
                ax.plot(xs, ys, marker="o", label=fmt)
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, ["none"] + [f"{k // 1024} MiB" if k >= 1024 else f"{k} KiB" for k in SIZES_KIB[1:]],
                          rotation=45, fontsize=8)
            ax.set_ylabel(label)
            ax.set_title(model if i == 0 else "")
            ax.grid(alpha=0.3)
            if i == 1:
                ax.set_xlabel("global buffer")
    axes[0][0].legend()
    fig.suptitle("Global buffer size vs DRAM traffic and energy (activations kept on chip when they fit)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    rows = run()
    with open(HERE / "global_buffer_study.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    plot(rows, HERE / "global_buffer_study.png")


if __name__ == "__main__":
    main()
