"""`archsim reproduce PAPER`: run a paper's shipped accelerator YAMLs and their
baselines on the paper's workload, compressed by the project's own methods,
and set each headline claim beside what the simulation gives.

The numbers are whatever the simulation gives: no parameter here was chosen
to hit a paper's figure. Hardware workloads are the papers' networks from the
zoo with seeded random weights (no ImageNet checkpoints are shipped),
compressed for real (k-means on those weights); SWIS runs the shipped
Fashion-MNIST CNN with its trained weights and real inputs.

Accuracy: every candidate setting of a claim is applied to the shipped
Fashion-MNIST CNN and fine-tuned by the shared loop
(workloads.compression.finetune) with one stated Budget, keeping the best
step on held-apart training images; top-1 is measured on the test set.
Fine-tuned models and scores are cached on disk (compress_finetuned and
workloads.evaluate), so a second `reproduce` reuses them. Each claim then
takes its operating point by a stated rule (`choose`): the lowest-cost
candidate whose fine-tuned top-1 is within 1 point of FP32, else the most
accurate one.

Each paper is one function returning (claims, details); the command prints
them, writes DIR/<paper>.json and DIR/<paper>.png.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from .ir import progress
from .claims import Claim
from .ir.errors import ArchsimError

TOLERANCE_POINTS = 1.0  # the operating-point rule: within this many top-1 points of FP32


@dataclass(frozen=True)
class Budget:
    """The fine-tuning budget every candidate gets (the loop's own defaults
    for the learning rates). `pq_steps`: PQ's soft-assignment step costs
    about 4x a step of the other methods on this CNN, so PQ gets fewer."""
    steps: int = 100
    pq_steps: int = 30
    batch: int = 64
    lr: float = 1e-3
    lr_rest: float = 1e-4
    seed: int = 0
    val_images: int = 1000
    val_every: int = 20

    def describe(self, method: str = "") -> str:
        steps = self.pq_steps if method == "pq" else self.steps
        return (f"{steps} Adam steps x {self.batch} training images (lr {self.lr:g} relative for compression "
                f"tensors, {self.lr_rest:g} for the rest, distillation from FP32), the best of every "
                f"{self.val_every} steps on {self.val_images} held-apart training images; seed {self.seed}")


class Accuracy:
    """The shipped Fashion-MNIST CNN, its FP32 top-1, and `run(method,
    params)`: compress, fine-tune (cached), score post-training and
    fine-tuned top-1 on the first `n_test` test images."""

    def __init__(self, budget: Budget, n_test: int = 10000, cache_dir=None, bar=None):
        from workloads.datasets import fashion_mnist_available, load_fashion_mnist
        from workloads.evaluate import EvalSet, evaluate
        from workloads.zoo.fmnist_models import load_fmnist_model

        if not fashion_mnist_available():
            raise ArchsimError("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist); "
                               "reproduce needs it for accuracy", field="paper")
        self.budget, self.cache_dir, self.bar = budget, cache_dir, bar
        self.model = load_fmnist_model("fmnist_cnn")
        x, y = load_fashion_mnist("train", as_tensor=True, normalize=True)
        n = len(y) - budget.val_images  # the last images are held apart: never trained on
        self.val = (x[n:], y[n:])
        self._train = (x[:n], y[:n])
        self.train_images = x
        self._batches = {}
        self.test = EvalSet.fashion_mnist("test", size=n_test)
        self.fp32 = evaluate(self.model, self.test)["top1"]
        self._evaluate = evaluate

    def batches(self, steps: int):
        from workloads.datasets import training_batches

        if steps not in self._batches:
            self._batches[steps] = training_batches(*self._train, self.budget.batch, steps, self.budget.seed)
        return self._batches[steps]

    def run(self, method: str, params: dict) -> dict:
        from workloads.compression import compress
        from workloads.compression.finetune import compress_finetuned

        b = self.budget
        steps = b.pq_steps if method == "pq" else b.steps
        calib = self.batches(steps)
        res = compress(self.model, method, calib=calib, seed=b.seed, num_threads=1, **params)
        post = self._evaluate(res.model, self.test)["top1"]
        ft = compress_finetuned(self.model, method, params, calib, steps, val=self.val, seed=b.seed,
                                cache_dir=self.cache_dir, progress=self.bar if self.bar is not None else False,
                                result=res, lr=b.lr, lr_rest=b.lr_rest, val_every=b.val_every)
        if ft.info["finetune_cached"] and self.bar is not None:
            self.bar.update(steps)
        return {"result": ft, "top1_post": post, "top1": self._evaluate(ft.model, self.test)["top1"],
                "bits_per_weight": ft.info["bits_per_weight"], "best_step": ft.info["finetune_best_step"],
                "steps": steps, "cached": ft.info["finetune_cached"]}


def choose(rows: list[dict], cost: str, fp32: float, cost_name: str) -> tuple[dict, str]:
    """The operating point: among `rows` (each with "top1" and `cost`), the
    lowest `cost` whose top-1 is within TOLERANCE_POINTS of `fp32`; if none
    is, the most accurate. Returns (row, the rule and what it gave)."""
    rule = (f"lowest {cost_name} among the candidates whose fine-tuned top-1 is within "
            f"{TOLERANCE_POINTS:g} point of FP32 ({100 * fp32:.2f}%), else the most accurate")
    ok = [r for r in rows if 100 * (fp32 - r["top1"]) <= TOLERANCE_POINTS + 1e-9]  # exactly 1 point is within
    if ok:
        return min(ok, key=lambda r: r[cost]), rule + f": {len(ok)} of {len(rows)} qualify"
    return max(rows, key=lambda r: r["top1"]), rule + ": none qualifies, so the most accurate"


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


def _params_str(params: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items() if k != "steps")


def _plan(bar, units: int) -> None:
    """Set the bar's total (units: fine-tuning steps; a simulation counts
    SIM_UNITS) so that its ETA covers the whole paper."""
    if bar is not None:
        bar.reset(total=units)


SIM_UNITS = 10  # a simulation's weight in the progress bar, in fine-tuning steps (only the ETA uses it)


def _tick(bar, units: int = SIM_UNITS, what: str = "") -> None:
    if bar is not None:
        bar.update(units)
        if what:
            bar.set_postfix_str(what)


def _candidates(acc: Accuracy, method: str, candidates, bar) -> list[dict]:
    rows = []
    for params in candidates:
        if bar is not None:
            bar.set_postfix_str(f"fine-tune {method} {_params_str(params)}")
        r = acc.run(method, params)
        rows.append({"setting": _params_str(params), "params": params, "top1_post": r["top1_post"],
                     "top1": r["top1"], "bits_per_weight": r["bits_per_weight"], "best_step": r["best_step"],
                     "cached": r["cached"], "result": r["result"]})
    return rows


def _public(rows: list[dict]) -> list[dict]:
    """Rows without the models (for the JSON)."""
    return [{k: v for k, v in r.items() if k != "result"} for r in rows]


def _acc_text(row: dict, fp32: float) -> str:
    return (f"top-1 {100 * row['top1']:.2f}% fine-tuned ({100 * row['top1_post']:.2f}% post-training; "
            f"FP32 {100 * fp32:.2f}%)")


MVQ_CANDIDATES = (dict(n=1, m=4, k=256, d=16), dict(n=1, m=4, k=256, d=8))


def _fewest_bits(method: str, candidates, budget: Budget, n_test: int, accuracy: bool, cache_dir, bar):
    """MVQ's and SSVQ's operating point: the candidate `choose` picks by
    bits/weight after fine-tuning -> (rows, fp32, params, rule, accuracy
    note); without accuracy, the first candidate."""
    if not accuracy:
        return [], None, candidates[0], "no accuracy measured: the first candidate", ""
    acc = Accuracy(budget, n_test, cache_dir, bar)
    rows = _candidates(acc, method, candidates, bar)
    chosen, rule = choose(rows, "bits_per_weight", acc.fp32, "bits/weight")
    return rows, acc.fp32, chosen["params"], rule, "; FMNIST CNN " + _acc_text(chosen, acc.fp32)


def mvq(model_name: str = "resnet18", budget: Budget = Budget(), n_test: int = 10000, accuracy: bool = True,
        cache_dir=None, bar=None):
    """MVQ (Li et al., ASPLOS 2025): mvq64 (1:4 sparse EWS + weight loader)
    against ews64 (dense EWS, INT8 weights). The MVQ setting (1:4, k=256,
    d in MVQ_CANDIDATES) is chosen on the Fashion-MNIST CNN by `choose`
    (cost: bits/weight), then simulated on `model_name`."""
    _plan(bar, (len(MVQ_CANDIDATES) * budget.steps if accuracy else 0) + 4 * SIM_UNITS)
    rows, fp32, params, rule, acc_note = _fewest_bits("mvq", MVQ_CANDIDATES, budget, n_test, accuracy, cache_dir, bar)
    base_layers = _layers(model_name, "int", bits=8)
    mvq_layers = _layers(model_name, "mvq", **params)
    ews = _simulate(base_layers, "ews64")
    _tick(bar, what="simulate ews64")
    sparse = _simulate(mvq_layers, "mvq64")
    _tick(bar, what="simulate mvq64")
    ews_on_chip, sparse_on_chip = _simulate(base_layers, "ews64", ON_CHIP), _simulate(mvq_layers, "mvq64", ON_CHIP)
    _tick(bar, 2 * SIM_UNITS, "simulate both with activations on chip")
    wl = f"{model_name} (zoo, seeded random weights), batch 1"
    arch = f"mvq64 (MVQ {_params_str(params)}{acc_note})"
    from .hw.ews import array_area_um2

    area_ews, area_mvq = array_area_um2(ews.area_um2), array_area_um2(sparse.area_um2)
    claims = [
        Claim("energy efficiency vs EWS", "x", 2.3, ews.totals["energy_total_pj"] / sparse.totals["energy_total_pj"],
              wl, arch, "ews64 (INT8)", "total energy incl. DRAM and static", rule=rule),
        Claim("systolic-array area reduction at 75% sparsity", "%", 55.0, 100 * (1 - area_mvq / area_ews),
              wl, "mvq64: 16x64 PEs + 4:1 activation muxes", "ews64: 64x64 PEs",
              "the systolic array: PEs (multiplier, adder, weight/activation/psum RFs), activation-select "
              "muxes and control; the weight loader and buffers are not in it (area breakdown below)"),
        Claim("speedup vs EWS", "x", [1.2, 2.2], ews.totals["total_cycles"] / sparse.totals["total_cycles"],
              wl, arch, "ews64 (INT8)", "cycles at the same clock, DRAM channel and buffers", rule=rule),
        Claim("speedup vs EWS, activations on chip", "x", [1.2, 2.2],
              ews_on_chip.totals["total_cycles"] / sparse_on_chip.totals["total_cycles"], wl,
              arch + " + 1 MiB global buffer", "ews64 (INT8) + the same buffer",
              "cycles; activations kept in a 1 MiB global buffer on both", rule=rule),
    ]
    return claims, {"budget": asdict(budget), "rule": rule, "fp32_top1": fp32, "chosen": _params_str(params),
                    "settings": _public(rows), "area_breakdown": _area_breakdown(("ews64", "mvq64"))}


def _area_breakdown(archs) -> dict:
    """{arch: area rows (archsim.hw.ews.area_rows)} of EWS-family arrays."""
    from .config import load_arch
    from .energy import EnergyModel
    from .hw.ews import area_rows

    return {a: area_rows(EnergyModel(load_arch(a))) for a in archs}


def format_area(breakdown: dict) -> str:
    """Area per part (mm^2), one column per architecture, each part's source."""
    names = list(breakdown)
    rows = {}
    for n in names:
        for r in breakdown[n]:
            row = rows.setdefault(r["part"], {"group": r["group"], "source": r["source"]})
            row[n] = r["um2"]
            if r["source"] not in row["source"]:
                row["source"] += f" | {n}: {r['source']}"
    lines = ["area by part (mm^2):", "  " + "group".ljust(24) + "part".ljust(20) + "".join(n.rjust(10) for n in names)
             + "  source"]
    for part, r in sorted(rows.items(), key=lambda kv: list(GROUP_ORDER).index(kv[1]["group"])):
        lines.append("  " + r["group"].ljust(24) + part.ljust(20)
                     + "".join(f"{r.get(n, 0.0) / 1e6:.3f}".rjust(10) for n in names) + "  " + r["source"])
    lines.append("  " + "total".ljust(44) + "".join(f"{sum(x['um2'] for x in breakdown[n]) / 1e6:.3f}".rjust(10)
                                                   for n in names))
    return "\n".join(lines)


GROUP_ORDER = ("PEs", "activation-select muxes", "control", "weight loader", "buffers")


SSVQ_BANDWIDTHS = (0.5, 1, 2, 4, 8, 16, 25.6, 64)
# The same designs with a 1 MiB global buffer that keeps activations (and
# spilled partial sums) on chip between layers: the traffic left is weights,
# the network input and output (docs/memory.md). DeiT-tiny's and ResNet-18's
# activation tensors fit it; their weights do not.
ON_CHIP = ["memory.levels=[{name: global, capacity_bytes: 1048576, word_bits: 128, bytes_per_cycle: 64, "
           "serves: [activations, psums], source: '1 MiB global buffer (archsim choice)'}]",
           "memory.retain_activations=true"]
SSVQ_CANDIDATES = (dict(k=256, d=16, steps=0), dict(k=256, d=8, steps=0))


def ssvq(model_name: str = "deit_tiny", budget: Budget = Budget(), n_test: int = 10000, accuracy: bool = True,
         cache_dir=None, bar=None):
    """SSVQ: ssvq32_ws (sign-applying VQ decoder; one sign bit per weight)
    against the 8-bit model on sa32_ws, at batch 1, over DRAM bandwidth: the
    speedup comes from moving fewer weight bytes, so it grows as the channel
    narrows. The SSVQ setting (k, d in SSVQ_CANDIDATES) is chosen on the
    Fashion-MNIST CNN by `choose` (cost: bits/weight)."""
    _plan(bar, (len(SSVQ_CANDIDATES) * budget.steps if accuracy else 0) + 4 * len(SSVQ_BANDWIDTHS) * SIM_UNITS)
    rows, fp32, params, rule, acc_note = _fewest_bits("ssvq", SSVQ_CANDIDATES, budget, n_test, accuracy, cache_dir, bar)
    base_layers = _layers(model_name, "int", bits=8)
    ssvq_layers = _layers(model_name, "ssvq", **params)
    curves = {}
    for label, extra in (("off chip", []), ("on chip", ON_CHIP)):
        curve = curves[label] = {}
        for bw in SSVQ_BANDWIDTHS:
            ov = [f"dram.bandwidth_bytes_per_cycle={bw}"] + extra
            base = _simulate(base_layers, "sa32_ws", ov).totals["total_cycles"]
            ours = _simulate(ssvq_layers, "ssvq32_ws", ov).totals["total_cycles"]
            curve[str(bw)] = base / ours
            _tick(bar, 2 * SIM_UNITS, f"simulate at {bw} B/cycle, activations {label}")

    def where(curve):
        reach = [float(bw) for bw, s in curve.items() if s >= 3.0]
        return (f"reaches 3x at <= {max(reach):g} B/cycle" if reach else
                f"does not reach 3x at any bandwidth tried ({min(SSVQ_BANDWIDTHS):g}-{max(SSVQ_BANDWIDTHS):g} B/cycle)")

    wl = f"{model_name} (zoo, seeded random weights), batch 1"
    ours_arch = f"ssvq32_ws (SSVQ {_params_str(params)} + sign{acc_note})"
    claims = [Claim("speedup vs the 8-bit model", "x", 3.0, curves["off chip"]["25.6"], wl, ours_arch,
                    "sa32_ws (INT8)", f"at 25.6 B/cycle (LPDDR4 x64 at 1 GHz), activations through DRAM; "
                    f"{where(curves['off chip'])}", curves["off chip"], rule=rule),
              Claim("speedup vs the 8-bit model, activations on chip", "x", 3.0, curves["on chip"]["25.6"], wl,
                    ours_arch + " + 1 MiB global buffer", "sa32_ws (INT8) + the same buffer",
                    f"at 25.6 B/cycle; activations kept in a 1 MiB global buffer, weights streamed; "
                    f"{where(curves['on chip'])}", curves["on chip"], rule=rule)]
    return claims, {"budget": asdict(budget), "rule": rule, "fp32_top1": fp32, "chosen": _params_str(params),
                    "settings": _public(rows)}




SWIS_ARCHS = ("swis16_ws", "stripes16", "pragmatic16", "int8_same_area")
# uniform N = 1, 2, 3 shared bits of 8 in groups of 8, and a per-group N between 0 and 3 averaging 1.5
SWIS_SETTINGS = (("N=1", dict(shared_bits=1, group_size=8)), ("N=2", dict(shared_bits=2, group_size=8)),
                 ("N=3", dict(shared_bits=3, group_size=8)),
                 ("per-group N (mean 1.5, 0..3)", dict(shared_bits=1.5, group_size=8, policy="greedy",
                                                       n_min=0, n_max=3)))


def swis(settings=SWIS_SETTINGS, n_calib: int = 512, budget: Budget = Budget(), n_test: int = 10000,
         cache_dir=None, bar=None):
    """SWIS (Li et al., arXiv 2103.01308): swis16_ws running the shipped
    Fashion-MNIST CNN compressed by SWIS at each of `settings`, fine-tuned
    with `budget`, against the same-size bit-serial Stripes (stripes16) and
    Bit-Pragmatic (pragmatic16) arrays running its INT8 weights, and an INT8
    bit-parallel array of the same PE-array area (int8_same_area) for
    context. Real weights; real inputs: the activation profile (Stripes'
    precision, Pragmatic's essential bits) comes from a calibration pass of
    the first `n_calib` training images; the simulated input is test image 0
    (batch 1). The headline claims are at the setting `choose` picks (cost:
    swis16_ws cycles)."""
    from workloads.compile import trace
    from workloads.profile import attach_profiles, profile_activations

    _plan(bar, len(settings) * (budget.steps + SIM_UNITS) + 4 * SIM_UNITS)
    acc = Accuracy(budget, n_test, cache_dir, bar)
    model = acc.model
    t0 = time.perf_counter()
    prof = profile_activations(model, acc.train_images[:n_calib])
    calib_s = time.perf_counter() - t0
    x = acc.test.images[:1]
    base_layers = attach_profiles(trace(model, x), prof)
    reports = {}
    for a in SWIS_ARCHS[1:]:
        reports[a] = _simulate(base_layers, a)
        _tick(bar, what=f"simulate {a}")
    wl = f"fmnist_cnn (shipped checkpoint, real weights), test image 0, batch 1; profile: {n_calib} train images"
    rows = []
    for label, params in settings:
        row = _candidates(acc, "swis", [params], bar)[0]
        res = row.pop("result")
        sw = _simulate(attach_profiles(trace(res.model, x, formats=res.formats), prof), "swis16_ws")
        _tick(bar, what=f"simulate swis16_ws {label}")
        reports[f"swis16_ws {label}"] = sw
        row.update(setting=label, cycles=sw.totals["total_cycles"])
        for base, short in (("stripes16", "stripes"), ("pragmatic16", "pragmatic")):
            b = reports[base].totals
            row[f"speedup_vs_{short}"] = b["total_cycles"] / sw.totals["total_cycles"]
            row[f"energy_vs_{short}"] = b["energy_total_pj"] / sw.totals["energy_total_pj"]
        rows.append(row)
    chosen, rule = choose(rows, "cycles", acc.fp32, "swis16_ws cycles")
    arch = f"swis16_ws (SWIS {chosen['setting']} of 8, G=8; FMNIST CNN {_acc_text(chosen, acc.fp32)})"
    claims = []
    for base, label, short in (("stripes16", "Stripes", "stripes"), ("pragmatic16", "Bit-Pragmatic", "pragmatic")):
        claims.append(Claim(f"speedup vs {label} (same size)", "x", 6.0, chosen[f"speedup_vs_{short}"], wl, arch,
                            f"{base} (INT8 weights)", "paper: 'up to 6x'; cycles at the same clock, DRAM and "
                            "buffers", rule=rule))
        claims.append(Claim(f"energy vs {label} (same size)", "x", 1.9, chosen[f"energy_vs_{short}"], wl, arch,
                            base, "paper: 1.9x (1.8x workshop); total energy incl. DRAM, SRAM and static",
                            rule=rule))
    layers = {}
    for name, rep in reports.items():
        layers[name] = [{"layer": r["name"], "cycles": r["total_cycles"], "compute_cycles": r["compute_cycles"],
                         "energy_uj": r["energy_total_pj"] / 1e6, "loop_order": r["loop_order"]}
                        for r in rep.layers + [rep.totals]]
    details = {"budget": asdict(budget), "rule": rule, "fp32_top1": acc.fp32, "chosen": chosen["setting"],
               "settings": _public(rows), "calibration_wall_s": calib_s,
               "area_um2": {name: rep.area_um2 for name, rep in reports.items()}, "per_layer": layers}
    return claims, details


def pqa(model_name: str = "resnet20", budget: Budget = Budget(), n_test: int = 10000, accuracy: bool = True,
        cache_dir=None, bar=None):
    """PQA (arXiv 2305.18334): the hardware claims of archsim/reproduce_pqa.py
    at each PQ point; the headline is the point `choose` picks (cost: the
    negated perf/area gain over the same-area INT8 array), each point's
    accuracy being the Fashion-MNIST CNN compressed by PQ at that point and
    fine-tuned with `budget` (PQ's step count)."""
    from dataclasses import replace

    from .reproduce_pqa import POINTS, pqa as run_pqa

    _plan(bar, (len(POINTS) * budget.pq_steps if accuracy else 0) + 30 * SIM_UNITS)
    if bar is not None:
        bar.set_postfix_str("simulate PQA and INT8 (resizing INT8 to equal area and throughput)")
    claims, details = run_pqa(model_name=model_name, accuracy=False)
    _tick(bar, 30 * SIM_UNITS)

    def key(pt):
        Ls, Np, pb, lb = pt
        return f"Ls={Ls},Np={Np}" + ("" if (pb, lb) == (8, 16) else f",{pb}b/{lb}b")

    by_key = {}
    for c in claims:
        by_key.setdefault(c.metric.split(", ")[1], []).append(c)
    if not accuracy:
        return claims, details
    acc = Accuracy(budget, n_test, cache_dir, bar)
    params = [dict(Ls=Ls, Np=Np, proto_bits=pb, lut_bits=lb) for Ls, Np, pb, lb in POINTS]
    rows = _candidates(acc, "pq", params, bar)
    for row, pt in zip(rows, POINTS):
        row["setting"] = key(pt)
        same_area = next(c for c in by_key[key(pt)] if "same area" in c.metric)
        row["perf_per_area_gain_pct"] = same_area.measured
        row["cost"] = -same_area.measured
    chosen, rule = choose(rows, "cost", acc.fp32, "cost (highest perf/area vs the same-area INT8 array)")
    head = []
    for c in by_key[chosen["setting"]]:
        note = c.note.split("; Fashion-MNIST")[0] + "; accuracy: " + budget.describe("pq")
        head.append(replace(c, arch=f"pqa ({chosen['setting']}; FMNIST CNN {_acc_text(chosen, acc.fp32)})",
                            note=note, rule=rule))
    details.update(budget=asdict(budget), rule=rule, fp32_top1=acc.fp32, chosen=chosen["setting"],
                   settings=_public(rows), all_claims=[asdict(c) for c in claims])
    return head, details


PAPERS: dict[str, Callable] = {"mvq": mvq, "ssvq": ssvq, "swis": swis, "pqa": pqa}


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
    for rule in dict.fromkeys(c.rule for c in claims if c.rule):
        lines.append(f"  operating point: {rule}")
    return "\n".join(lines)


_SETTING_COLS = (("bits_per_weight", "b/w", "{:.3f}"), ("top1_post", "top-1 post", "{:.2%}"),
                 ("top1", "top-1 tuned", "{:.2%}"), ("best_step", "best step", "{}"),
                 ("speedup_vs_stripes", "x Stripes", "{:.2f}"), ("speedup_vs_pragmatic", "x Pragm.", "{:.2f}"),
                 ("energy_vs_stripes", "E/Stripes", "{:.2f}"), ("energy_vs_pragmatic", "E/Pragm.", "{:.2f}"),
                 ("perf_per_area_gain_pct", "perf/area %", "{:+.1f}"), ("cached", "cached", "{}"))


def format_settings(details: dict) -> str:
    """The candidate settings: accuracy before / after fine-tuning and, where
    measured, each one's hardware ratios; the chosen one marked."""
    rows = details.get("settings") or []
    if not rows:
        return ""
    cols = [c for c in _SETTING_COLS if c[0] in rows[0]]
    table = [["setting"] + [c[1] for c in cols]]
    for r in rows:
        mark = " *" if r["setting"] == details["chosen"] else ""
        table.append([r["setting"] + mark] + [c[2].format(r[c[0]]) for c in cols])
    w = [max(len(t[i]) for t in table) for i in range(len(table[0]))]
    b = details["budget"]
    lines = [f"candidates on the Fashion-MNIST CNN (* = chosen; FP32 top-1 {100 * details['fp32_top1']:.2f}%), "
             f"fine-tuned {b['steps']} steps (PQ {b['pq_steps']}) x {b['batch']} images, best of every "
             f"{b['val_every']} steps on {b['val_images']} held-apart images:"]
    lines += ["  " + "  ".join(t[i].rjust(w[i]) if i else t[i].ljust(w[i]) for i in range(len(t))) for t in table]
    return "\n".join(lines)


def format_layers(details: dict) -> str:
    """Cycles and energy per layer for each configuration of a details dict."""
    per = details["per_layer"]
    names = list(per)
    w = [max(20, len(n)) + 2 for n in names]
    lines = ["cycles / energy (uJ) per layer:",
             "  " + "layer".ljust(8) + "".join(n.rjust(wi) for n, wi in zip(names, w))]
    for i, row in enumerate(per[names[0]]):
        cells = [f"{per[n][i]['cycles']:,} / {per[n][i]['energy_uj']:.2f}" for n in names]
        lines.append("  " + str(row["layer"]).ljust(8) + "".join(c.rjust(wi) for c, wi in zip(cells, w)))
    lines.append(f"calibration pass wall time: {details['calibration_wall_s']:.1f} s")
    return "\n".join(lines)


def format_report(paper: str, claims: list[Claim], details: dict | None) -> str:
    parts = [format_table(paper, claims)]
    if details:
        if details.get("settings"):
            parts.append(format_settings(details))
        if "area_breakdown" in details:
            parts.append(format_area(details["area_breakdown"]))
        if "per_layer" in details:
            parts.append(format_layers(details))
        elif "per_layer_parallelism" in details:
            from .reproduce_pqa import format_details

            parts.append(format_details(details))
    return "\n".join(parts)


_SETTING_BARS = {"swis": (("speedup_vs_stripes", "speed-up vs Stripes", "stripes", ""),
                          ("speedup_vs_pragmatic", "speed-up vs Pragmatic", "pragmatic", ""),
                          ("energy_vs_stripes", "energy gain vs Stripes", "stripes", "//"),
                          ("energy_vs_pragmatic", "energy gain vs Pragmatic", "pragmatic", "//"))}


def plot(paper: str, claims: list[Claim], path: Path, details: dict | None = None):
    """The claims as a grid of panels (plots/reproduce.py), with the
    candidate settings as a last panel where the paper has hardware numbers
    per setting."""
    from plots.reproduce import plot_claims

    settings = (details or {}).get("settings") if paper in _SETTING_BARS else None
    return plot_claims(f"{paper}: paper vs archsim", [asdict(c) for c in claims], path, settings=settings,
                       bars=_SETTING_BARS.get(paper, ()), acc_key="top1",
                       acc_ref=(details or {}).get("fp32_top1"), chosen=(details or {}).get("chosen"))


_VOLATILE = ("cached", "calibration_wall_s", "wall_s")


def _stable(obj):
    """`obj` without the keys that differ between two runs of the same inputs
    (wall times, cache hits), so that the JSON is the same bit for bit."""
    if isinstance(obj, dict):
        return {k: _stable(v) for k, v in obj.items() if k not in _VOLATILE}
    if isinstance(obj, list):
        return [_stable(v) for v in obj]
    return obj


def reproduce(paper: str, out: str | Path = "archsim_out/reproduce", **kw) -> tuple[list[Claim], dict | None]:
    """Run one paper with a progress bar (stderr) whose ETA covers its
    fine-tuning and simulations; write DIR/<paper>.json and .png; return
    (claims, details)."""
    if paper not in PAPERS:
        raise ArchsimError(f"unknown paper {paper!r} (known: {', '.join(sorted(PAPERS))})", field="paper")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ArchsimError(f"{out} is a file, not a folder", field="--out")
    t0 = time.perf_counter()
    with progress.bar(desc=f"reproduce {paper}", unit="step", leave=False) as pbar:
        got = PAPERS[paper](bar=pbar, **kw)
    # a paper function returns its claims, or (claims, details) with extra tables for the JSON
    claims, details = got if isinstance(got, tuple) else (got, None)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"paper": paper, "claims": [asdict(c) for c in claims]}
    if details is not None:
        doc["details"] = _stable(details)
        details["wall_s"] = time.perf_counter() - t0
    (out / f"{paper}.json").write_text(json.dumps(doc, indent=2) + "\n")
    plot(paper, claims, out / f"{paper}.png", details)
    return claims, details
