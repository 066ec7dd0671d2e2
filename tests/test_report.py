"""Report: rows are Stats counts plus the energy model, totals are sums of the
rows, and every output (terminal table, CSV, JSON, PNG) carries the same numbers."""
import json

import pandas as pd
import pytest

from archsim.config import load_arch
from archsim.energy import EnergyModel, EnergyTable
from archsim.report import energy_components
from archsim.engine import run
from archsim.report import Report, build_report
from archsim.ir.formats import VQFormat
from archsim.ir.layer_spec import LayerSpec
from archsim.tiling import tile

SUMMED = ("macs", "total_cycles", "compute_cycles", "stall_cycles", "dram_read_bytes", "dram_write_bytes",
          "sram_bytes", "energy_total_pj", "energy_dynamic_pj", "energy_dram_pj", "energy_pe_arith_pj",
          "energy_static_pj")


def layers(fmt=None):
    kw = {"fmt": fmt} if fmt else {}
    return [LayerSpec("conv1", "conv", M=196, N=64, K=576, in_elems=16 * 16 * 64, **kw),
            LayerSpec("conv2", "conv", M=196, N=32, K=576, in_elems=16 * 16 * 64, **kw),
            LayerSpec("fc", "linear", M=1, N=10, K=512, **kw)]


@pytest.fixture(scope="module", params=["sa32_ws", "sa32_os", "vq32_ws"])
def run_and_report(request):
    arch = load_arch(request.param)
    stats = run(tile(layers(VQFormat(k=256, d=16) if request.param == "vq32_ws" else None), arch), arch)
    return stats, arch, build_report(stats, arch, EnergyModel(arch, EnergyTable.default()))


def test_rows_follow_the_stats(run_and_report):
    stats, arch, rep = run_and_report
    assert [r["name"] for r in rep.layers] == [l.name for l in stats.layers]
    for r, ls in zip(rep.layers, stats.layers):
        assert r["total_cycles"] == ls.total_cycles and r["stall_cycles"] == ls.stall_cycles
        assert r["sram_bytes"] == sum(ls.sram_read_bytes.values()) + sum(ls.sram_write_bytes.values())
        assert r["energy_total_pj"] == pytest.approx(sum(r[f"energy_{c}_pj"] for c in energy_components(r)))
    assert rep.arch == arch.name and rep.clock_mhz == arch.clock_mhz
    assert rep.energy_table == str(EnergyTable.default().path)


def test_totals_are_the_sum_of_the_layers(run_and_report):
    stats, arch, rep = run_and_report
    for k in SUMMED:
        assert rep.totals[k] == pytest.approx(sum(r[k] for r in rep.layers)), k
    assert rep.totals["total_cycles"] == stats.total_cycles
    assert rep.totals["latency_ms"] == pytest.approx(stats.total_cycles / (arch.clock_mhz * 1e3))
    assert list(rep.totals) == list(rep.layers[0])


def test_utilisation_is_macs_over_array_time_and_at_most_one(run_and_report):
    _, arch, rep = run_and_report
    pes = arch.pe_array.rows * arch.pe_array.cols
    for r in rep.layers + [rep.totals]:
        assert 0 < r["utilisation"] <= 1
        assert r["utilisation"] == pytest.approx(r["macs"] / (pes * r["total_cycles"]))
    # the run's utilisation is recomputed, not the mean of the layers'
    assert rep.totals["utilisation"] == pytest.approx(
        sum(r["macs"] for r in rep.layers) / (pes * sum(r["total_cycles"] for r in rep.layers)))


def test_csv_round_trip(run_and_report, tmp_path):
    _, _, rep = run_and_report
    rep.to_csv(tmp_path / "r.csv")
    df = pd.read_csv(tmp_path / "r.csv", keep_default_na=False)
    assert list(df.columns) == list(rep.layers[0])
    assert list(df["name"]) == [r["name"] for r in rep.layers] + ["TOTAL"]
    for i, r in enumerate(rep.layers + [rep.totals]):
        for k, v in r.items():
            if isinstance(v, str):
                assert df[k][i] == v
            else:
                assert df[k][i] == pytest.approx(v, rel=1e-12), k
    assert rep.to_dataframe(total=False).shape[0] == len(rep.layers)


def test_json_round_trip(run_and_report, tmp_path):
    _, arch, rep = run_and_report
    rep.to_json(tmp_path / "r.json")
    assert Report.from_json(tmp_path / "r.json") == rep
    data = json.loads((tmp_path / "r.json").read_text())
    assert {"layers", "totals", "area_um2", "arch", "arch_spec", "energy_table", "unit_costs"} <= set(data)
    assert data["arch_spec"]["pe_array"]["rows"] == arch.pe_array.rows
    assert data["area_um2"]["total"] == pytest.approx(sum(v for k, v in data["area_um2"].items() if k != "total"))


def test_plot_writes_a_png(run_and_report, tmp_path):
    _, _, rep = run_and_report
    rep.plot(tmp_path / "r.png")
    data = (tmp_path / "r.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_format_table_is_aligned_and_complete(run_and_report):
    _, _, rep = run_and_report
    text = rep.format_table()
    lines = text.splitlines()
    header, body = lines[1], lines[2:]
    assert header.split()[:3] == ["layer", "cycles", "compute"]
    assert len({len(l) for l in body}) == 1 and len(header) == len(body[0])  # every row as wide as the header
    for r in rep.layers:
        assert any(l.startswith(r["name"]) for l in body)
    assert body[-1].startswith("TOTAL") and f"{rep.totals['total_cycles']:,}" in body[-1]
    for c in rep.top_components():
        assert f"{c} uJ" in header


def test_energy_model_defaults_to_the_arch_table():
    arch = load_arch("sa32_ws")
    stats = run(tile(layers()[:1], arch), arch)
    assert build_report(stats, arch) == build_report(stats, arch, EnergyModel(arch, EnergyTable.default()))


def test_json_has_per_unit_cycles_and_per_buffer_bytes_of_every_layer(run_and_report, tmp_path):
    stats, _, rep = run_and_report
    rep.to_json(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert [c["name"] for c in data["layer_counters"]] == [l.name for l in stats.layers]
    for c, ls in zip(data["layer_counters"], stats.layers):
        for k in ("busy_cycles", "wait_data_cycles", "wait_space_cycles", "sram_read_bytes", "sram_write_bytes",
                  "dram_read_by_buffer"):
            assert c[k] == dict(getattr(ls, k)), k
        assert c["busy_cycles"]["pe"] == ls.compute_cycles
        assert sum(c["dram_read_by_buffer"].values()) == ls.dram_read_bytes
        assert sum(c["sram_read_bytes"].values()) + sum(c["sram_write_bytes"].values()) == \
            next(r for r in data["layers"] if r["name"] == ls.name)["sram_bytes"]


def test_report_says_what_it_simulated(tmp_path):
    from archsim.api import simulate

    rep = simulate(layers(VQFormat(k=256, d=16)), "vq32_ws", overrides=["pe_array.rows=16"], workload="toy")
    assert (rep.workload, rep.weights, rep.overrides) == ("toy", "vq:k=256,d=16", ["pe_array.rows=16"])
    head = rep.format_table().splitlines()[0]
    assert head.startswith("toy, weights vq:k=256,d=16, on vq32_ws (pe_array.rows=16)")
    rep.to_json(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert (data["workload"], data["weights"], data["overrides"]) == ("toy", "vq:k=256,d=16", ["pe_array.rows=16"])
    assert "rows=16 from --set" in data["arch_spec"]["pe_array"]["source"]
    assert Report.from_json(tmp_path / "r.json") == rep
    # the PNG's title says it too
    from matplotlib.figure import Figure

    titles = []
    real = Figure.suptitle
    Figure.suptitle = lambda self, t, **kw: titles.append(t) or real(self, t, **kw)
    try:
        rep.plot(tmp_path / "r.png")
    finally:
        Figure.suptitle = real
    assert titles == [rep.describe()]
    default = simulate(layers(), "sa32_ws")
    assert default.workload == "3 layers" and default.weights == "dense:bits=8" and default.overrides == []
