"""`archsim reproduce PAPER`: run a paper's shipped accelerator YAMLs and their
baselines on the paper's workload, compressed by the project's own methods,
and set each headline claim beside what the simulation gives.

The numbers are whatever the simulation gives: no parameter here was chosen
to hit a paper's figure. Workloads are the zoo's networks with seeded random
initial weights (no ImageNet checkpoints are shipped), compressed for real
(k-means on those weights); accuracy is not part of these claims.

Each paper is one function returning a list of Claim; the command prints
them, writes DIR/<paper>.json and DIR/<paper>.png.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from .errors import ArchsimError


@dataclass
class Claim:
    metric: str
    unit: str
    paper_value: float | list  # a number, or [low, high] where the paper gives a range
    measured: float
    workload: str
    arch: str
    baseline: str
    note: str = ""
    curve: dict = field(default_factory=dict)  # optional x -> measured, e.g. speedup over bandwidth


def _simulate(layers, arch, overrides=()):
    from .api import simulate

    return simulate(layers, arch, overrides=list(overrides))


def _layers(model_name: str, method: str | None, batch: int = 1, **params):
    """The zoo model traced with the formats that `compress` gave it."""
    from workloads import zoo
    from workloads.compile import trace
    from workloads.compression import compress

    model = zoo.build(model_name)
    x = zoo.default_input(model_name, batch=batch)
    formats = None
    if method is not None:
        res = compress(model, method, num_threads=1, **params)
        formats = res.formats
    return trace(model, x, formats=formats)


def mvq(model_name: str = "resnet18") -> list[Claim]:
    """MVQ (Li et al., ASPLOS 2025): mvq64 (1:4 sparse EWS + weight loader,
    MVQ weights n=1 m=4 k=256 d=16) against ews64 (dense EWS, INT8 weights)."""
    base_layers = _layers(model_name, "int", bits=8)
    mvq_layers = _layers(model_name, "mvq", n=1, m=4, k=256, d=16)
    ews = _simulate(base_layers, "ews64")
    sparse = _simulate(mvq_layers, "mvq64")
    wl = f"{model_name} (zoo, seeded random weights), batch 1"
    area_ews = ews.area_um2["pe_array"]
    area_mvq = sparse.area_um2["pe_array"] + sparse.area_um2.get("mux", 0.0)
    return [
        Claim("energy efficiency vs EWS", "x", 2.3, ews.totals["energy_total_pj"] / sparse.totals["energy_total_pj"],
              wl, "mvq64 (MVQ n=1 m=4 k=256 d=16)", "ews64 (INT8)",
              "total energy incl. DRAM and static"),
        Claim("systolic-array area reduction at 75% sparsity", "%", 55.0, 100 * (1 - area_mvq / area_ews),
              wl, "mvq64: 16x64 PEs + 4:1 activation muxes", "ews64: 64x64 PEs",
              "PE array + activation-select muxes; the loader and codebook RF are reported apart"),
        Claim("speedup vs EWS", "x", [1.2, 2.2], ews.totals["total_cycles"] / sparse.totals["total_cycles"],
              wl, "mvq64", "ews64 (INT8)", "cycles at the same clock, DRAM channel and buffers"),
    ]


SSVQ_BANDWIDTHS = (0.5, 1, 2, 4, 8, 16, 25.6, 64)


def ssvq(model_name: str = "deit_tiny") -> list[Claim]:
    """SSVQ: ssvq32_ws (sign-applying VQ decoder; SSVQ weights k=256 d=16, one
    sign bit per weight) against the 8-bit model on sa32_ws, at batch 1, over
    DRAM bandwidth: the speedup comes from moving fewer weight bytes, so it
    grows as the channel narrows."""
    base_layers = _layers(model_name, "int", bits=8)
    ssvq_layers = _layers(model_name, "ssvq", k=256, d=16, steps=0)
    curve = {}
    for bw in SSVQ_BANDWIDTHS:
        ov = [f"dram.bandwidth_bytes_per_cycle={bw}"]
        base = _simulate(base_layers, "sa32_ws", ov).totals["total_cycles"]
        ours = _simulate(ssvq_layers, "ssvq32_ws", ov).totals["total_cycles"]
        curve[str(bw)] = base / ours
    reach = [float(bw) for bw, s in curve.items() if s >= 3.0]
    where = (f"reaches 3x at <= {max(reach):g} B/cycle" if reach
             else f"does not reach 3x at any bandwidth tried ({min(SSVQ_BANDWIDTHS):g}-{max(SSVQ_BANDWIDTHS):g} B/cycle)")
    return [Claim("speedup vs the 8-bit model", "x", 3.0, curve["25.6"],
                  f"{model_name} (zoo, seeded random weights), batch 1", "ssvq32_ws (SSVQ k=256 d=16 + sign)",
                  "sa32_ws (INT8)", f"at 25.6 B/cycle (LPDDR4 x64 at 1 GHz); {where}", curve)]


SWIS_ARCHS = ("swis16_ws", "stripes16", "pragmatic16", "int8_same_area")


def swis(shared_bits=(1, 2, 3), n_calib: int = 512, n_test: int = 10000, group_size: int = 8):
    """SWIS (Li et al., arXiv 2103.01308): swis16_ws running the shipped
    Fashion-MNIST CNN compressed by SWIS (uniform N = 1, 2, 3 shared bits of
    8, G = 8) against the same-size bit-serial Stripes (stripes16) and
    Bit-Pragmatic (pragmatic16) arrays running its INT8 weights, and an INT8
    bit-parallel array of the same PE-array area (int8_same_area) for context.
    Real weights; real inputs: the activation profile (Stripes' precision,
    Pragmatic's essential bits) comes from a calibration pass of the first
    `n_calib` training images; the simulated input is test image 0 (batch 1);
    accuracy is on the first `n_test` test images."""
    import time

    from workloads.compile import trace
    from workloads.compression import compress
    from workloads.datasets import fashion_mnist_available, load_fashion_mnist
    from workloads.profile import attach_profiles, profile_activations
    from workloads.zoo.fmnist_cnn import evaluate_accuracy, load_fmnist_cnn

    if not fashion_mnist_available():
        raise ArchsimError("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)", field="paper")
    model = load_fmnist_cnn()
    x_train, _ = load_fashion_mnist("train", as_tensor=True, normalize=True)
    x_test, y_test = load_fashion_mnist("test", as_tensor=True, normalize=True)
    x_test, y_test = x_test[:n_test], y_test[:n_test]
    t0 = time.perf_counter()
    prof = profile_activations(model, x_train[:n_calib])
    calib_s = time.perf_counter() - t0
    x = x_test[:1]
    base_layers = attach_profiles(trace(model, x), prof)
    reports = {a: _simulate(base_layers, a) for a in SWIS_ARCHS[1:]}
    acc_int8 = evaluate_accuracy(model, x_test, y_test)
    wl = f"fmnist_cnn (shipped checkpoint, real weights), test image 0, batch 1; profile: {n_calib} train images"
    claims, points = [], {}
    for n in shared_bits:
        res = compress(model, "swis", num_threads=1, shared_bits=n, group_size=group_size)
        acc = evaluate_accuracy(res.model, x_test, y_test)
        sw = _simulate(attach_profiles(trace(res.model, x, formats=res.formats), prof), "swis16_ws")
        reports[f"swis16_ws N={n}"] = sw
        points[n] = acc
        arch = f"swis16_ws (SWIS N={n} of 8, G={group_size}; top-1 {100 * acc:.2f}%)"
        for base, label in (("stripes16", "Stripes"), ("pragmatic16", "Bit-Pragmatic")):
            b = reports[base]
            claims.append(Claim(f"speedup vs {label} (same size), N={n}", "x", 6.0,
                                b.totals["total_cycles"] / sw.totals["total_cycles"], wl, arch,
                                f"{base} (INT8 weights; top-1 {100 * acc_int8:.2f}%)",
                                "paper: 'up to 6x'; cycles at the same clock, DRAM and buffers"))
            claims.append(Claim(f"energy vs {label} (same size), N={n}", "x", 1.9,
                                b.totals["energy_total_pj"] / sw.totals["energy_total_pj"], wl, arch,
                                base, "paper: 1.9x (1.8x workshop); total energy incl. DRAM, SRAM and static"))
    layers = {}
    for name, rep in reports.items():
        layers[name] = [{"layer": r["name"], "cycles": r["total_cycles"], "compute_cycles": r["compute_cycles"],
                         "energy_uj": r["energy_total_pj"] / 1e6, "loop_order": r["loop_order"]}
                        for r in rep.layers + [rep.totals]]
    details = {"calibration_wall_s": calib_s, "accuracy_int8": acc_int8,
               "accuracy_swis": {str(n): a for n, a in points.items()},
               "area_um2": {name: rep.area_um2 for name, rep in reports.items()},
               "per_layer": layers}
    return claims, details


def format_layers(details: dict) -> str:
    """Cycles and energy per layer for each configuration of a details dict."""
    per = details["per_layer"]
    names = list(per)
    lines = ["cycles / energy (uJ) per layer:",
             "  " + "layer".ljust(8) + "".join(n.rjust(26) for n in names)]
    for i, row in enumerate(per[names[0]]):
        cells = [f"{per[n][i]['cycles']:,} / {per[n][i]['energy_uj']:.2f}" for n in names]
        lines.append("  " + str(row["layer"]).ljust(8) + "".join(c.rjust(26) for c in cells))
    lines.append(f"calibration pass wall time: {details['calibration_wall_s']:.1f} s")
    acc = ", ".join(f"N={n}: {100 * a:.2f}%" for n, a in details["accuracy_swis"].items())
    lines.append(f"top-1: INT8 {100 * details['accuracy_int8']:.2f}%; SWIS {acc}")
    return "\n".join(lines)


def pqa(**kw):
    """PQA (arXiv 2305.18334): archsim/reproduce_pqa.py."""
    from .reproduce_pqa import pqa as run_pqa

    return run_pqa(**kw)


PAPERS: dict[str, Callable[..., list[Claim]]] = {"mvq": mvq, "ssvq": ssvq, "swis": swis, "pqa": pqa}


def _fmt(v) -> str:
    return f"{v[0]:g}-{v[1]:g}" if isinstance(v, list) else f"{v:.3g}"


def format_table(paper: str, claims: list[Claim]) -> str:
    rows = [("claim", "paper", "archsim", "workload", "configuration")]
    rows += [(f"{c.metric} ({c.unit})", _fmt(c.paper_value), _fmt(c.measured), c.workload,
              f"{c.arch} vs {c.baseline}") for c in claims]
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"{paper}:"] + ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    for c in claims:
        if c.note:
            lines.append(f"  note ({c.metric}): {c.note}")
        if c.curve:
            lines.append(f"  {c.metric} by DRAM B/cycle: " + ", ".join(f"{k}: {v:.2f}" for k, v in c.curve.items()))
    return "\n".join(lines)


def plot(paper: str, claims: list[Claim], path: Path):
    """Paper vs archsim bars, one panel per claim (each in its own unit)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4 * len(claims), 4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(claims), squeeze=False)[0]
    for ax, c in zip(axes, claims):
        pv = c.paper_value
        mid = sum(pv) / 2 if isinstance(pv, list) else pv
        err = [[mid - pv[0]], [pv[1] - mid]] if isinstance(pv, list) else None
        ax.bar(["paper", "archsim"], [mid, c.measured], color=["C7", "C0"])
        if err:
            ax.errorbar([0], [mid], yerr=err, fmt="none", ecolor="k", capsize=6)
        ax.set_title(c.metric, fontsize="medium")
        ax.set_ylabel(c.unit)
    fig.suptitle(f"{paper}: paper vs archsim")
    fig.savefig(path, dpi=110)


def reproduce(paper: str, out: str | Path = "archsim_out/reproduce", **kw) -> tuple[list[Claim], dict | None]:
    """Run one paper; write DIR/<paper>.json and .png; return (claims, details)."""
    if paper not in PAPERS:
        raise ArchsimError(f"unknown paper {paper!r} (known: {', '.join(sorted(PAPERS))})", field="paper")
    got = PAPERS[paper](**kw)
    # a paper function returns its claims, or (claims, details) with extra tables for the JSON
    claims, details = got if isinstance(got, tuple) else (got, None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"paper": paper, "claims": [asdict(c) for c in claims]}
    if details is not None:
        doc["details"] = details
    (out / f"{paper}.json").write_text(json.dumps(doc, indent=2) + "\n")
    plot(paper, claims, out / f"{paper}.png")
    return claims, details
