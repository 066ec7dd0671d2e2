"""SCALE-Sim v3 N:M sparse reference runs (tests/data/scalesim_sparse, made by
make_reference.py there; these tests never run SCALE-Sim). The stored
COMPUTE_REPORT cycles must follow scalesim_ws_sparse_compute_cycles exactly,
and the SPARSE_REPORT storage SCALE-Sim's ELLPACK-block count; the importer
must read the runs' own topology/.cfg pairs as SCALE-Sim ran them."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from archsim.ir.formats import DenseFormat, NMFormat
from workloads.scalesim_import import (
    load_sparse_reference,
    scalesim_nm_kept_rows,
    scalesim_ws_sparse_compute_cycles,
)

DATA = Path(__file__).resolve().parent / "data" / "scalesim_sparse"
with (DATA / "runs.csv").open() as _f:
    RUNS = [r["run"] for r in csv.DictReader(_f)]
LAYERS = ["Conv1", "Conv2_1a", "Conv3_s", "Conv5_2a", "FC"]


def test_all_runs_stored():
    assert set(RUNS) >= {"ws32_1of1", "ws32_2of4", "ws32_1of4", "ws32_2of8",
                         "ws32_2of4_support_off", "ws64_2of4"}
    total = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file())
    assert total < 1_000_000


@pytest.mark.parametrize("run", RUNS)
def test_formula_reproduces_scalesim_compute_cycles(run):
    ref = load_sparse_reference(DATA / run)
    assert [r["name"] for r in ref] == LAYERS
    for r in ref:
        assert r["dataflow"] == "ws" and r["stall_cycles"] == 0
        got = scalesim_ws_sparse_compute_cycles(r["rows"], r["cols"], r["K"], r["N_filters"], r["T"],
                                                r["n"], r["m"])
        assert got == r["compute_cycles"], (run, r["name"])


@pytest.mark.parametrize("run", [r for r in RUNS if not r.endswith("support_off")])
def test_sparse_report_is_ellpack_block_storage(run):
    # SCALE-Sim counts words: K' x filters kept values plus ceil(log2 M) bits of
    # metadata per kept value, over 32-bit words (compute/compression.py).
    for r in load_sparse_reference(DATA / run):
        kept = scalesim_nm_kept_rows(r["K"], r["n"], r["m"]) * r["N_filters"]
        meta = kept * math.ceil(math.log2(r["m"])) / 32
        s = r["sparse"]
        assert s["Sparsity Representation"] == "ellpack_block"
        assert s["Original Filter Storage"] == r["K"] * r["N_filters"]
        assert s["Filter Metadata Storage"] == pytest.approx(meta)
        assert s["New Storage (Filter+Metadata)"] == pytest.approx(kept + meta)
        # the filter SRAM reads are exactly the kept values
        assert r["access"]["SRAM Filter Reads"] == kept


def test_layers_read_as_scalesim_ran_them():
    for r in load_sparse_reference(DATA / "ws32_2of4"):
        assert (r["n"], r["m"], r["topology_row"]["Sparsity"]) == (2, 4, "2:4")
        assert r["layer"].fmt == NMFormat(n=2, m=4, value_bits=8, mask_encoding="offsets", run_len=r["K"])
    for r in load_sparse_reference(DATA / "ws32_2of4_support_off"):
        # SparsitySupport false: SCALE-Sim ignores the 2:4 column and runs dense
        assert (r["n"], r["m"], r["topology_n"], r["topology_m"]) == (1, 1, 2, 4)
        assert r["layer"].fmt == DenseFormat(bits=8) and r["sparse"] is None


def test_support_off_and_one_of_one_equal_the_dense_reference():
    dense = [r["compute_cycles"] for r in load_sparse_reference(DATA / "ws32_1of1")]
    off = [r["compute_cycles"] for r in load_sparse_reference(DATA / "ws32_2of4_support_off")]
    # the full-network dense run (resnet18_sympad, tests/data/scalesim)
    assert dense == off == [128629, 116279, 7479, 329471, 48639]


def test_sparsity_cycles_scale_with_kept_folds():
    def cycles(run):
        return {r["name"]: r["compute_cycles"] for r in load_sparse_reference(DATA / run)}
    dense, half, quarter, two8 = (cycles(r) for r in ("ws32_1of1", "ws32_2of4", "ws32_1of4", "ws32_2of8"))
    # same kept count 1:4 and 2:8 (and partial groups identical for these K)
    assert quarter == two8
    # K a multiple of 4*32: folds halve exactly, so cycles + 1 halve
    assert half["Conv5_2a"] + 1 == (dense["Conv5_2a"] + 1) // 2
    # Conv1 (K = 147): 2:4 keeps 74 rows -> 3 row folds of 5 dense: not a 2x gain
    assert (half["Conv1"] + 1) * 5 == (dense["Conv1"] + 1) * 3


def test_formula_edge_cases():
    # partial last group keeps min(r, N); N = M is dense
    assert scalesim_nm_kept_rows(147, 2, 4) == 74 and scalesim_nm_kept_rows(147, 1, 4) == 37
    assert scalesim_nm_kept_rows(9, 2, 8) == 3 and scalesim_nm_kept_rows(10, 2, 8) == 4
    assert scalesim_nm_kept_rows(147, 4, 4) == 147
    assert scalesim_ws_sparse_compute_cycles(32, 32, 576, 64, 3136) == 116279
    assert scalesim_ws_sparse_compute_cycles(32, 32, 576, 64, 3136, 4, 4) == 116279


# -- archsim's N:M sparse array against the stored SCALE-Sim v3 sparse runs ----------

SPARSE_DATA = Path(__file__).resolve().parent / "data" / "scalesim_sparse"


@pytest.mark.parametrize("run", ["ws32_1of1", "ws32_2of4", "ws32_1of4", "ws32_2of8", "ws32_2of4_support_off",
                                 "ws64_2of4"])
def test_nm_systolic_compute_cycles_equal_scalesim_sparse_runs(run):
    """SCALE-Sim's own inputs through archsim's importers: the .cfg's
    [sparsity] section picks the nm_systolic kind, the topology's Sparsity
    column gives each layer its N:M format. PE compute cycles per layer must
    equal SCALE-Sim's within 1% (they do to the cycle, less SCALE-Sim's -1)."""
    import csv

    from archsim.config import load_arch
    from archsim.engine import run as simulate_graph
    from workloads.scalesim_import import read_scalesim_workload
    from archsim.tiling import tile

    meta = next(r for r in csv.DictReader((SPARSE_DATA / "runs.csv").open()) if r["run"] == run)
    cfg, topo = SPARSE_DATA / meta["cfg"], SPARSE_DATA / meta["topology"]
    layers, config = read_scalesim_workload(topo, cfg)
    arch = load_arch(cfg)
    assert arch.pe_array.kind == ("nm_systolic" if config.sparsity_support else "systolic")
    stats = simulate_graph(tile(layers, arch), arch)
    ref = {r["name"]: r["compute_cycles"] for r in load_sparse_reference(SPARSE_DATA / run)}
    for ls in stats.layers:
        assert ls.compute_cycles == pytest.approx(ref[ls.name], rel=0.01), ls.name
        assert abs(ls.compute_cycles - ref[ls.name]) <= 1, ls.name
