"""Design-space sweeps: every grid point once, results appended as they come,
and an interrupted sweep resumes where it stopped."""

import pytest

import archsim.api
from archsim.dse import expand, load_done, pareto_front, parse_grid, sweep
from archsim.errors import ArchsimError
from workloads.layer_spec import LayerSpec

LAYERS = [LayerSpec("c1", "conv", M=196, N=64, K=576, in_elems=16 * 16 * 64),
          LayerSpec("fc", "linear", M=1, N=100, K=64)]
GRID = {"pe_array.rows": [16, 32], "dram.bandwidth_bytes_per_cycle": [8, 32]}


def test_grid_expansion():
    assert parse_grid(["pe_array.rows=16,32", "pe_array.dataflow=ws,os"]) == {
        "pe_array.rows": [16, 32], "pe_array.dataflow": ["ws", "os"]}
    points = expand(["sa32_ws", "sa32_os"], GRID)
    assert len(points) == 8 and len(set(points)) == 8
    with pytest.raises(ArchsimError):
        parse_grid(["pe_array.rows"])


def test_interrupted_sweep_resumes_without_redoing_points(tmp_path, monkeypatch):
    out = tmp_path / "sweep.jsonl"
    calls = []
    real = archsim.api.simulate

    def counting(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(archsim.api, "simulate", counting)

    def stop_after_two(row):
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep(LAYERS, ["sa32_ws"], GRID, out, on_point=stop_after_two)
    assert len(load_done(out)) == 2
    with out.open("a") as f:
        f.write('{"key": "torn')  # a write cut off by the interruption
    rows = sweep(LAYERS, ["sa32_ws"], GRID, out)
    assert len(calls) == 4  # two before the interruption, two after
    assert len(rows) == 4 and all(r["error"] is None for r in rows)
    # more bandwidth never makes a design slower
    by = {tuple(r["overrides"]): r for r in rows}
    for rows_ in (16, 32):
        slow = by[("dram.bandwidth_bytes_per_cycle=8", f"pe_array.rows={rows_}")]
        fast = by[("dram.bandwidth_bytes_per_cycle=32", f"pe_array.rows={rows_}")]
        assert fast["latency_cycles"] <= slow["latency_cycles"]


def test_points_the_architecture_cannot_run_are_recorded_not_fatal(tmp_path):
    rows = sweep(LAYERS, ["sa32_ws"], {"buffers.weight.capacity_bytes": [256, 65536]}, tmp_path / "s.jsonl")
    assert "too small" in rows[0]["error"] and rows[1]["error"] is None


def test_pareto_front():
    rows = [{"latency_ms": 1, "energy_uj": 5}, {"latency_ms": 2, "energy_uj": 3},
            {"latency_ms": 3, "energy_uj": 4}, {"latency_ms": 4, "energy_uj": 1},
            {"latency_ms": 0.5, "energy_uj": 9, "error": "x"}]
    assert [(r["latency_ms"], r["energy_uj"]) for r in pareto_front(rows)] == [(1, 5), (2, 3), (4, 1)]


def test_cli_sweep_and_plot(tmp_path, capsys):
    from archsim.cli import main

    out, png = tmp_path / "s.jsonl", tmp_path / "p.png"
    assert main(["sweep", "--model", "resnet20", "--grid", "pe_array.rows=16,32", "--out", str(out),
                 "--plot", str(png)]) == 0
    assert "Pareto front" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == 2 and png.stat().st_size > 1000
    assert main(["sweep", "--model", "resnet20", "--grid", "pe_array.rows=16,32", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 2  # nothing re-simulated
