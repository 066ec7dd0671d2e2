"""`archsim reproduce`: operating-point rule, fine-tuned accuracy (cached),
and its figures (a grid; a paper's range as a band). Tiny fine-tuning
budgets here; the CLI's defaults are the real ones."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from archsim import reproduce as rp
from archsim.claims import Claim
from archsim.cli import main

FMNIST = pytest.mark.skipif(not __import__("workloads.datasets", fromlist=["x"]).fashion_mnist_available(),
                            reason="Fashion-MNIST not installed")
TINY = rp.Budget(steps=2, pq_steps=1, batch=32, val_images=100, val_every=1)


def test_choose_takes_the_cheapest_setting_within_one_point_else_the_most_accurate():
    rows = [{"s": "a", "top1": 0.915, "cost": 3}, {"s": "b", "top1": 0.91, "cost": 2},
            {"s": "c", "top1": 0.80, "cost": 1}]
    row, rule = rp.choose(rows, "cost", 0.92, "cost")
    assert row["s"] == "b" and "within 1 point of FP32 (92.00%)" in rule and "2 of 3 qualify" in rule
    row, rule = rp.choose(rows, "cost", 0.99, "cost")
    assert row["s"] == "a" and "none qualifies" in rule


def test_claim_lives_apart_from_both_reproduce_modules():
    """reproduce imports reproduce_pqa and both import Claim from archsim.claims, not each other."""
    root = Path(rp.__file__).parent
    pqa_imports = {n.module for n in ast.walk(ast.parse((root / "reproduce_pqa.py").read_text()))
                   if isinstance(n, ast.ImportFrom)}
    assert "reproduce" not in pqa_imports and "claims" in pqa_imports
    assert rp.Claim is Claim


def test_plots_take_plain_data_and_import_nothing_from_archsim():
    root = Path(__file__).resolve().parents[1] / "plots"
    for f in ("palette.py", "reproduce.py"):
        for n in ast.walk(ast.parse((root / f).read_text())):
            names = [a.name for a in n.names] if isinstance(n, ast.Import) else \
                [n.module or ""] if isinstance(n, ast.ImportFrom) else []
            assert not any(m.split(".")[0] in ("archsim", "workloads") for m in names), (f, names)


def test_palette_gives_a_name_one_colour_everywhere():
    from plots.palette import color, colors

    assert color("stripes16") == color("stripes") == color("Stripes")
    assert color("dram") != color("sram")
    assert colors(["a_new_component", "dram"]) == [color("a_new_component"), color("dram")]
    assert color("a_new_component") == color("a_new_component")  # stable hash, not list position
    # a bit width is a format of its own; a format with parameters takes its format's colour
    assert color("int8") != color("int4")
    assert color("aqlm-2x8") == color("aqlm") != color("lcvq") == color("lcvq-res")


def _claims(n):
    return [Claim(f"claim {i} with a rather long name that must wrap", "x", [1.0, 2.0] if i % 2 else 3.0,
                  1.5 + i, "wl", "arch", "base") for i in range(n)]


def test_figure_is_a_grid_and_a_range_is_a_band(tmp_path):
    import matplotlib.image as mpimg
    from matplotlib.figure import Figure

    from plots.reproduce import _claim_panel, grid_shape

    assert grid_shape(12) == (4, 3) and grid_shape(10) == (4, 3) and grid_shape(2) == (1, 2)
    assert rp.plot("swis", _claims(12), tmp_path / "a.png") == (4, 3)
    h, w = mpimg.imread(tmp_path / "a.png").shape[:2]
    assert w < 2 * h  # 12 panels no longer in one 5280x440 row
    ax = Figure().subplots()
    _claim_panel(ax, {"metric": "m", "unit": "%", "paper_value": [40.0, 104.0], "measured": 66.6})
    band = [p for p in ax.patches if p.get_label().startswith("paper")]
    assert len(band) == 1
    y0, y1 = band[0].get_y(), band[0].get_y() + band[0].get_height()  # axhspan: y in data units
    assert (y0, y1) == (pytest.approx(40.0), pytest.approx(104.0))
    (bars,) = ax.containers  # one bar: archsim's; none at the range's midpoint (72)
    assert bars.get_label().startswith("archsim") and [b.get_height() for b in bars] == [pytest.approx(66.6)]


def test_mvq_hardware_claims_without_accuracy(tmp_path):
    claims, details = rp.mvq(model_name="resnet20", accuracy=False)
    assert [c.metric for c in claims] == ["energy efficiency vs EWS", "systolic-array area reduction at 75% sparsity",
                                          "speedup vs EWS", "speedup vs EWS, activations on chip"]
    assert all(c.measured > 0 for c in claims) and claims[1].measured < 100
    assert details["chosen"] == "n=1 m=4 k=256 d=16" and "no accuracy" in claims[0].rule
    rp.PAPERS["mvq_small"] = lambda bar=None: (claims, details)
    try:
        rp.reproduce("mvq_small", tmp_path)
    finally:
        del rp.PAPERS["mvq_small"]
    doc = json.loads((tmp_path / "mvq_small.json").read_text())
    assert doc["paper"] == "mvq_small" and {"metric", "unit", "paper_value", "measured", "workload", "arch",
                                            "baseline", "rule"} <= set(doc["claims"][0])
    assert (tmp_path / "mvq_small.png").stat().st_size > 5000
    with pytest.raises(SystemExit) as e:  # argparse refuses an unknown paper
        main(["reproduce", "nope"])
    assert e.value.code == 2


@FMNIST
def test_reproduce_swis_fine_tunes_each_setting_and_reuses_them(tmp_path):
    kw = dict(settings=rp.SWIS_SETTINGS[2:], n_calib=16, budget=TINY, n_test=200, cache_dir=tmp_path / "ft")
    claims, details = rp.reproduce("swis", tmp_path / "out", **kw)
    assert len(claims) == 4 and all(c.measured > 0 for c in claims)
    rows = details["settings"]
    assert [r["setting"] for r in rows] == ["N=3", "per-group N (mean 1.5, 0..3)"]
    assert not any(r["cached"] for r in rows)
    for r in rows:  # the best step is never worse than post-training on the held-apart images, and is scored
        assert 0 <= r["best_step"] <= TINY.steps and 0 < r["top1"] <= 1 and r["speedup_vs_stripes"] > 1
    assert details["chosen"] in claims[0].arch and "within 1 point of FP32" in claims[0].rule
    assert set(details["per_layer"]) == {"stripes16", "pragmatic16", "int8_same_area", "swis16_ws N=3",
                                         "swis16_ws per-group N (mean 1.5, 0..3)"}
    first = (tmp_path / "out" / "swis.json").read_text()
    claims2, details2 = rp.reproduce("swis", tmp_path / "out", **kw)
    assert all(r["cached"] for r in details2["settings"])
    assert (tmp_path / "out" / "swis.json").read_text() == first  # the same JSON, bit for bit
    text = rp.format_report("swis", claims2, details2)
    assert "operating point: lowest swis16_ws cycles" in text and "N=3" in text


def test_out_that_is_a_file_is_refused_before_any_work(tmp_path):
    from archsim.ir.errors import ArchsimError

    f = tmp_path / "f"
    f.write_text("")
    rp.PAPERS["boom"] = lambda bar=None: pytest.fail("ran the paper before checking --out")
    try:
        with pytest.raises(ArchsimError) as e:
            rp.reproduce("boom", f)
    finally:
        del rp.PAPERS["boom"]
    assert e.value.field == "--out"
