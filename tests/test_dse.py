"""Design-space sweeps: every grid point once, results appended as they come,
and an interrupted sweep resumes where it stopped."""

import pytest

import archsim.api
from archsim.dse import expand, load_done, pareto_front, parse_grid, sweep
from archsim.ir.errors import ArchsimError
from archsim.ir.layer_spec import LayerSpec

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
    calls = _counting_simulate(monkeypatch)

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


# -- what a result depends on --------------------------------------------------

def _counting_simulate(monkeypatch):
    calls = []
    real = archsim.api.simulate

    def counting(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(archsim.api, "simulate", counting)
    return calls


def test_results_of_other_inputs_are_never_reused(tmp_path, monkeypatch):
    """A results file written for another workload, weight format, energy
    table or cost model must not answer for this sweep (it used to: the key
    was only the architecture name and the overrides)."""
    import shutil

    import archsim.dse
    from archsim.energy import EnergyTable
    from archsim.ir.formats import DenseFormat

    out = tmp_path / "s.jsonl"
    grid = {"pe_array.rows": [16, 32]}
    calls = _counting_simulate(monkeypatch)
    first = sweep(LAYERS, ["sa32_ws"], grid, out)
    assert len(calls) == 2
    reused = []
    again = sweep(LAYERS, ["sa32_ws"], grid, out, on_reused=reused.append)
    assert len(calls) == 2 and len(reused) == 2 and again == first  # same inputs: reused, and said so

    bigger = [LayerSpec("c1", "conv", M=196, N=128, K=576, in_elems=16 * 16 * 64), LAYERS[1]]
    other = sweep(bigger, ["sa32_ws"], grid, out)  # another model
    assert len(calls) == 4
    assert [r["latency_cycles"] for r in other] != [r["latency_cycles"] for r in first]
    assert pareto_front(other)[0]["key"] in {r["key"] for r in other}

    int4 = [LayerSpec(L.name, L.op, M=L.M, N=L.N, K=L.K, in_elems=L.in_elems, fmt=DenseFormat(bits=4))
            for L in LAYERS]
    sweep(int4, ["sa32_ws"], grid, out)  # other weights
    assert len(calls) == 6

    table = tmp_path / "energy.csv"
    shutil.copy(EnergyTable.default().path, table)
    sweep(LAYERS, ["sa32_ws"], grid, out, energy_table=table)  # same content, other path (a moved checkout)
    assert len(calls) == 6
    table.write_text(table.read_text() + "\n")
    sweep(LAYERS, ["sa32_ws"], grid, out, energy_table=table)  # same path, other content
    assert len(calls) == 8

    monkeypatch.setattr(archsim.dse, "COST_MODEL_VERSION", archsim.dse.COST_MODEL_VERSION + 1)
    sweep(LAYERS, ["sa32_ws"], grid, out)  # a newer cost model
    assert len(calls) == 10
    assert len(load_done(out)) == 10


def test_the_key_is_the_resolved_architecture(tmp_path, monkeypatch):
    # an edit of the base YAML changes every point even with the same name and overrides
    calls = _counting_simulate(monkeypatch)
    from archsim.config import ARCH_DIR

    out = tmp_path / "s.jsonl"
    yaml = tmp_path / "mine.yaml"
    yaml.write_text((ARCH_DIR / "sa32_ws.yaml").read_text())
    sweep(LAYERS, [str(yaml)], {"pe_array.rows": [16]}, out)
    sweep(LAYERS, [str(yaml)], {"pe_array.rows": [16]}, out)
    assert len(calls) == 1
    yaml.write_text(yaml.read_text().replace("clock_mhz: 1000", "clock_mhz: 800"))
    sweep(LAYERS, [str(yaml)], {"pe_array.rows": [16]}, out)
    assert len(calls) == 2


def test_rows_say_what_produced_them(tmp_path):
    from archsim import COST_MODEL_VERSION, __version__
    from archsim.energy import EnergyTable

    rows = sweep(LAYERS, ["sa32_ws"], {"pe_array.rows": [16]}, tmp_path / "s.jsonl", workload="two layers")
    p = rows[0]["produced_by"]
    assert p["archsim_version"] == __version__ and p["cost_model_version"] == COST_MODEL_VERSION
    assert p["workload"] == "two layers" and p["weights"] == "dense:bits=8" and len(p["workload_sha256"]) == 64
    assert p["energy_table"] == str(EnergyTable.default().path) and len(p["energy_table_sha256"]) == 64


def test_cli_sweep_reports_reused_points_and_ignores_other_models(tmp_path, capsys):
    from archsim.cli import main

    out = tmp_path / "s.jsonl"
    argv = ["sweep", "--model", "resnet20", "--grid", "pe_array.rows=16,32", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    def how(text):
        return [line.split()[0] for line in text.splitlines() if line.startswith("  ")][:2]

    assert how(capsys.readouterr().out) == ["simulated", "simulated"]
    assert main(argv) == 0
    assert how(capsys.readouterr().out) == ["reused", "reused"]
    assert main(argv + ["--weights", "dense:bits=4"]) == 0  # other weights: nothing reused
    text = capsys.readouterr().out
    assert how(text) == ["simulated", "simulated"]
    assert "2 other results" in text and len(out.read_text().splitlines()) == 4


def test_same_sweep_writes_the_same_file(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    sweep(LAYERS, ["sa32_ws", "sa32_os"], GRID, a)
    sweep(LAYERS, ["sa32_ws", "sa32_os"], GRID, b)
    assert a.read_bytes() == b.read_bytes()
    assert "wall" not in a.read_text() and "time" not in a.read_text()
