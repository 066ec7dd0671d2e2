#!/usr/bin/env python3
"""More DRAMsim3 reference timings (next to the shared dramsim3_reference.csv):
mixed read/write, two interleaved streams and 2-D tile rows, on the four
presets of archsim/data/dram/. DRAMsim3: umd-memsys/DRAMsim3 commit
29817593b3389f1337235d63cac515024ab8fd6e, built from source with cmake
(`mkdir build && cd build && cmake .. && make dramsim3main`; not committed).
Same method as make_reference.py: 64-byte requests all offered at cycle 0,
done_cycles = the smallest `-c` at which every request has completed
(binary search). Usage: make_patterns.py DRAMSIM3_DIR OUT.csv"""
import csv, json, os, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from patterns import LINE, pattern  # noqa: E402

D, OUT = sys.argv[1], sys.argv[2]
BIN = os.path.join(D, "build", "dramsim3main")
CONFIGS = ["DDR4_8Gb_x16_3200.ini", "DDR4_8Gb_x16_2400.ini", "LPDDR4_8Gb_x16_2400.ini", "HBM2_8Gb_x128.ini"]
NBYTES = 1 << 18
PATTERNS = ["seq_read", "mixed_rw", "two_streams", "tile_rows_512_8192"]


def run(cfg, trace, cycles, tmp):
    subprocess.run([BIN, os.path.join(D, "configs", cfg), "-c", str(cycles), "-t", trace, "-o", tmp],
                   check=True, capture_output=True)
    ch = list(json.load(open(os.path.join(tmp, "dramsim3.json"))).values())
    return (sum(x["num_reads_done"] for x in ch), sum(x["num_writes_done"] for x in ch),
            sum(x["average_read_latency"] * x["num_reads_done"] for x in ch),
            sum(x["num_read_row_hits"] + x["num_write_row_hits"] for x in ch),
            sum(x["num_read_cmds"] + x["num_write_cmds"] for x in ch))


def tck(cfg):
    for line in open(os.path.join(D, "configs", cfg)):
        if line.strip().startswith("tCK"):
            return float(line.split("=")[1])


rows = []
for cfg in CONFIGS:
    for name in PATTERNS:
        with tempfile.TemporaryDirectory() as tmp:
            trace = os.path.join(tmp, "t.trace")
            reqs = [(a, w) for a, _, w, _ in pattern(name, NBYTES)]
            with open(trace, "w") as f:
                for a, w in reqs:
                    f.write(f"{hex(a)} {'WRITE' if w else 'READ'} 0\n")
            n = len(reqs); lo, hi = 1, 1024
            while sum(run(cfg, trace, hi, tmp)[:2]) < n:
                lo, hi = hi, hi * 2
                assert hi < 1 << 26, "never completes"
            while hi - lo > 1:
                mid = (lo + hi) // 2
                r, w, *_ = run(cfg, trace, mid, tmp)
                lo, hi = (lo, mid) if r + w >= n else (mid, hi)
            r, w, lat, hits, cmds = run(cfg, trace, hi, tmp)
            t = tck(cfg)
            rows.append({"config": cfg, "pattern": name, "bytes": n * LINE, "requests": n, "tCK_ns": t,
                         "done_cycles": hi, "done_ns": round(hi * t, 1), "GBps": round(n * LINE / (hi * t), 3),
                         "mean_read_latency_cycles": round(lat / r, 1) if r else "",
                         "row_hit_rate": round(hits / cmds, 4) if cmds else ""})
            print(rows[-1], flush=True)
with open(OUT, "w", newline="") as f:
    wr = csv.DictWriter(f, fieldnames=list(rows[0])); wr.writeheader(); wr.writerows(rows)
