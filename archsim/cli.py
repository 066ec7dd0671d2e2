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
    d = {"format": name}
    for item in filter(None, params.split(",")):
        if "=" not in item:
            raise ArchsimError(f"expected key=value, got {item!r}", field="--weights")
        k, v = item.split("=", 1)
        d[k.strip()] = yaml.safe_load(v)
    try:
        return format_from_dict(d)
    except (TypeError, ValueError) as e:
        raise ArchsimError(str(e), field="--weights") from None


def _layers_from_args(args, arch):
    from archsim.api import to_layers

    if args.topology:
        from workloads.scalesim_import import read_topology

        layers = read_topology(args.topology)
    else:
        layers = to_layers(args.model, act_bits=arch.pe_array.act_bits)
    if args.weights:
        fmt = _parse_format(args.weights)
        for L in layers:
            if L.op != "matmul":
                L.fmt = fmt
    return layers


def _label(args) -> str:
    return Path(args.topology).stem if args.topology else args.model


def cmd_run(args) -> int:
    from archsim.api import simulate
    from archsim.config import load_arch

    arch = load_arch(args.arch, args.set)
    layers = _layers_from_args(args, arch)
    report = simulate(layers, args.arch, overrides=args.set, energy_table=args.energy_table,
                      workload=_label(args), weights=args.weights)
    print(report.format_table())
    out = Path(args.out) / run_dir_name(_label(args), arch.name, args.weights, args.set)
    out.mkdir(parents=True, exist_ok=True)
    report.to_csv(out / "report.csv")
    report.to_json(out / "report.json")
    if not args.no_plot:
        report.plot(out / "report.png")
    print(f"\nwrote {out}/report.csv, report.json" + ("" if args.no_plot else ", report.png"))
    return 0


def cmd_sweep(args) -> int:
    from archsim.config import load_arch
    from archsim.dse import expand, parse_grid, pareto_front, sweep

    from archsim.dse import foreign_rows

    grid = parse_grid(args.grid)
    layers = _layers_from_args(args, load_arch(args.arch[0]))
    total = len(expand(args.arch, grid))
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
    print(f"{args.file}: ok ({arch.name}: {arch.pe_array.rows}x{arch.pe_array.cols} {arch.pe_array.dataflow})")
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

    r = sub.add_parser("run", help="simulate a model on an architecture and print the per-layer report")
    add_workload_opts(r)
    r.add_argument("--arch", default="sa32_ws", help="built-in architecture name or YAML path (default sa32_ws)")
    r.add_argument("--out", default="archsim_out",
                   help="output folder (default archsim_out); the report goes to <out>/<model>_<arch>[_<weights>]"
                        "[_<overrides>]/")
    r.add_argument("--no-plot", action="store_true", help="skip the PNG")
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

    l = sub.add_parser("list", help="list built-in models, architectures, weight formats and compression methods")
    add_quiet(l)
    l.set_defaults(func=cmd_list)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "cmd", None) == "sweep" and not args.arch:
        args.arch = ["sa32_ws"]
    progress.set_quiet(args.quiet)
    try:
        return args.func(args)
    except ArchsimError as e:
        print(f"archsim: error: {e.one_line()}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
