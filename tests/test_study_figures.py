"""A study's figures and interactive views: the fronts (units on the axes,
colour by compression method, shape by base architecture, the front
labelled, parallel coordinates with each axis's better direction), the HTML
report (hover shows a point's parameters), and the Optuna database opening
in optuna-dashboard."""
import json
from io import BytesIO
from wsgiref.util import setup_testing_defaults

import pytest
import yaml

from archsim.cli import main
from archsim.explore import LocalExecutor, explore, objective_axes, results_dataframe
from archsim.study import load_study

TOPO = """Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,
c1, 18, 18, 3, 3, 16, 32, 1,
fc, 1, 1, 1, 1, 128, 10, 1,
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    d = tmp_path_factory.mktemp("study")
    (d / "topo.csv").write_text(TOPO)
    path = d / "study.yaml"
    path.write_text(yaml.safe_dump({
        "name": "figs", "workload": {"topology": str(d / "topo.csv")}, "archs": ["sa32_ws", "sa32_os"],
        "space": {"pe_array.rows": {"choices": [8, 32]}, "dram.bandwidth_bytes_per_cycle": {"choices": [4.0, 25.6]}},
        "objectives": ["latency", "energy", "area"], "sampler": "grid", "trials": 8}))
    study = load_study(path)
    executor = LocalExecutor(1)
    try:
        ostudy = explore(study, d / "out", executor)
    finally:
        executor.close()
    return study, d, results_dataframe(ostudy)


def test_fronts_have_units_method_colours_arch_shapes_and_a_labelled_front(finished, tmp_path):
    from plots.explore import plot_fronts

    study, _, df = finished
    assert set(df["arch"]) == {"sa32_ws", "sa32_os"} and set(df["method"]) == {"none"}
    fig = plot_fronts(df, objective_axes(study.objectives), tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 10_000
    axes = [a for a in fig.axes if a.get_visible()]
    assert len(axes) == 4  # three pairs and the parallel coordinates
    assert axes[0].get_xlabel() == "latency (ms), lower is better"
    assert axes[0].get_ylabel() == "energy (µJ), lower is better"
    legend = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert legend[0] == "none" and set(legend[1:3]) == {"sa32_ws", "sa32_os"} and "Pareto front (#: trial)" in legend
    markers = {c.get_paths()[0].vertices.shape for c in axes[0].collections}
    assert len(markers) == 2  # one marker shape per base architecture
    assert any(t.get_text().startswith("#") for t in axes[0].texts)  # front points carry their trial
    ticks = [t.get_text() for t in axes[3].get_xticklabels()]
    assert ticks == ["latency (ms)\n(lower is better)", "energy (µJ)\n(lower is better)",
                     "area (mm²)\n(lower is better)"]


def test_html_report_shows_each_points_parameters_on_hover(finished, tmp_path, capsys):
    study, d, df = finished
    html = tmp_path / "study.html"
    assert main(["explore", study.path, "--out", str(d / "out"), "--html", str(html), "-q"]) == 0
    text = html.read_text()
    assert "plotly" in text and "Pareto front" in text and "<table" in text
    assert "rows=32" in text and "bandwidth_bytes_per_cycle=25.6" in text  # hover text of the points
    assert "latency (ms) (lower is better)" in text
    out = capsys.readouterr().out
    assert f"wrote {html}" in out and "e+0" not in out  # numbers as run prints them


def test_the_study_database_opens_in_optuna_dashboard(finished):
    import optuna_dashboard  # in the test extra: `optuna-dashboard DB` serves the same app

    study, d, df = finished
    app = optuna_dashboard.wsgi(f"sqlite:///{d / 'out' / 'figs.db'}")
    env = {"PATH_INFO": "/api/studies", "REQUEST_METHOD": "GET", "wsgi.input": BytesIO()}
    setup_testing_defaults(env)
    status = []
    body = b"".join(app(env, lambda s, h, exc=None: status.append(s)))
    assert status[0].startswith("200")
    studies = json.loads(body)["study_summaries"]
    assert [s["study_name"] for s in studies] == ["figs"]
    assert len(studies[0]["directions"]) == 3
