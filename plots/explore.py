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
    """'#8: rows=32 cols=32 bandwidth_bytes_per_cycle=25.6 vq k=256 d=8': the
    trial and its parameters by their last name (the method by its value)."""
    parts = []
    for k in row.index:
        v = row[k]
        if not k.startswith("param:") or v != v:  # NaN: a parameter of another method
            continue
        v = f"{v:g}" if isinstance(v, float) else str(v)
        parts.append(v if k == "param:method" else f"{k.split('.')[-1]}={v}")
    return f"#{row['trial']}: " + " ".join(parts)


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
        for _, r in front.iterrows():  # by trial number: the parameters are in the last panel's legend
            ax.annotate(f"#{r['trial']}", (r[keys[i]], r[keys[j]]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        ax.set_xlabel(keys[i])
        ax.set_ylabel(keys[j])
        ax.legend(fontsize="small")
    ax = axes[-1]
    front = pareto_rows(ok, objectives)
    if len(front) and len(keys) > 1:
        lo, hi = ok[keys].min(), ok[keys].max()
        span = (hi - lo).where(hi > lo, 1.0)
        for n, (_, r) in enumerate(front.iterrows()):
            ax.plot(range(len(keys)), [(r[k] - lo[k]) / span[k] for k in keys], "o-", c=f"C{n % 10}", alpha=0.8,
                    label=_label(r))
        ax.set_xticks(range(len(keys)), keys)
        ax.set_ylabel("scaled to the study's range (0 = lowest)")
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.1))
    ax.set_title(f"front of {len(front)} designs (parallel coordinates)")
    fig.savefig(path, dpi=110)


def plot_two_designs(rep_a, rep_b, labels: tuple[str, str], path: str | Path):
    """Side by side, per layer: latency (compute + stall) and energy stacked
    by component, for two designs of a study (Reports of the same workload)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from archsim.report import energy_components

    names = [r["name"] for r in rep_a.layers]
    x = list(range(len(names)))
    fig = Figure(figsize=(max(10.0, 0.45 * len(names) + 4), 8), layout="constrained")
    FigureCanvasAgg(fig)
    ax_t, ax_e = fig.subplots(2, 1, sharex=True)
    comps = list(dict.fromkeys(energy_components(rep_a.totals) + energy_components(rep_b.totals)))
    for k, (rep, label, off) in enumerate(((rep_a, labels[0], -0.2), (rep_b, labels[1], 0.2))):
        us = 1.0 / rep.clock_mhz
        xs = [i + off for i in x]
        comp = [r["compute_cycles"] * us for r in rep.layers]
        stall = [r["stall_cycles"] * us for r in rep.layers]
        ax_t.bar(xs, comp, 0.4, color=f"C{2 * k}", label=f"{label}: compute")
        ax_t.bar(xs, stall, 0.4, bottom=comp, color=f"C{2 * k + 1}", label=f"{label}: stall")
        bottom = [0.0] * len(names)
        for i, c in enumerate(comps):
            vals = [r.get(f"energy_{c}_pj", 0.0) / 1e6 for r in rep.layers]
            ax_e.bar(xs, vals, 0.4, bottom=bottom, color=f"C{i % 10}", edgecolor="k" if k else "none",
                     linewidth=0.3, label=c if k == 0 else None)
            bottom = [b + v for b, v in zip(bottom, vals)]
    ax_t.set_ylabel("latency (us)")
    ax_t.set_title(f"left: {labels[0]} ({rep_a.totals['latency_ms']:.3f} ms, "
                   f"{rep_a.totals['energy_total_pj'] / 1e6:.1f} uJ)   right: {labels[1]} "
                   f"({rep_b.totals['latency_ms']:.3f} ms, {rep_b.totals['energy_total_pj'] / 1e6:.1f} uJ)")
    ax_t.legend(fontsize="small")
    ax_e.set_ylabel("energy (uJ); right bars outlined")
    ax_e.legend(fontsize="small", ncol=2)
    ax_e.set_xticks(x, names, rotation=90, fontsize="small")
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
