"""Pareto plot of a design-space sweep: every point in the latency-energy
plane coloured by its base architecture, the front drawn and labelled with
its overrides. Plain data in: the sweep's rows (dicts with `arch`,
`overrides`, `error` and the metric keys, as `archsim sweep` writes them one
JSON line each). Nothing here imports archsim.

Usage: python plots/pareto.py sweep.jsonl pareto.png
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

if not __package__:  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from plots.palette import color  # noqa: E402

LABELS = {"latency_ms": "latency (ms)", "energy_uj": "energy (µJ)", "area_mm2": "area (mm²)",
          "edp_uj_ms": "energy-delay product (µJ·ms)"}


def front_of(rows: list[dict], x: str, y: str) -> list[dict]:
    """Rows not dominated in (x, y), both minimised, sorted by x."""
    front, best_y = [], float("inf")
    for r in sorted(rows, key=lambda r: (r[x], r[y])):
        if r[y] < best_y:
            front.append(r)
            best_y = r[y]
    return front


def plot_pareto(rows: list[dict], path, x: str = "latency_ms", y: str = "energy_uj", title: str = ""):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ok = [r for r in rows if not r.get("error")]
    front = front_of(ok, x, y)
    fig = Figure(figsize=(7, 5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for arch in dict.fromkeys(r["arch"] for r in ok):
        pts = [r for r in ok if r["arch"] == arch]
        ax.scatter([r[x] for r in pts], [r[y] for r in pts], s=18, color=color(arch), alpha=0.7, label=arch)
    ax.plot([r[x] for r in front], [r[y] for r in front], "-", c="k", lw=1.2, zorder=0, label="Pareto front")
    for r in front:
        label = r["arch"] + ("\n" + "\n".join(r["overrides"]) if r["overrides"] else "")
        ax.annotate(label, (r[x], r[y]), fontsize=6, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(f"{LABELS.get(x, x)}, lower is better")
    ax.set_ylabel(f"{LABELS.get(y, y)}, lower is better")
    ax.set_title(title or f"{len(ok)} design points, {len(front)} on the front")
    ax.legend(fontsize="small", title="base architecture", title_fontsize="small")
    fig.savefig(path, dpi=130)
    return front


if __name__ == "__main__":
    lines = Path(sys.argv[1]).read_text().splitlines()
    rows = list({r["key"]: r for r in (json.loads(line) for line in lines if line.strip())}.values())
    plot_pareto(rows, sys.argv[2] if len(sys.argv) > 2 else "pareto.png")
