"""Pareto plot of a design-space sweep (the JSON-lines file `archsim sweep`
writes): every point in the latency-energy plane, the front highlighted and
labelled with its overrides.

Usage: python plots/pareto.py sweep.jsonl pareto.png
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

if not __package__:  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from archsim.dse import load_done, pareto_front  # noqa: E402


def plot_pareto(rows: list[dict], path, x: str = "latency_ms", y: str = "energy_uj", title: str = ""):
    ok = [r for r in rows if not r.get("error")]
    front = pareto_front(ok, x, y)
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter([r[x] for r in ok], [r[y] for r in ok], s=18, c="0.6", label="design points")
    ax.plot([r[x] for r in front], [r[y] for r in front], "o-", c="C3", label="Pareto front")
    for r in front:
        label = r["arch"] + ("\n" + "\n".join(r["overrides"]) if r["overrides"] else "")
        ax.annotate(label, (r[x], r[y]), fontsize=6, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(y.replace("_", " "))
    ax.set_title(title or f"{len(ok)} design points, {len(front)} on the front")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return front


if __name__ == "__main__":
    rows = list(load_done(Path(sys.argv[1])).values())
    plot_pareto(rows, sys.argv[2] if len(sys.argv) > 2 else "pareto.png")
