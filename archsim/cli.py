"""archsim command line. User mistakes print one line and exit 2."""
from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

from . import progress
from .errors import ArchsimError

EXIT_USER_ERROR = 2


def weights_help() -> str:
    """The --weights help: every WeightFormat with its parameters and
    defaults, read from the dataclasses in workloads/formats.py."""
    import dataclasses

    from workloads.formats import _all_formats

    lines = []
    for cls in sorted({c.name: c for c in _all_formats()}.values(), key=lambda c: c.name):
        params = ", ".join(f"{f.name}={f.default}" for f in dataclasses.fields(cls))
        lines.append(f"{cls.name}: {params}")
    return ("weight format for every layer, FORMAT[:key=value,...], e.g. vq:k=256,d=16 or dense:bits=4. "
            "Formats and their parameters (defaults): " + "; ".join(lines))


def compression_methods() -> list[str]:
    """'mvq(n=2, m=4, ...)' for every method of workloads.compression."""
    import inspect

    from workloads.compression import METHODS

    out = []
    for name, fn in METHODS.items():
        params = [f"{p.name}={p.default!r}" if isinstance(p.default, str) else f"{p.name}={p.default}"
                  for p in inspect.signature(fn).parameters.values()
                  if p.name not in ("model", "calib", "seed", "skip_layers") and p.default is not inspect.Parameter.empty]
        out.append(f"{name}({', '.join(params)})")
    return out


def _slug(text: str) -> str:
    """Readable and filesystem-safe: 'vq:k=256,d=16' -> 'vq-k=256-d=16'."""
    return re.sub(r"[^A-Za-z0-9._=+-]+", "-", text).strip("-")


def run_dir_name(label: str, arch: str, weights: str | None = None, overrides=()) -> str:
    """Output folder of one run: <model>_<arch>, then the weight format and
    the overrides when there are any, so runs that differ never share a
    folder; a long name is cut and ends with a hash of the whole."""
    parts = [label, arch] + ([weights] if weights else []) + list(overrides)
    name = "_".join(_slug(p) for p in parts if p)
    if len(name) > 80:
        name = f"{name[:70]}_{hashlib.sha256('|'.join(parts).encode()).hexdigest()[:8]}"
    return name


def _parse_format(text: str):
    """'vq:k=256,d=16,codebook_bits=8' -> WeightFormat applied to every weight layer."""
    import yaml

    from workloads.formats import format_from_dict

    name, _, params = text.partition(":")
    d = {"format": name.strip()}
    for item in filter(None, params.split(",")):
        if "=" not in item:
            raise ArchsimError(f"expected key=value, got {item!r}", field="--weights")
        k, v = item.split("=", 1)
        k = k.strip()
        if k in d:
            raise ArchsimError(f"{k}: given twice", field="--weights")
        try:
            d[k] = yaml.safe_load(v)
        except yaml.YAMLError:
            raise ArchsimError(f"{k}: value {v!r} is not a number or a word", field="--weights") from None
    try:
        return format_from_dict(d)
    except (TypeError, ValueError) as e:
        raise ArchsimError(str(e), field="--weights") from None


def _layers_from_args(args, arch):
    from archsim.api import to_layers

    # the format is checked before the model is built and traced (seconds)
    fmt = _parse_format(args.weights) if args.weights else None
    if args.topology:
        from workloads.scalesim_import import read_topology

        if args.profile:
            raise ArchsimError("needs --model: a topology CSV has no network to run inputs through",
                               field="--profile")
        layers = read_topology(args.topology)
    else:
        layers = _profiled_layers(args.model, args.profile) if args.profile else to_layers(args.model)
    if fmt is not None:
        for L in layers:
            if L.op != "matmul":
                L.fmt = fmt.for_layer(L)  # per-layer fields (PQ's cout) from the layer
    return layers


def _profiled_layers(name: str, n: int) -> list:
    """--profile N: the layers with the activation statistics Stripes and
    Pragmatic read, traced from the model that is profiled. A model with
    trained weights (fmnist_cnn) is profiled with them on its first N
    Fashion-MNIST training images (real activations); any other zoo model on
    N seeded standard-normal inputs through its seeded weights (synthetic,
    like those weights)."""
    from archsim.api import to_layers
    from workloads import zoo
    from workloads.profile import attach_profiles, profile_activations

    if name not in zoo.MODELS:
        return to_layers(name)  # its one-line error for an unknown model
    if zoo.MODELS[name].pretrained is not None:
        from workloads.datasets import fashion_mnist_available, load_fashion_mnist

        if not fashion_mnist_available():
            raise ArchsimError("a profile of real activations needs Fashion-MNIST "
                               "(apt-get install dataset-fashion-mnist)", field="--profile")
        x, _ = load_fashion_mnist("train", as_tensor=True, normalize=True)
        model, x, what = zoo.build(name, pretrained=True), x[:n], "trained weights, real training images"
    else:
        model, x, what = zoo.build(name), zoo.default_input(name, batch=n, seed=1), "synthetic inputs"
    layers = to_layers(model, zoo.default_input(name))
    with progress.spinner(f"profiling {name}'s activations on {n} inputs ({what})"):
        prof = profile_activations(model, x)
    return attach_profiles(layers, prof)


# Most PE-array folds one command line run may tile and simulate: every fold
# is at least one SimPy event and a few TileGraph nodes (about 1 KiB each), so
# far beyond this a run takes hours and tens of GiB instead of failing.
# (ResNet-50 on a 32x32 ws array: about 25 thousand.) The Python API has no limit.
MAX_FOLDS = 2_000_000


def _pe_kind(arch):
    from archsim.hw import registry

    return registry.create("pe_array", arch.pe_array.kind, arch.pe_array, arch, source=arch.path,
                           field="pe_array.kind")


def fold_estimate(layers, arch) -> int:
    """The layers' fold chunks on `arch`, roughly, as its PE kind estimates them."""
    pe = _pe_kind(arch)
    return sum(pe.fold_estimate(L) for L in layers)


def _check_size(layers, arch, source: str, flag: str) -> None:
    pe = _pe_kind(arch)
    total = 0
    for L in layers:
        total += pe.fold_estimate(L)
        if total > MAX_FOLDS:
            raise ArchsimError(f"more than {MAX_FOLDS:,} PE-array folds up to layer {L.name} on a "
                               f"{arch.pe_array.rows}x{arch.pe_array.cols} array: too large to simulate "
                               f"from the command line", file=source, field=flag)


def _label(args) -> str:
    return Path(args.topology).stem if args.topology else args.model


def cmd_run(args) -> int:
    from archsim.api import simulate
    from archsim.config import load_arch

    arch = load_arch(args.arch, args.set)
    layers = _layers_from_args(args, arch)
    _check_size(layers, arch, args.topology or args.model, "--topology" if args.topology else "--model")
    trace_layers = [n for n in (args.trace_layers or "").split(",") if n] or None
    report = simulate(layers, args.arch, overrides=args.set, energy_table=args.energy_table,
                      workload=_label(args), weights=args.weights, trace=args.trace, trace_layers=trace_layers)
    print(report.format_table())
    out = Path(args.out) / run_dir_name(_label(args), arch.name, args.weights, args.set)
    try:
        out.mkdir(parents=True, exist_ok=True)
        report.to_csv(out / "report.csv")
        report.to_json(out / "report.json")
        if not args.no_plot:
            report.plot(out / "report.png")
    except OSError as e:
        raise ArchsimError(f"cannot write the report: {e.strerror or e}", file=str(out), field="--out") from None
    print(f"\nwrote {out}/report.csv, report.json" + ("" if args.no_plot else ", report.png")
          + (f"; timeline {args.trace}" if args.trace else ""))
    return 0


def cmd_sweep(args) -> int:
    from archsim.config import load_arch
    from archsim.dse import check_grid, expand, parse_grid, pareto_front, sweep

    from archsim.dse import foreign_rows

    grid = parse_grid(args.grid)
    check_grid(args.arch, grid)  # every key and value against the schema, before anything runs
    layers = _layers_from_args(args, load_arch(args.arch[0]))
    points = expand(args.arch, grid)
    for arch_name, overrides in points:
        try:
            point_arch = load_arch(arch_name, list(overrides), flag="--grid")
        except ArchsimError:
            continue  # a combination the schema refuses: recorded in its row by sweep()
        _check_size(layers, point_arch, args.topology or args.model, "--topology" if args.topology else "--model")
    total = len(points)
    print(f"{total} design points of {_label(args)} -> {args.out} "
          f"(points already there with the same inputs are reused)")

    def show(row, how):
        what = row["error"] or f"{row['latency_ms']:.3f} ms  {row['energy_uj']:.1f} uJ  {row['area_mm2']:.2f} mm^2"
        progress.write(f"  {how:9s} {row['arch']} {' '.join(row['overrides'])}: {what}")

    rows = sweep(layers, args.arch, grid, args.out, workload=_label(args), weights=args.weights or "",
                 energy_table=args.energy_table,
                 on_point=lambda r: show(r, "simulated"), on_reused=lambda r: show(r, "reused"))
    other = foreign_rows(args.out, rows)
    if other:
        print(f"({len(other)} other results in {args.out} come from different inputs; kept, not shown)")
    front = pareto_front(rows)
    print(f"Pareto front (latency, energy) of {sum(1 for r in rows if not r['error'])} points:")
    for r in front:
        print(f"  {r['latency_ms']:9.3f} ms {r['energy_uj']:10.1f} uJ  {r['arch']} {' '.join(r['overrides'])}")
    if args.plot:
        from plots.pareto import plot_pareto

        plot_pareto(rows, args.plot)
        print(f"wrote {args.plot}")
    return 0


def cmd_validate(args) -> int:
    from archsim.config import load_arch

    arch = load_arch(args.file, args.set)
    pe = arch.pe_array
    print(f"{args.file}: ok ({arch.name}: {pe.rows}x{pe.cols} {pe.kind} {getattr(pe, 'dataflow', '')})".rstrip())
    return 0


def cmd_list(args) -> int:
    from archsim.config import ARCH_DIR
    from workloads import zoo

    print("models:        " + ", ".join(sorted(zoo.MODELS)))
    print("architectures: " + ", ".join(sorted(p.stem for p in ARCH_DIR.glob("*.yaml"))))
    print("weight formats (--weights FORMAT:key=value,...):")
    for line in weights_help().split("(defaults): ", 1)[1].split("; "):
        print("  " + line)
    print("compression methods (workloads.compression.compress(model, METHOD, **params)):")
    for line in compression_methods():
        print("  " + line)
    return 0


def cmd_explore(args) -> int:
    from archsim.explore import DaskExecutor, LocalExecutor, explore, grid_size, pareto_rows, results_dataframe
    from archsim.study import load_study

    study = load_study(args.study)
    if args.executor == "dask":
        if not args.scheduler:
            raise ArchsimError("--executor dask needs --scheduler tcp://HOST:PORT", field="--scheduler")
        executor = DaskExecutor(args.scheduler)
    else:
        executor = LocalExecutor(args.workers)
    n = grid_size(study)
    print(f"study {study.name}: {min(study.trials, n) if n else study.trials} points, "
          f"objectives {', '.join(study.objectives)} -> {args.out}")

    from archsim import progress as bars

    total = min(study.trials, n) if n else study.trials
    pbar = bars.bar(total=total, desc="study", unit="point", leave=True)

    def on_point(number, params, metrics, err):
        what = err or "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if v is not None)
        bars.write(f"  #{number} {' '.join(f'{k}={v}' for k, v in params.items())}: {what}")
        pbar.update(1)

    try:
        ostudy = explore(study, args.out, executor, on_point=on_point)
    finally:
        pbar.close()
        executor.close()
    df = results_dataframe(ostudy)
    front = pareto_rows(df, study.objectives)
    print(f"{len(df)} points, {int(df['feasible'].sum()) if len(df) else 0} feasible; Pareto front:")
    cols = [c for c in front.columns if c.startswith("param:")] + \
        [c for c in ("latency_ms", "energy_uj", "edp_uj_ms", "area_mm2", "accuracy")
         if c in front and front[c].notna().any()]
    print(front[["trial"] + cols].to_string(index=False) if len(front) else "  (none)")
    if args.csv:
        df.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    if args.plot:
        from plots.explore import plot_fronts

        plot_fronts(df, study.objectives, args.plot)
        print(f"wrote {args.plot}")
    if args.compare:
        from archsim.explore import design_report
        from plots.explore import plot_two_designs

        a, b = _two_trials(args.compare)
        plot_two_designs(design_report(study, args.out, a), design_report(study, args.out, b),
                         (f"#{a}", f"#{b}"), args.compare_plot)
        print(f"wrote {args.compare_plot}")
    return 0


def _two_trials(text: str) -> tuple[int, int]:
    try:
        a, b = (int(x) for x in text.split(","))
    except ValueError:
        raise ArchsimError(f"expected two trial numbers like 3,17, got {text!r}", field="--compare") from None
    return a, b


def cmd_reproduce(args) -> int:
    from archsim import reproduce as rp

    budget = rp.Budget(**{k: v for k, v in (("steps", args.steps), ("pq_steps", args.pq_steps),
                                            ("batch", args.batch)) if v is not None})
    claims, details = rp.reproduce(args.paper, args.out, budget=budget, n_test=args.test_images)
    print(rp.format_report(args.paper, claims, details))
    print(f"\nwrote {Path(args.out) / args.paper}.json, {args.paper}.png ({details['wall_s']:.0f} s)")
    return 0


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="archsim", description="Simulate DNN accelerators running compressed models.")
    sub = p.add_subparsers(dest="cmd", required=True)

    def add_arch_opts(sp):
        sp.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                        help="override an architecture field, e.g. --set pe_array.rows=64 (repeatable)")

    def add_quiet(sp):
        sp.add_argument("--quiet", "-q", action="store_true",
                        help="no progress bars (they are drawn on stderr only when it is a terminal)")

    def add_workload_opts(sp):
        sp.add_argument("--model", default="resnet18", help="zoo model (default resnet18; `archsim list`)")
        sp.add_argument("--topology", help="a SCALE-Sim topology CSV instead of --model")
        sp.add_argument("--weights", metavar="FORMAT[:k=v,...]", help=weights_help())
        sp.add_argument("--energy-table", help="CSV energy table replacing the architecture's")
        sp.add_argument("--profile", type=_positive_int, metavar="N",
                        help="record activation statistics (what stripes and pragmatic arrays read) from N "
                             "inputs: for fmnist_cnn its trained weights on real Fashion-MNIST images, for "
                             "other models seeded standard-normal inputs (synthetic, like their weights)")

    r = sub.add_parser("run", help="simulate a model on an architecture and print the per-layer report")
    add_workload_opts(r)
    r.add_argument("--arch", default="sa32_ws", help="built-in architecture name or YAML path (default sa32_ws)")
    r.add_argument("--out", default="archsim_out",
                   help="output folder (default archsim_out); the report goes to <out>/<model>_<arch>[_<weights>]"
                        "[_<overrides>]/")
    r.add_argument("--no-plot", action="store_true", help="skip the PNG")
    r.add_argument("--trace", metavar="FILE.json",
                   help="write the simulation as a Chrome/Perfetto timeline (ui.perfetto.dev, chrome://tracing)")
    r.add_argument("--trace-layers", metavar="NAME,NAME",
                   help="with --trace: only these layers' slices (keeps the file small)")
    add_arch_opts(r)
    add_quiet(r)
    r.set_defaults(func=cmd_run)

    sw = sub.add_parser("sweep", help="design-space sweep over architecture fields; resumable")
    add_workload_opts(sw)
    sw.add_argument("--arch", action="append", default=None, help="base architecture(s) (repeatable; default sa32_ws)")
    sw.add_argument("--grid", action="append", default=[], metavar="PATH=V1,V2",
                    help="values of one field, e.g. --grid pe_array.rows=16,32,64 (repeatable: cartesian product)")
    sw.add_argument("--out", default="archsim_out/sweep.jsonl",
                    help="results, one JSON line per point (default archsim_out/sweep.jsonl); a point already "
                         "there with the same inputs is reused")
    sw.add_argument("--plot", help="write a latency-energy Pareto PNG here")
    add_quiet(sw)
    sw.set_defaults(func=cmd_sweep)

    v = sub.add_parser("validate", help="check an architecture YAML against the schema")
    v.add_argument("file", help="architecture YAML, SCALE-Sim .cfg, or built-in name")
    add_arch_opts(v)
    add_quiet(v)
    v.set_defaults(func=cmd_validate)

    ex = sub.add_parser("explore", help="multi-objective search over a study file (Optuna; resumable)")
    ex.add_argument("study", help="study YAML (see archsim/study.py)")
    ex.add_argument("--out", default="archsim_out/explore", help="folder for the SQLite study and the cache")
    ex.add_argument("--executor", choices=["local", "dask"], default="local",
                    help="local process pool (default) or a Dask cluster")
    ex.add_argument("--scheduler", help="Dask scheduler address, tcp://HOST:PORT")
    ex.add_argument("--workers", type=int, help="local processes (default: all cores)")
    ex.add_argument("--csv", help="write every point's parameters and metrics here")
    ex.add_argument("--plot", help="write Pareto fronts for every pair of objectives here (PNG)")
    ex.add_argument("--compare", metavar="A,B", help="two trial numbers: per-layer breakdown side by side")
    ex.add_argument("--compare-plot", default="compare.png", help="where --compare writes its PNG")
    add_quiet(ex)
    ex.set_defaults(func=cmd_explore)

    rp = sub.add_parser("reproduce", help="a paper's headline claims: its shipped YAMLs vs their baselines")
    rp.add_argument("paper", choices=["mvq", "ssvq", "swis", "pqa"], help="which paper")
    rp.add_argument("--out", default="archsim_out/reproduce", help="folder for <paper>.json and <paper>.png")
    rp.add_argument("--steps", type=_positive_int, help="fine-tuning steps per candidate setting (default 100)")
    rp.add_argument("--pq-steps", type=_positive_int, help="fine-tuning steps per PQ setting (default 40)")
    rp.add_argument("--batch", type=_positive_int, help="training images per fine-tuning step (default 64)")
    rp.add_argument("--test-images", type=_positive_int, default=10000,
                    help="test images that top-1 is measured on (default all 10,000)")
    add_quiet(rp)
    rp.set_defaults(func=cmd_reproduce)

    l = sub.add_parser("list", help="list built-in models, architectures, weight formats and compression methods")
    add_quiet(l)
    l.set_defaults(func=cmd_list)
    return p


def _one_line(text: str) -> str:
    """The message on one line whatever the user typed: line breaks inside
    it (a YAML parser's message, a value with a newline) become spaces,
    other control characters are escaped."""
    text = re.sub(r"\s*[\r\n\x85\u2028\u2029]+\s*", " ", text.strip())
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\x{ord(m.group()):02x}", text)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "cmd", None) == "sweep" and not args.arch:
        args.arch = ["sa32_ws"]
    progress.set_quiet(args.quiet)
    try:
        return args.func(args)
    except ArchsimError as e:
        print(f"archsim: error: {_one_line(e.one_line())}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
