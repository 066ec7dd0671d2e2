"""Row-level fidelity (`pe_array.fidelity: rows`, archsim/hw/row_sim.py): how
slow it is. For single ResNet-18 layers (shapes from SCALE-Sim's topology,
tests/data/scalesim/inputs/resnet18_sympad.csv) and a SWIS layer with mixed
per-group N, it runs the same tile graph at fold and at row fidelity and
prints: CPU seconds of each (engine run only, the tile graph built once; CPU
time, not wall time, because the development machine's 2 cores are shared),
SimPy events of the row run (counted in a second, instrumented run) and
events per CPU second, and whether the compute cycles are equal in the two
modes (total cycles may differ: row mode ends a chunk when row 0 is done, so
loads and stores overlap differently).

Usage: nice -n 10 python benchmarks/bench_row_mode.py [--cases conv5_s,conv4_s,conv5_s_os,swis,conv5_2b]
Results: benchmarks/RESULTS.md, "Row-level fidelity (issue 19)".
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import simpy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archsim.config import load_arch  # noqa: E402
from archsim.engine import run  # noqa: E402
from archsim.ir.formats import SWISFormat  # noqa: E402
from workloads.scalesim_import import read_topology  # noqa: E402
from archsim.tiling import tile  # noqa: E402

TOPOLOGY = ROOT / "tests" / "data" / "scalesim" / "inputs" / "resnet18_sympad.csv"


def resnet18_layer(name: str):
    return [L for L in read_topology(str(TOPOLOGY)) if L.name == name]


def swis_layer():
    """ResNet-18 Conv5_s's shape (1x1, 256 -> 512, 7x7) with SWIS weights, per-group N
    drawn 1..4 (seed 0): folds mix N, so rows wait for the slowest lane."""
    L = resnet18_layer("Conv5_s")[0]
    groups = L.N * L.K // 8
    gn = np.random.default_rng(0).integers(1, 5, size=groups)
    L.fmt = SWISFormat(group_size=8, shared_bits=float(gn.mean()), max_shared_bits=4, group_n_bits=2,
                       group_n="".join(map(str, gn)))
    return [L]


CASES = {
    "conv5_s": ("ResNet-18 Conv5_s (1x1, 256->512, 7x7 out)", lambda: resnet18_layer("Conv5_s"), "sa32_ws", []),
    "conv4_s": ("ResNet-18 Conv4_s (1x1, 128->256, 14x14 out)", lambda: resnet18_layer("Conv4_s"), "sa32_ws", []),
    "conv5_s_os": ("ResNet-18 Conv5_s, output stationary", lambda: resnet18_layer("Conv5_s"), "sa32_os", []),
    "swis": ("Conv5_s shape, SWIS N=1..4 per group", swis_layer, "swis16_ws", []),
    # a 3x3 layer: about 20x the events of Conv5_s (minutes), so not in the default list
    "conv5_2b": ("ResNet-18 Conv5_2b (3x3, 512->512, 7x7 out)", lambda: resnet18_layer("Conv5_2b"), "sa32_ws", []),
}
DEFAULT = "conv5_s,conv4_s,conv5_s_os,swis"


class _Counting:
    """Counts the events every simpy.Environment processes (patched step)."""

    def __enter__(self):
        self.n = 0
        self._step = simpy.Environment.step

        def step(env):
            self.n += 1
            return self._step(env)

        simpy.Environment.step = step
        return self

    def __exit__(self, *exc):
        simpy.Environment.step = self._step


def bench(key: str) -> dict:
    title, make, arch_name, sets = CASES[key]
    layers = make()
    out = {"case": title, "arch": arch_name}
    stats = {}
    for fid in ("fold", "rows"):
        arch = load_arch(arch_name, sets + [f"pe_array.fidelity={fid}"])
        g = tile(layers, arch)
        t0 = time.process_time()
        stats[fid] = run(g, arch)
        out[f"{fid}_s"] = time.process_time() - t0
        out["compute_nodes"] = sum(1 for v in range(g.number_of_nodes()) if g.nodes[v]["kind"] == "compute")
        if fid == "rows":
            with _Counting() as c:
                run(g, arch)
            out["events"] = c.n
    out["events_per_s"] = out["events"] / out["rows_s"]
    out["slowdown"] = out["rows_s"] / out["fold_s"]
    out["compute_cycles"] = [ls.compute_cycles for ls in stats["rows"].layers]
    out["equal"] = all(a.compute_cycles == b.compute_cycles for a, b in zip(stats["fold"].layers, stats["rows"].layers))
    out["total_cycles"] = (stats["fold"].total_cycles, stats["rows"].total_cycles)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=DEFAULT, help=f"comma-separated, of: {', '.join(CASES)}")
    args = ap.parse_args(argv)
    print("| case | arch | compute nodes | fold CPU s | rows CPU s | slowdown | SimPy events (rows) | events per CPU s | "
          "compute cycles equal | total cycles fold / rows |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---|")
    for key in args.cases.split(","):
        r = bench(key)
        print(f"| {r['case']} | {r['arch']} | {r['compute_nodes']:,} | {r['fold_s']:.3f} | {r['rows_s']:.1f} | "
              f"{r['slowdown']:,.0f}x | {r['events']:,} | {r['events_per_s']:,.0f} | "
              f"{'yes' if r['equal'] else 'NO'} ({r['compute_cycles'][0]:,}) | "
              f"{r['total_cycles'][0]:,} / {r['total_cycles'][1]:,} |", flush=True)


if __name__ == "__main__":
    main()
