"""Figures of an exploration study (`archsim explore`): Pareto fronts for every
pair of objectives, parallel coordinates of the front, and an interactive
HTML report. Plain data in: the study's DataFrame (one row per trial:
`trial`, `state`, `feasible`, `arch`, `method`, `param:*` and metric columns,
as archsim.explore.results_dataframe gives it) and the objectives' axes
[{"key": "latency_ms", "direction": "minimize", "label": "latency (ms)"}, ...]
(archsim.explore.objective_axes). Nothing here imports archsim: `archsim
explore STUDY --plot fronts.png --html study.html` draws them (a finished
study is read back from its database, not run again).
"""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

if not __package__:  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from plots.palette import color  # noqa: E402

# base architectures are told apart by marker shape, in order of appearance
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")


def pareto_mask(df, axes: list[dict]) -> list[bool]:
    """For each row: feasible and not dominated on these axes."""
    rows = df.reset_index(drop=True)
    ok = rows["feasible"].tolist() if "feasible" in rows else [True] * len(rows)
    vals = [[(r[a["key"]] if a["direction"] == "minimize" else -r[a["key"]]) for a in axes]
            for _, r in rows.iterrows()]
    cand = [v for v, f in zip(vals, ok) if f]
    return [f and not any(all(w[j] <= v[j] for j in range(len(v))) and w != v for w in cand)
            for v, f in zip(vals, ok)]


def _method(row) -> str:
    m = row.get("method")
    if not isinstance(m, str):
        m = row.get("param:method") if isinstance(row.get("param:method"), str) else "none"
    return m


def _arch(row) -> str:
    a = row.get("arch")
    return a if isinstance(a, str) else str(row.get("param:arch", ""))


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


def _better(axis: dict) -> str:
    return "lower is better" if axis["direction"] == "minimize" else "higher is better"


def plot_fronts(df, axes: list[dict], path: str | Path):
    """One panel per pair of objectives: every finished point coloured by its
    compression method and shaped by its base architecture (infeasible ones
    hollow), the pair's Pareto front drawn as a labelled line through its
    points (each marked with its trial number); and a parallel-coordinates
    panel of the study's front, each axis oriented so that up is better and
    labelled with its unit, its range and its better direction."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    ok = df[df["state"] == "COMPLETE"].reset_index(drop=True)
    methods = list(dict.fromkeys(_method(r) for _, r in ok.iterrows()))
    archs = list(dict.fromkeys(_arch(r) for _, r in ok.iterrows()))
    marker = {a: MARKERS[i % len(MARKERS)] for i, a in enumerate(archs)}
    pairs = list(itertools.combinations(range(len(axes)), 2)) or [(0, 0)]
    ncol = min(3, len(pairs) + 1)
    nrow = -(-(len(pairs) + 1) // ncol)
    fig = Figure(figsize=(5.5 * ncol, 4.6 * nrow), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.subplots(nrow, ncol, squeeze=False).ravel()
    for ax in grid[len(pairs) + 1:]:
        ax.set_visible(False)
    for ax, (i, j) in zip(grid, pairs):
        xa, ya = axes[i], axes[j]
        for _, r in ok.iterrows():
            c = color("dense" if _method(r) == "none" else _method(r))
            feas = bool(r.get("feasible", True))
            ax.scatter(r[xa["key"]], r[ya["key"]], s=22, marker=marker[_arch(r)], alpha=0.8,
                       facecolors=c if feas else "none", edgecolors=c, linewidths=0.8)
        front = ok[pareto_mask(ok, [xa, ya])].sort_values(xa["key"])
        ax.plot(front[xa["key"]], front[ya["key"]], "-", c="k", lw=1.2, zorder=0)
        for _, r in front.iterrows():
            ax.annotate(f"#{r['trial']}", (r[xa["key"]], r[ya["key"]]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        ax.set_xlabel(f"{xa['label']}, {_better(xa)}")
        ax.set_ylabel(f"{ya['label']}, {_better(ya)}")
        ax.set_title(f"{len(front)} of {len(ok)} points on the {ya['label'].split(' (')[0]} vs "
                     f"{xa['label'].split(' (')[0]} front", fontsize="medium")
    handles = [Line2D([], [], ls="", marker="o", color=color("dense" if m == "none" else m), label=m)
               for m in methods]
    handles += [Line2D([], [], ls="", marker=marker[a], color="0.3", label=a) for a in archs if a]
    handles += [Line2D([], [], ls="", marker="o", mfc="none", color="0.3", label="infeasible (constraint)"),
                Line2D([], [], ls="-", color="k", label="Pareto front (#: trial)")]
    grid[0].legend(handles=handles, fontsize="small", title="method / base architecture", title_fontsize="small")
    _parallel(grid[len(pairs)], ok, axes)
    fig.savefig(path, dpi=110)
    return fig


def _parallel(ax, ok, axes: list[dict]):
    """The study's front in parallel coordinates: one vertical axis per
    objective, scaled to the study's range with the better end up."""
    front = ok[pareto_mask(ok, axes)] if len(ok) else ok
    if not len(front) or len(axes) < 2:
        ax.set_visible(False)
        return
    lo = {a["key"]: ok[a["key"]].min() for a in axes}
    hi = {a["key"]: ok[a["key"]].max() for a in axes}

    def up(a, v):  # 1 = best in the study, 0 = worst
        span = hi[a["key"]] - lo[a["key"]] or 1.0
        f = (v - lo[a["key"]]) / span
        return 1 - f if a["direction"] == "minimize" else f

    for _, r in front.iterrows():
        ax.plot(range(len(axes)), [up(a, r[a["key"]]) for a in axes], "-", marker=".",
                c=color("dense" if _method(r) == "none" else _method(r)), alpha=0.8, lw=1.2)
        ax.annotate(f"#{r['trial']}", (len(axes) - 1, up(axes[-1], r[axes[-1]["key"]])), fontsize=6,
                    xytext=(4, 0), textcoords="offset points", va="center")
    for x, a in enumerate(axes):
        ax.axvline(x, c="0.6", lw=0.8, zorder=0)
        best, worst = (lo, hi) if a["direction"] == "minimize" else (hi, lo)
        for y, v in ((1, best[a["key"]]), (0, worst[a["key"]])):  # the axis's real values at its ends
            ax.annotate(f"{v:.4g}", (x, y), xytext=(-4, 0), textcoords="offset points", ha="right", va="center",
                        fontsize=7, color="0.3")
    ax.set_xticks(range(len(axes)), [f"{a['label']}\n({_better(a)})" for a in axes], fontsize="small")
    ax.set_xlim(-0.45, len(axes) - 0.6)
    ax.set_ylim(-0.08, 1.08)
    ax.set_yticks([0, 1], ["worst", "best"])
    ax.set_ylabel("place in the study's range")
    ax.set_title(f"the front: {len(front)} designs (colour: method)", fontsize="medium")


def html_report(df, axes: list[dict], path: str | Path, title: str = "study"):
    """A self-contained interactive HTML page (plotly, its JavaScript inlined:
    no network): a scatter per pair of objectives (colour: method, symbol:
    base architecture, hover: trial, parameters and metrics, the front
    outlined) and a table of the front."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    ok = df[df["state"] == "COMPLETE"].reset_index(drop=True)
    pairs = list(itertools.combinations(range(len(axes)), 2)) or [(0, 0)]
    fig = make_subplots(rows=len(pairs), cols=1, vertical_spacing=0.3 / max(1, len(pairs)),
                        subplot_titles=[f"{axes[j]['label']} vs {axes[i]['label']}" for i, j in pairs])
    symbols = ["circle", "square", "diamond", "triangle-up", "cross", "x", "star", "pentagon"]
    archs = list(dict.fromkeys(_arch(r) for _, r in ok.iterrows()))
    hover = [("<br>".join([_label(r)] + [f"{a['label']}: {r[a['key']]:.4g}" for a in axes]))
             for _, r in ok.iterrows()]
    for n, (i, j) in enumerate(pairs, start=1):
        xa, ya = axes[i], axes[j]
        on_front = pareto_mask(ok, [xa, ya])
        for m in dict.fromkeys(_method(r) for _, r in ok.iterrows()):
            idx = [k for k, (_, r) in enumerate(ok.iterrows()) if _method(r) == m]
            rows = ok.iloc[idx]
            fig.add_trace(go.Scatter(
                x=rows[xa["key"]], y=rows[ya["key"]], mode="markers", name=m, legendgroup=m, showlegend=n == 1,
                text=[hover[k] for k in idx], hoverinfo="text",
                marker=dict(color=color("dense" if m == "none" else m), size=9,
                            symbol=[symbols[archs.index(_arch(r)) % len(symbols)] for _, r in rows.iterrows()],
                            line=dict(width=[2 if on_front[k] else 0 for k in idx], color="black"))), row=n, col=1)
        front = ok[on_front].sort_values(xa["key"])
        fig.add_trace(go.Scatter(x=front[xa["key"]], y=front[ya["key"]], mode="lines", name="Pareto front",
                                 legendgroup="front", showlegend=n == 1, line=dict(color="black", width=1),
                                 hoverinfo="skip"), row=n, col=1)
        fig.update_xaxes(title_text=f"{xa['label']} ({_better(xa)})", row=n, col=1)
        fig.update_yaxes(title_text=f"{ya['label']} ({_better(ya)})", row=n, col=1)
    fig.update_layout(title=f"{title}: {len(ok)} finished points (symbol: base architecture "
                            f"{', '.join(f'{symbols[k % len(symbols)]}={a}' for k, a in enumerate(archs))})",
                      height=420 * len(pairs), hovermode="closest")
    front = ok[pareto_mask(ok, axes)]
    table = front[["trial"] + [c for c in front.columns if c.startswith("param:")] + [a["key"] for a in axes]]
    Path(path).write_text(fig.to_html(include_plotlyjs=True, full_html=True).replace(
        "</body>", f"<h3>Pareto front of all objectives ({len(front)} designs)</h3>"
                   f"{table.to_html(index=False, na_rep='')}</body>"))


def plot_two_designs(rep_a, rep_b, labels: tuple[str, str], path: str | Path):
    """Side by side, per layer: latency (compute + stall) and energy stacked
    by component, for two designs of a study (Reports of the same workload)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def energy_components(row: dict) -> list[str]:  # the report's energy_<component>_pj columns
        return [k[len("energy_"):-len("_pj")] for k in row if k.startswith("energy_") and k.endswith("_pj")
                and k not in ("energy_total_pj", "energy_dynamic_pj")]

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
            ax_e.bar(xs, vals, 0.4, bottom=bottom, color=color(c), edgecolor="k" if k else "none",
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
