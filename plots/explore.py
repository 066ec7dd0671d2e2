"""Figures of an exploration study (`archsim explore`): Pareto fronts for every
pair of objectives with the front labelled, and parallel coordinates of the
front. Input: archsim.explore.results_dataframe(study).

Usage: python plots/explore.py STUDY.yaml OUT.png [--out DIR]
"""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from archsim.explore import pareto_rows  # noqa: E402
from archsim.study import OBJECTIVES  # noqa: E402


def _label(row) -> str:
    return " ".join(f"{k[6:]}={row[k]}" for k in row.index if k.startswith("param:") and row[k] == row[k])


def plot_fronts(df, objectives: list[str], path: str | Path):
    """One panel per pair of objectives (all points grey, infeasible ones
    hollow, that pair's front in colour and labelled), and a parallel-
    coordinates panel of the study's front (each objective scaled to 0-1)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    keys = [OBJECTIVES[o][0] for o in objectives]
    pairs = list(itertools.combinations(range(len(keys)), 2)) or [(0, 0)]
    ok = df[df["state"] == "COMPLETE"]
    fig = Figure(figsize=(6 * (len(pairs) + 1), 5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(pairs) + 1, squeeze=False)[0]
    for ax, (i, j) in zip(axes, pairs):
        feas = ok[ok["feasible"]]
        infeas = ok[~ok["feasible"]]
        ax.scatter(feas[keys[i]], feas[keys[j]], c="0.7", s=14, label="feasible")
        if len(infeas):
            ax.scatter(infeas[keys[i]], infeas[keys[j]], facecolors="none", edgecolors="0.6", s=14,
                       label="infeasible")
        front = pareto_rows(ok, [objectives[i], objectives[j]]).sort_values(keys[i])
        ax.plot(front[keys[i]], front[keys[j]], "o-", c="C3", label="Pareto front")
        for _, r in front.iterrows():
            ax.annotate(_label(r), (r[keys[i]], r[keys[j]]), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(keys[i])
        ax.set_ylabel(keys[j])
        ax.legend(fontsize="small")
    ax = axes[-1]
    front = pareto_rows(ok, objectives)
    if len(front) and len(keys) > 1:
        lo, hi = ok[keys].min(), ok[keys].max()
        span = (hi - lo).where(hi > lo, 1.0)
        for n, (_, r) in enumerate(front.iterrows()):
            ax.plot(range(len(keys)), [(r[k] - lo[k]) / span[k] for k in keys], "o-", c=f"C{n % 10}", alpha=0.8)
        ax.set_xticks(range(len(keys)), keys)
        ax.set_ylabel("scaled to the study's range (0 = lowest)")
    ax.set_title(f"front of {len(front)} designs (parallel coordinates)")
    fig.savefig(path, dpi=110)


def main(argv=None):
    import argparse

    from archsim.explore import open_study, results_dataframe
    from archsim.study import load_study

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study")
    ap.add_argument("png")
    ap.add_argument("--out", default="archsim_out/explore")
    a = ap.parse_args(argv)
    study = load_study(a.study)
    plot_fronts(results_dataframe(open_study(study, Path(a.out))), study.objectives, a.png)


if __name__ == "__main__":
    main()
