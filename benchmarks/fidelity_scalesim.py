"""Per-layer fidelity table, archsim vs SCALE-Sim v3, for ResNet-18 on the
32x32 weight- and output-stationary arrays, from SCALE-Sim's own inputs in
tests/data/scalesim. tests/test_fidelity.py asserts the same numbers.

Usage: python benchmarks/fidelity_scalesim.py > benchmarks/fidelity_scalesim.md
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archsim.config import load_arch  # noqa: E402
from archsim.engine import run  # noqa: E402
from workloads.scalesim_import import read_topology  # noqa: E402
from archsim.tiling import tile  # noqa: E402

REF = ROOT / "tests" / "data" / "scalesim"


def main():
    layers = read_topology(REF / "inputs" / "resnet18_sympad.csv")
    ref = {(r["run"], r["layer"]): r for r in csv.DictReader(open(REF / "results" / "resnet18_sympad_summary.csv"))}
    print("| layer | WS SCALE-Sim | WS archsim | OS SCALE-Sim | OS archsim | WS latency on LPDDR4 | OS latency on LPDDR4 |")
    print("|---|---|---|---|---|---|---|")
    stats = {}
    for df in ("ws", "os"):
        arch = load_arch(REF / "inputs" / f"sa32_{df}_calc.cfg")
        stats[df] = run(tile(layers, arch), arch).layers
    worst = 0.0
    for i, L in enumerate(layers):
        cells = [L.name]
        for df in ("ws", "os"):
            sc = int(ref[(f"sa32_{df}_calc", L.name)]["compute_cycles"])
            ours = stats[df][i].compute_cycles
            worst = max(worst, abs(ours - sc) / sc)
            cells += [f"{sc:,}", f"{ours:,}"]
        cells += [f"{stats[df][i].total_cycles:,}" for df in ("ws", "os")]
        print("| " + " | ".join(cells) + " |")
    print(f"\nLargest compute-cycle difference: {100 * worst:.4f}% (SCALE-Sim reports its fold formula minus one).")


if __name__ == "__main__":
    main()
