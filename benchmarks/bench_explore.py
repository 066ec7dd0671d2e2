"""Design-space exploration throughput: run a study from scratch on the
local process pool and report wall time and points per second.

Target (issue 10): the 1,000-point ResNet-18 grid
(arch_configs/studies/r18_1000_grid.yaml: rows x cols x weight buffer x
input buffer x DRAM bandwidth on sa32_ws) in <= 5 minutes on the 2-core
development machine. The wall time includes tracing the model once,
starting the workers and writing every point to SQLite; results are in
benchmarks/RESULTS.md.
Usage: python benchmarks/bench_explore.py [--study PATH] [--workers N] [--trials N]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main():
    from archsim.explore import LocalExecutor, explore, results_dataframe
    from archsim.study import load_study

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default=str(ROOT / "arch_configs" / "studies" / "r18_1000_grid.yaml"))
    ap.add_argument("--workers", type=int, default=None, help="default: all cores")
    ap.add_argument("--trials", type=int, default=None, help="run only this many points of the study")
    args = ap.parse_args()
    study = load_study(args.study)
    if args.trials:
        study.trials = args.trials
    ex = LocalExecutor(args.workers)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        ostudy = explore(study, out, ex)
        wall = time.perf_counter() - t0
        ex.close()
        df = results_dataframe(ostudy)
    ok = int((df["state"] == "COMPLETE").sum())
    print(f"{study.name}: {len(df)} points ({ok} complete) on {ex.workers} workers in {wall:.1f} s "
          f"= {len(df) / wall:.2f} points/s ({wall / 60:.2f} min)")


if __name__ == "__main__":
    main()
