"""Reproduce the SCALE-Sim v3 N:M-sparse reference runs stored next to this
script (tests/data/scalesim_sparse/<run>/*.csv). Tests never run SCALE-Sim;
they read the stored CSVs. See README.md for provenance.

NumPy 2.4 breaks SCALE-Sim 3.0.0 (memory/double_buffered_scratchpad_mem.py
does int(max(list of 1-element arrays)), an error since NumPy 2.4), hence
the pin; these runs used NumPy 2.3.5.

SCALE-Sim lives in its own venv so the project env is not disturbed:

    python -m venv /work/venv-scalesim
    /work/venv-scalesim/bin/pip install scalesim==3.0.0 "numpy<2.4"
    python tests/data/scalesim_sparse/make_reference.py            # all runs
    python tests/data/scalesim_sparse/make_reference.py ws32_2of4  # one run

Each run executes in a child process of the SCALE-Sim venv's python (the
same API call as /work/shared/reference/scalesim/README.md, with
save_disk_space=True), one after the other; the wall time and peak RSS of
each child (os.wait4) are appended to runs.csv. Inputs (topology CSVs and
.cfg files) are (re)written to inputs/ from the constants below: the layer
rows are copied verbatim from
/work/shared/reference/scalesim/inputs/resnet18_sympad.csv, the .cfg files
are /work/shared/reference/scalesim/inputs/sa32_ws_calc.cfg with only
run_name, ArrayHeight/ArrayWidth and the [sparsity] section changed.
"""
from __future__ import annotations

import csv
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
INPUTS = HERE / "inputs"
SCALESIM_PYTHON = os.environ.get("SCALESIM_PYTHON", "/work/venv-scalesim/bin/python")

HEADER = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
          "Num Filter, Strides, Sparsity,")
# (name, H, W, R, S, C, K, stride) from resnet18_sympad.csv: first conv, a
# 3x3 conv, a 1x1 shortcut (stride 2), a deep 3x3 conv and the FC as a 1x1 conv.
LAYERS = [
    ("Conv1", 230, 230, 7, 7, 3, 64, 2),
    ("Conv2_1a", 58, 58, 3, 3, 64, 64, 1),
    ("Conv3_s", 56, 56, 1, 1, 64, 128, 2),
    ("Conv5_2a", 9, 9, 3, 3, 512, 512, 1),
    ("FC", 1, 1, 1, 1, 512, 1000, 1),
]

CFG_TEMPLATE = """[general]
run_name = {run_name}

[architecture_presets]
ArrayHeight:    {rows}
ArrayWidth:     {cols}
IfmapSramSzkB:   64
FilterSramSzkB:  64
OfmapSramSzkB:   32
IfmapOffset:    0
FilterOffset:   10000000
OfmapOffset:    20000000
Bandwidth : 10
Dataflow : ws
MemoryBanks:   1
ReadRequestBuffer: 32
WriteRequestBuffer: 32

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport : {support}
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""

# run name -> (cfg file stem, rows=cols, SparsitySupport, (N, M) in the topology)
RUNS = {
    "ws32_1of1": ("sa32_ws_calc_sparse", 32, "true", (1, 1)),
    "ws32_2of4": ("sa32_ws_calc_sparse", 32, "true", (2, 4)),
    "ws32_1of4": ("sa32_ws_calc_sparse", 32, "true", (1, 4)),
    "ws32_2of8": ("sa32_ws_calc_sparse", 32, "true", (2, 8)),
    # control: a 2:4 topology with SparsitySupport false runs dense
    "ws32_2of4_support_off": ("sa32_ws_calc_sparsity_off", 32, "false", (2, 4)),
    "ws64_2of4": ("sa64_ws_calc_sparse", 64, "true", (2, 4)),
}

REPORTS = ("COMPUTE_REPORT.csv", "SPARSE_REPORT.csv", "BANDWIDTH_REPORT.csv",
           "DETAILED_ACCESS_REPORT.csv")
LAYOUT = "/work/shared/reference/scalesim/inputs/dummy_layout.csv"


def topology_path(n: int, m: int) -> Path:
    return INPUTS / f"resnet18_5layers_{n}of{m}.csv"


def write_inputs() -> None:
    INPUTS.mkdir(exist_ok=True)
    for cfg_stem, size, support, (n, m) in RUNS.values():
        (INPUTS / f"{cfg_stem}.cfg").write_text(
            CFG_TEMPLATE.format(run_name=cfg_stem, rows=size, cols=size, support=support))
        lines = [HEADER] + [",".join(str(v) for v in row) + f",{n}:{m}," for row in LAYERS]
        topology_path(n, m).write_text("\n".join(lines) + "\n")


def worker(cfg: str, topo: str, out: str) -> None:
    """Runs inside the SCALE-Sim venv."""
    from scalesim.scale_sim import scalesim
    s = scalesim(save_disk_space=True, verbose=True, config=cfg, topology=topo,
                 layout=LAYOUT, input_type_gemm=False)
    s.run_scale(top_path=out)


def scalesim_version() -> str:
    """'scalesim X / numpy Y' of the SCALE-Sim venv."""
    return subprocess.run([SCALESIM_PYTHON, "-c",
                           "import importlib.metadata as m; "
                           "print(m.version('scalesim'), m.version('numpy'))"],
                          capture_output=True, text=True, check=True).stdout.strip()


def run_one(name: str, version: str) -> None:
    cfg_stem, size, support, (n, m) = RUNS[name]
    cfg = INPUTS / f"{cfg_stem}.cfg"
    topo = topology_path(n, m)
    with tempfile.TemporaryDirectory() as tmp:
        log = open(Path(tmp) / "log.txt", "w")
        t0 = time.time()
        p = subprocess.Popen([SCALESIM_PYTHON, __file__, "--worker", str(cfg), str(topo), tmp],
                             stdout=log, stderr=subprocess.STDOUT)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.time() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        log.close()
        if p.returncode != 0:
            print((Path(tmp) / "log.txt").read_text()[-3000:])
            raise SystemExit(f"{name}: SCALE-Sim exited with {p.returncode}")
        dest = HERE / name
        dest.mkdir(exist_ok=True)
        for rep in REPORTS:
            src = Path(tmp) / cfg_stem / rep
            if src.exists():
                shutil.copy(src, dest / rep)
    rss_mb = ru.ru_maxrss / 1024  # Linux: KiB
    print(f"{name}: {wall:.1f} s, peak RSS {rss_mb:.0f} MB")
    runs_csv = HERE / "runs.csv"
    fields = ["run", "cfg", "topology", "array", "sparsity_support", "n", "m",
              "scalesim_numpy_versions", "python", "machine", "cpus", "wall_s", "peak_rss_mb", "date"]
    rows = []
    if runs_csv.exists():  # a re-run replaces its own row
        with runs_csv.open() as f:
            rows = [r for r in csv.DictReader(f) if r["run"] != name]
    rows.append(dict(zip(fields, [
        name, f"inputs/{cfg.name}", f"inputs/{topo.name}", f"{size}x{size}", support, n, m, version,
        platform.python_version(), platform.machine(), os.cpu_count(), f"{wall:.1f}", f"{rss_mb:.0f}",
        time.strftime("%Y-%m-%d")])))
    order = list(RUNS)
    rows.sort(key=lambda r: order.index(r["run"]) if r["run"] in order else len(order))
    with runs_csv.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def main(argv: list[str]) -> None:
    if argv[:1] == ["--worker"]:
        worker(*argv[1:4])
        return
    names = argv or list(RUNS)
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        raise SystemExit(f"unknown run(s) {unknown}; known: {list(RUNS)}")
    write_inputs()
    version = scalesim_version()
    for name in names:
        run_one(name, version)


if __name__ == "__main__":
    main(sys.argv[1:])
