"""Simulator speed and memory: simulate() wall time and peak RSS for
ResNet-18 and ResNet-50 on the 32x32 weight-stationary config, and the cost
per tile-graph node across model sizes (it must stay flat: cost grows
linearly with the number of tiles).

Targets on the 2-core development machine: issue 2, ResNet-18 <= 1 s,
ResNet-50 <= 3 s, <= 300 MB; issue 10, ResNet-18 <= 0.25 s, ResNet-50 <= 0.6 s,
ResNet-18 simulate() memory <= 100 MB (results: benchmarks/RESULTS.md). For scale, SCALE-Sim v3 needs about 230 s and
6 GB for ResNet-18 on the same array (tests/data/scalesim/README.md).

Each model runs in a fresh process so that peak RSS is its own. `peak MB`
is the whole process (importing torch alone is about 220 MB, the traced
model about 125 MB more for ResNet-18); `sim MB` is what simulate() added.
simulate s = tile + run + energy + report, best of --repeat, model pre-traced.
Issue 18: `--dram` runs ResNet-18 with the pipe and with the banked DRAM
side by side in one process; target: banked DDR4-3200 <= 1.5x the pipe.
`--baseline REV` measures a git revision (checked out into a temporary
worktree) and this checkout model by model, interleaved, in one run: the
before/after of a change on the same machine under the same load.
Usage: python benchmarks/bench_simulate.py [--arch sa32_ws] [--repeat 3] [--dram] [--baseline REV]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
from archsim.api import simulate
from archsim.config import load_arch
try:
    from archsim.tiling import tile
except ImportError:  # a baseline from before the tiler moved into archsim
    from workloads.tiling import tile
from archsim.engine import run

name, arch_name, repeat, batch = {name!r}, {arch!r}, {repeat}, {batch}
arch = load_arch(arch_name)
t0 = time.perf_counter()
if name.endswith(".csv"):  # a SCALE-Sim topology: no torch in the process at all
    from workloads.scalesim_import import read_topology
    layers = read_topology(name)
else:
    from workloads import zoo
    from workloads.compile import trace
    layers = trace(zoo.build(name), zoo.default_input(name, batch=batch))
trace_s = time.perf_counter() - t0
rss_traced_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
best = {{}}
for _ in range(repeat):
    t0 = time.perf_counter(); g = tile(layers, arch); t1 = time.perf_counter()
    stats = run(g, arch); t2 = time.perf_counter()
    report = simulate(layers, arch); t3 = time.perf_counter()
    for k, v in (("tile_s", t1 - t0), ("run_s", t2 - t1), ("simulate_s", t3 - t2)):
        best[k] = min(best.get(k, 1e9), v)
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(dict(model=name, arch=arch_name, batch=batch, layers=len(layers), nodes=g.number_of_nodes(),
                      total_cycles=stats.total_cycles, trace_s=trace_s, peak_rss_mb=rss_mb,
                      simulate_rss_mb=rss_mb - rss_traced_mb,
                      us_per_node=1e6 * best["simulate_s"] / g.number_of_nodes(), **best)))
"""


def measure(name: str, arch: str, repeat: int, batch: int = 1, root: Path = ROOT) -> dict:
    child = CHILD.format(root=str(root), name=name, arch=arch, repeat=repeat, batch=batch)
    out = subprocess.run([sys.executable, "-c", child],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


DRAM_CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
import simpy
from archsim.config import load_arch
from archsim.engine import run
from workloads import zoo
from workloads.compile import trace
from archsim.tiling import tile

layers = trace(zoo.build("resnet18"), zoo.default_input("resnet18", batch=1))
kinds = [("pipe", []), ("ddr4_3200", ["dram={{kind: banked_dram, preset: ddr4_3200}}"]),
         ("lpddr4_2400", ["dram={{kind: banked_dram, preset: lpddr4_2400}}"])]
archs = {{name: load_arch({arch!r}, ov) for name, ov in kinds}}
graphs = {{name: tile(layers, a) for name, a in archs.items()}}
first = {{}}
for name, a in archs.items():  # first run: the banked kinds calibrate their rates here
    t0 = time.perf_counter(); run(graphs[name], a); first[name] = time.perf_counter() - t0
best = {{name: 1e9 for name in archs}}
for _ in range({repeat}):  # interleaved, so load on the machine hits all alike
    for name, a in archs.items():
        t0 = time.perf_counter(); stats = run(graphs[name], a); best[name] = min(best[name], time.perf_counter() - t0)
out = {{}}
schedule = simpy.Environment.schedule
for name, a in archs.items():
    n = [0]
    def counting(self, *args, **kw):
        n[0] += 1
        return schedule(self, *args, **kw)
    simpy.Environment.schedule = counting
    stats = run(graphs[name], a)
    simpy.Environment.schedule = schedule
    out[name] = dict(run_s=best[name], first_run_s=first[name], events=n[0], total_cycles=stats.total_cycles,
                     nodes=graphs[name].number_of_nodes())
print(json.dumps(out))
"""


def dram_compare(arch: str, repeat: int) -> dict:
    """ResNet-18 with the pipe and the banked DRAM (DDR4-3200, LPDDR4-2400),
    side by side in one process: run() wall time (best of `repeat`, runs
    interleaved), the first run (which calibrates the banked rates), SimPy
    events scheduled and simulated cycles."""
    child = DRAM_CHILD.format(root=str(ROOT), arch=arch, repeat=repeat)
    out = subprocess.run([sys.executable, "-c", child], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="sa32_ws")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--models", default="resnet18,resnet50,mobilenetv2,deit_tiny")
    ap.add_argument("--scaling", action="store_true",
                    help="also ResNet-18 at batch 1, 2, 4, 8: time per node must stay flat")
    ap.add_argument("--dram", action="store_true",
                    help="only the banked DRAM check: ResNet-18 with the pipe and with banked DDR4-3200 / LPDDR4-2400")
    ap.add_argument("--baseline", metavar="REV", help="also measure git revision REV, interleaved (before/after)")
    args = ap.parse_args()
    if args.baseline:
        return compare(args)
    if args.dram:
        r = dram_compare(args.arch, args.repeat)
        print(f"{'dram':12s} {'run s':>7s} {'first s':>8s} {'x pipe':>7s} {'events':>9s} {'+events':>8s} {'cycles':>10s}")
        for name, v in r.items():
            print(f"{name:12s} {v['run_s']:7.3f} {v['first_run_s']:8.3f} {v['run_s'] / r['pipe']['run_s']:7.2f} "
                  f"{v['events']:9d} {v['events'] - r['pipe']['events']:+8d} {v['total_cycles']:10d}")
        return
    print(f"{'model':12s} {'arch':8s} {'nodes':>7s} {'trace s':>8s} {'tile s':>7s} {'run s':>7s} "
          f"{'simulate s':>10s} {'us/node':>8s} {'peak MB':>8s} {'sim MB':>7s}")
    runs = [(name, 1) for name in args.models.split(",")]
    topology = ROOT / "tests" / "data" / "scalesim" / "inputs" / "resnet18_sympad.csv"
    if topology.exists():
        runs.append((str(topology), 1))
    if args.scaling:
        runs += [("resnet18", b) for b in (2, 4, 8)]
    for name, batch in runs:
        r = measure(name, args.arch, args.repeat, batch)
        label = "r18 topology" if name.endswith(".csv") else name if batch == 1 else f"{name} b{batch}"
        print(f"{label:12s} {r['arch']:8s} {r['nodes']:7d} {r['trace_s']:8.2f} {r['tile_s']:7.2f} "
              f"{r['run_s']:7.2f} {r['simulate_s']:10.2f} {r['us_per_node']:8.1f} {r['peak_rss_mb']:8.0f} "
              f"{r['simulate_rss_mb']:7.0f}")


def compare(args):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), args.baseline],
                       check=True)
        try:
            print(f"{'model':12s} {'':7s} {'nodes':>7s} {'tile s':>7s} {'run s':>7s} {'simulate s':>10s} "
                  f"{'sim MB':>7s} {'cycles':>10s}")
            for name in args.models.split(","):
                for label, root in ((args.baseline[:7], base), ("this", ROOT)):
                    r = measure(name, args.arch, args.repeat, 1, root)
                    print(f"{name:12s} {label:7s} {r['nodes']:7d} {r['tile_s']:7.2f} {r['run_s']:7.2f} "
                          f"{r['simulate_s']:10.2f} {r['simulate_rss_mb']:7.0f} {r['total_cycles']:10d}", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)


if __name__ == "__main__":
    main()
