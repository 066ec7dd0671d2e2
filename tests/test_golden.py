"""Regression net for the simulator: 14 recorded cases (every PE kind, every
weight format, the ws loop orders; tests/data/golden/cases.py) must give
exactly their recorded cycles and bytes, per layer, the same DRAM bytes
per buffer, on-chip bytes, action totals and energy, and the same tile graph
(a fingerprint of every node and edge in queue order).
A speed-up must not move them; a change of the model that is meant to moves
them together with archsim.COST_MODEL_VERSION and regenerates the file."""
import json
from pathlib import Path

import pytest

from archsim import COST_MODEL_VERSION

DATA = Path(__file__).resolve().parent / "data" / "golden"


@pytest.fixture(scope="module")
def recorded():
    return json.loads((DATA / "golden.json").read_text())


@pytest.fixture(scope="module")
def measured():
    import importlib.util

    spec = importlib.util.spec_from_file_location("golden_cases", DATA / "cases.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.results(mod.cases())


def test_golden_file_belongs_to_this_cost_model(recorded):
    assert recorded["cost_model_version"] == COST_MODEL_VERSION, \
        "the cost model changed: regenerate with `python tests/data/golden/cases.py`"


@pytest.mark.parametrize("case", sorted(json.loads((DATA / "golden.json").read_text())["results"]))
def test_case_reproduces_its_recorded_result(case, recorded, measured):
    want, got = recorded["results"][case], measured[case]
    _same_graph(case, got["fingerprint"], want["fingerprint"])
    for key in ("total_cycles", "dram_bytes", "dram_write_bytes", "layer_cycles", "layer_compute_cycles",
                "dram_read_by_buffer", "sram_read_bytes", "sram_write_bytes", "actions"):
        assert got[key] == want[key], f"{case}: {key}"
    assert got["energy_total_pj"] == pytest.approx(want["energy_total_pj"], rel=1e-12)


def _same_graph(case: str, got: dict, want: dict):
    """Equal tile graphs, or the first chunk of nodes that moved, named."""
    chunk = want["chunk_nodes"]
    for i, (g, w) in enumerate(zip(got["chunks"], want["chunks"])):
        if g != w:
            pytest.fail(f"{case}: tile graph differs from node {i * chunk} on (nodes {i * chunk}.."
                        f"{(i + 1) * chunk - 1}, layer {want['chunk_first_layer'][i]} onwards)")
    assert (got["nodes"], got["edges"]) == (want["nodes"], want["edges"]), f"{case}: graph size"
