"""Fidelity against SCALE-Sim v3 (tests/data/scalesim): ResNet-18 on
the 32x32 weight- and output-stationary arrays, imported from the exact
topology CSV and .cfg files that produced the reference.

What must agree, and where archsim deliberately differs:
  * PE compute cycles: within 1% per layer (in fact within 1 cycle: SCALE-Sim
    reports its fold formula minus one).
  * Latency: SCALE-Sim's CALC mode assumes whatever DRAM bandwidth avoids
    stalls; archsim models a real channel. Given ample bandwidth archsim's
    latency equals SCALE-Sim's compute cycles within 0.1%; on the shipped
    LPDDR4 channel it is larger, and the difference is the stall it reports.
  * Filter DRAM reads: weight-stationary reads every weight once in both.
    Output-stationary: both re-read the weights on every pixel fold when they
    do not fit in the filter SRAM; when they fit archsim reads them once while
    SCALE-Sim's FIFO replacement re-reads part of them.
  * Ofmap DRAM writes: output-stationary writes each output once in both.
    Weight-stationary: SCALE-Sim writes partial sums out on every row fold
    (one word each) and never reads them back; archsim keeps them in the
    output buffer when they fit and otherwise spills them at accumulator width
    (32 bit) and reads them back.
  * Ifmap DRAM reads: archsim assumes on-chip im2col (each input pixel fetched
    once per pass), so it reads no more than SCALE-Sim, which fetches im2col
    rows.
"""
import csv
import math

import pytest

from archsim.config import load_arch
from archsim.engine import run
from workloads.scalesim_import import read_topology
from archsim.tiling import tile

RUNS = {"ws": "sa32_ws_calc", "os": "sa32_os_calc"}


@pytest.fixture(scope="module")
def scalesim(request):
    from tests.conftest import REFERENCE

    rows = csv.DictReader(open(REFERENCE / "scalesim" / "results" / "resnet18_sympad_summary.csv"))
    ref = {(r["run"], r["layer"]): {k: (v if k in ("topo", "run", "layer") else float(v)) for k, v in r.items()}
           for r in rows}
    layers = read_topology(REFERENCE / "scalesim" / "inputs" / "resnet18_sympad.csv")
    out = {}
    for df, run_name in RUNS.items():
        cfg = REFERENCE / "scalesim" / "inputs" / f"{run_name}.cfg"
        arch = load_arch(cfg)
        ample = load_arch(cfg, ["dram.bandwidth_bytes_per_cycle=100000", "dram.latency_cycles=0"])
        out[df] = (arch, run(tile(layers, arch), arch), run(tile(layers, ample), ample))
    return layers, ref, out


@pytest.mark.parametrize("df", ["ws", "os"])
def test_compute_cycles_match_scalesim_per_layer(scalesim, df):
    layers, ref, out = scalesim
    _, stats, _ = out[df]
    assert len(stats.layers) == 21
    for l in stats.layers:
        sc = ref[(RUNS[df], l.name)]["compute_cycles"]
        assert l.compute_cycles == pytest.approx(sc, rel=0.01), l.name
        assert abs(l.compute_cycles - sc) <= 1, l.name


@pytest.mark.parametrize("df", ["ws", "os"])
def test_latency_with_ample_bandwidth_equals_scalesim_and_stalls_otherwise(scalesim, df):
    layers, ref, out = scalesim
    _, real, ample = out[df]
    for lr, la in zip(real.layers, ample.layers):
        sc = ref[(RUNS[df], la.name)]["compute_cycles"]
        assert la.total_cycles == pytest.approx(sc, rel=0.001), la.name
        assert ref[(RUNS[df], la.name)]["stall_cycles"] == 0  # CALC mode never stalls
        assert lr.total_cycles >= la.total_cycles
        assert lr.stall_cycles == lr.total_cycles - lr.compute_cycles
    assert real.total_cycles > ample.total_cycles  # a real channel costs something


@pytest.mark.parametrize("df", ["ws", "os"])
def test_filter_dram_reads(scalesim, df):
    layers, ref, out = scalesim
    arch, stats, _ = out[df]
    for L, l in zip(layers, stats.layers):
        sc = ref[(RUNS[df], l.name)]["dram_filter_reads"]
        ours = l.dram_read_by_buffer["weight"]
        if df == "ws":
            assert ours == sc == L.n_weights, l.name
        elif L.n_weights <= arch.buffers.weight.capacity_bytes:
            assert ours == L.n_weights <= sc, l.name
        else:
            pixel_folds = math.ceil(L.M / arch.pe_array.rows)
            assert ours == L.n_weights * pixel_folds, l.name
            assert sc <= ours, l.name


@pytest.mark.parametrize("df", ["ws", "os"])
def test_ofmap_dram_writes(scalesim, df):
    layers, ref, out = scalesim
    arch, stats, _ = out[df]
    for L, l in zip(layers, stats.layers):
        sc = ref[(RUNS[df], l.name)]["dram_ofmap_writes"]
        outputs = L.M * L.N
        if df == "os":
            assert l.dram_write_bytes == outputs
            assert sc == pytest.approx(outputs, rel=0.002)
            continue
        row_folds = math.ceil(L.K / arch.pe_array.rows)
        assert sc == pytest.approx(outputs * row_folds, rel=0.001)  # SCALE-Sim: partial sums every row fold
        psum_fits = L.M * arch.pe_array.cols * 4 <= arch.buffers.output.capacity_bytes  # one column fold
        expect = outputs if (row_folds == 1 or psum_fits) else outputs + (row_folds - 1) * outputs * 4
        assert l.dram_write_bytes == expect, l.name


@pytest.mark.parametrize("df", ["ws", "os"])
def test_ifmap_dram_reads_never_exceed_scalesim_by_much(scalesim, df):
    layers, ref, out = scalesim
    _, stats, _ = out[df]
    ours = sum(l.dram_read_by_buffer["input"] for l in stats.layers)
    theirs = sum(ref[(RUNS[df], l.name)]["dram_ifmap_reads"] for l in stats.layers)
    assert ours < theirs
    for L, l in zip(layers, stats.layers):
        sc = ref[(RUNS[df], l.name)]["dram_ifmap_reads"]
        # SCALE-Sim's output-size rule adds a row and a column of output pixels to
        # odd stride-2 layers that it then fetches nothing for; archsim fetches them
        assert l.dram_read_by_buffer["input"] <= max(sc, L.M * L.K), l.name
