"""Figures of `archsim reproduce PAPER`: one panel per headline claim, laid
out as a grid, with the paper's value drawn as what the paper states: a
range as a band, a single number as a line, never a bar at a midpoint.
A claim measured over DRAM bandwidth (its "curve") is drawn as that curve.
Optionally a last panel of the candidate settings the operating point was
chosen from (a measured value per setting, with top-1 on a second axis).

Input is plain data: claims as dicts with metric, unit, paper_value (a
number or [low, high]), measured and arch (archsim's Claim as
dataclasses.asdict); settings as a list of dicts. Nothing from archsim is
imported here.
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

from .palette import color


def grid_shape(n: int, max_cols: int = 3) -> tuple[int, int]:
    """(rows, cols) of a grid that holds n panels, at most max_cols wide."""
    cols = max(1, min(max_cols, n))
    return math.ceil(n / cols), cols


def _claim_panel(ax, c: dict) -> None:
    pv, got = c["paper_value"], c["measured"]
    if isinstance(pv, (list, tuple)):
        ax.axhspan(pv[0], pv[1], color=color("paper"), alpha=0.5, label=f"paper: {pv[0]:g} to {pv[1]:g}")
        top = max(pv[1], got)
    else:
        ax.axhline(pv, color="0.35", ls="--", lw=1.5, label=f"paper: {pv:g}")
        top = max(pv, got)
    if c.get("curve"):  # the measured value over DRAM bandwidth, the claimed point marked
        xs = [float(k) for k in c["curve"]]
        ax.plot(xs, list(c["curve"].values()), "o-", color=color("archsim"),
                label=f"archsim ({got:.3g} at the claim's point)")
        ax.set_xscale("log")
        ax.set_xlabel("DRAM bandwidth (B/cycle)")
        top = max(top, *c["curve"].values())
    else:
        ax.bar([0], [got], width=0.5, color=color("archsim"), label=f"archsim: {got:.3g}")
        ax.set_xlim(-1, 1)
        ax.set_xticks([])
    lo = min(0.0, got, pv[0] if isinstance(pv, (list, tuple)) else pv)
    ax.set_ylim(lo * 1.15, top * 1.25 if top > 0 else 1.0)
    ax.set_ylabel(c["unit"])
    ax.set_title(textwrap.fill(c["metric"], 34), fontsize="medium")
    ax.legend(fontsize="small", loc="upper left")


def _settings_panel(ax, settings: list[dict], x_key: str, bars: list[tuple], acc_key: str | None,
                    acc_ref: float | None, chosen: str | None) -> None:
    xs = [str(s[x_key]) for s in settings]
    width = 0.8 / max(1, len(bars))
    for i, (key, label, colour, hatch) in enumerate(bars):
        ax.bar([j + (i - (len(bars) - 1) / 2) * width for j in range(len(xs))], [s[key] for s in settings],
               width, color=color(colour), hatch=hatch, edgecolor="white", label=label)
    ax.set_xticks(range(len(xs)), [textwrap.fill(x, 12) for x in xs], fontsize="small")
    ax.set_ylabel("x")
    handles, labels = ax.get_legend_handles_labels()
    if acc_key:
        ax2 = ax.twinx()
        h = ax2.plot(range(len(xs)), [100 * s[acc_key] for s in settings], "o-", color="k",
                     label="top-1 after fine-tuning")
        handles += h
        labels += [h[0].get_label()]
        if acc_ref is not None:
            for y, ls, label in ((100 * acc_ref, ":", "FP32 top-1"), (100 * acc_ref - 1, "--", "FP32 - 1 point")):
                h = ax2.axhline(y, color="k", ls=ls, lw=1, label=label)
                handles.append(h)
                labels.append(label)
        ax2.set_ylabel("top-1 (%)")
    if chosen in xs:
        ax.axvspan(xs.index(chosen) - 0.45, xs.index(chosen) + 0.45, color="0.92", zorder=0)
    ax.legend(handles, labels, fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2)
    ax.set_title("candidate settings (chosen one shaded)", fontsize="medium")


def plot_claims(title: str, claims: list[dict], path: str | Path, settings: list[dict] | None = None,
                x_key: str = "setting", bars: tuple = (), acc_key: str | None = None,
                acc_ref: float | None = None, chosen: str | None = None, max_cols: int = 3) -> tuple[int, int]:
    """Write the grid figure to `path`; returns its (rows, cols). `bars`:
    (key of a settings row, label, palette name, hatch) per bar group of the
    settings panel; `acc_ref`: the FP32 top-1 the rule compares with."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(claims) + (1 if settings else 0)
    rows, cols = grid_shape(n, max_cols)
    fig = Figure(figsize=(4.2 * cols, 3.6 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, c in zip(axes, claims):
        _claim_panel(ax, c)
    if settings:
        _settings_panel(axes[len(claims)], settings, x_key, list(bars), acc_key, acc_ref, chosen)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    return rows, cols
