"""archsim command line. User mistakes print one line and exit 2."""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import tempfile
import unicodedata
from pathlib import Path

from .ir import progress
from .ir.errors import ArchsimError
from .sizing import MAX_FOLDS, fold_estimate  # noqa: F401  (their home is archsim.sizing)

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C

# Format fields that a compression method of the same name also takes, but
# with another meaning (compress's per-channel scales vs the format's count):
# left at the format's own default.
_NOT_FROM_COMPRESS = {"scale_bits"}


def compress_defaults(fmt_name: str) -> dict:
    """The defaults compress(model, <fmt_name>) uses for the fields of the
    weight format of that name, so that `--weights ssvq` is the format that
    `compress(model, "ssvq")` produces (d=16, not the dataclass's d=4)."""
    import dataclasses
    import inspect

    from workloads.compression import METHODS
    from archsim.ir.formats import _all_formats

    fn = METHODS.get(fmt_name)
    cls = next((c for c in _all_formats() if c.name == fmt_name), None)
    if fn is None or cls is None:
        return {}
    fields = {f.name for f in dataclasses.fields(cls)} - _NOT_FROM_COMPRESS
    return {p.name: p.default for p in inspect.signature(fn).parameters.values()
            if p.name in fields and p.default is not inspect.Parameter.empty}


def weights_help() -> str:
    """The --weights help: every WeightFormat with its parameters and
    defaults, read from the dataclasses in archsim/ir/formats.py, where
    compress() has its own default for a field, compress()'s."""
    import dataclasses

    from archsim.ir.formats import _all_formats

    lines = []
    for cls in sorted({c.name: c for c in _all_formats()}.values(), key=lambda c: c.name):
        defaults = {f.name: f.default for f in dataclasses.fields(cls)} | compress_defaults(cls.name)
        lines.append(f"{cls.name}: " + ", ".join(f"{k}={v}" for k, v in defaults.items()))
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


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _slug(text: str) -> str:
    """Readable and filesystem-safe: 'vq:k=256,d=16' -> 'vq-k=256-d=16',
    'café' -> 'cafe'; a name with characters that have no ASCII form keeps
    what it can and a hash of the whole (two such names never collide)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9._=+-]+", "-", ascii_text).strip("-.")
    if ascii_text != unicodedata.normalize("NFKD", text) or not slug:
        slug = f"{slug}-{_short_hash(text)}".strip("-")
    return slug


def run_dir_name(label: str, arch: str, weights: str | None = None, overrides=(), extra=()) -> str:
    """Output folder of one run: <model>_<arch>, then the weight format, the
    overrides and `extra` (batch, profile) when there are any, so runs that
    differ never share a folder; a long name is cut and ends with a hash of
    the whole."""
    parts = [label, arch] + ([weights] if weights else []) + list(overrides) + list(extra)
    name = "_".join(_slug(p) for p in parts if p)
    if len(name) > 80:
        name = f"{name[:70]}_{hashlib.sha256('|'.join(parts).encode()).hexdigest()[:8]}"
    return name


def _parse_format(text: str):
    """'vq:k=256,d=16,codebook_bits=8' -> WeightFormat applied to every weight layer."""
    import yaml

    from archsim.ir.formats import format_from_dict

    name, _, params = text.partition(":")
    d = {"format": name.strip()}
    given = set()
    for item in filter(None, params.split(",")):
        if "=" not in item:
            raise ArchsimError(f"expected key=value, got {item!r}", field="--weights")
        k, v = item.split("=", 1)
        k = k.strip()
        if k in given or k == "format":
            raise ArchsimError(f"{k}: given twice", field="--weights")
        given.add(k)
        try:
            d[k] = yaml.safe_load(v)
        except yaml.YAMLError:
            raise ArchsimError(f"{k}: value {v!r} is not a number or a word", field="--weights") from None
    try:
        return format_from_dict({**compress_defaults(d["format"]), **d})
    except (TypeError, ValueError) as e:
        raise ArchsimError(str(e), field="--weights") from None


def model_names() -> list[str]:
    """Every --model name: the zoo's and the trained Fashion-MNIST checkpoints."""
    from workloads import zoo
    from workloads.zoo.fmnist_models import FMNIST_MODELS

    return sorted(set(zoo.MODELS) | set(FMNIST_MODELS))


def _model_and_input(name: str, batch: int, trained: bool = False):
    """(model, example input of `batch`) for a --model name. A trained
    checkpoint (resnet20_fmnist, vit_fmnist, fmnist_cnn) loads its shipped
    weights; a zoo model has seeded weights, or its trained ones with `trained`."""
    from workloads import zoo
    from workloads.zoo.fmnist_models import FMNIST_MODELS, load_fmnist_model

    if name in zoo.MODELS:
        has = zoo.MODELS[name].pretrained is not None
        with progress.spinner(f"building {name}"):
            return zoo.build(name, pretrained=trained and has), zoo.default_input(name, batch=batch)
    if name in FMNIST_MODELS:
        import torch

        size = FMNIST_MODELS[name][1]
        with progress.spinner(f"loading the trained {name}"):
            return load_fmnist_model(name), torch.zeros(batch, 1, size, size)
    import difflib

    close = difflib.get_close_matches(name, model_names(), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ArchsimError(f"unknown model {name!r} ({hint}known: {', '.join(model_names())})", field="--model")


def _layers_from_args(args, arch):
    from archsim.api import to_layers

    # the format is checked before the model is built and traced (seconds)
    fmt = _parse_format(args.weights) if args.weights else None
    if args.topology and args.onnx:
        raise ArchsimError("give --topology or --onnx, not both", field="--onnx")
    if args.onnx:
        from workloads.onnx_import import load_onnx

        if args.profile:
            raise ArchsimError("needs --model: an ONNX file is not run on inputs here", field="--profile")
        layers = load_onnx(args.onnx, batch=args.batch)  # a dynamic batch dimension takes --batch
    elif args.topology:
        from workloads.scalesim_import import read_topology

        for flag, given in (("--profile", args.profile), ("--batch", args.batch > 1)):
            if given:
                raise ArchsimError("needs --model: a topology CSV has no network to run inputs through",
                                   field=flag)
        layers = read_topology(args.topology)
    else:
        model, x1 = _model_and_input(args.model, 1, trained=bool(args.profile))
        if args.batch > 1:
            from .sizing import check_batch

            check_batch(to_layers(model, x1), args.batch, [arch], args.model, "--batch")
            _, x = _model_and_input(args.model, args.batch)
        else:
            x = x1
        layers = to_layers(model, x)
        if args.profile:
            layers, args.profile_used = _profiled(layers, model, args.model, args.profile)
    if fmt is not None:
        for L in layers:
            if L.op != "matmul":
                L.fmt = fmt.for_layer(L)  # per-layer fields (PQ's cout) from the layer
    return layers


def _profiled(layers, model, name: str, n: int) -> tuple[list, int]:
    """--profile N: the layers with the activation statistics Stripes and
    Pragmatic read, from the model that was traced. A model with trained
    weights is profiled on its first N Fashion-MNIST training images (real
    activations; N is capped at the set's size); any other on N seeded
    standard-normal inputs through its seeded weights (synthetic, like those
    weights), refused when they would not fit in memory."""
    from workloads import zoo
    from workloads.profile import attach_profiles, profile_activations
    from workloads.zoo.fmnist_models import FMNIST_MODELS, prepare_images

    trained = name in FMNIST_MODELS
    if trained:
        from workloads.datasets import fashion_mnist_available, load_fashion_mnist

        if not fashion_mnist_available():
            raise ArchsimError("a profile of real activations needs Fashion-MNIST "
                               "(apt-get install dataset-fashion-mnist)", field="--profile")
        x, _ = load_fashion_mnist("train", as_tensor=True, normalize=True)
        if n > len(x):
            print(f"archsim: --profile {n:,}: Fashion-MNIST has {len(x):,} training images; profiling all "
                  f"{len(x):,}", file=sys.stderr)
            n = len(x)
        x, what = prepare_images(name, x[:n]), "trained weights, real training images"
    else:
        from .sizing import available_bytes

        c, h, w = zoo.MODELS[name].input_shape
        need, have = n * c * h * w * (4 + 8), available_bytes()  # float32 inputs and the profiler's float64 batch
        if need > have // 2:
            raise ArchsimError(f"{n:,} synthetic {c}x{h}x{w} inputs need about {need / 2**30:.1f} GiB, and "
                               f"{have / 2**30:.1f} GiB are free: profile fewer", field="--profile")
        x, what = zoo.default_input(name, batch=n, seed=1), "synthetic inputs"
    # the profiler runs a copy of the model over the inputs twice (ranges, then
    # statistics); a forward hook on the model is copied with it and counts the images
    with progress.bar(total=2 * n, desc=f"profiling {name} ({what}, 2 passes)", unit="image") as pbar:
        hook = model.register_forward_hook(lambda mod, inp, out: pbar.update(inp[0].shape[0]))
        try:
            prof = profile_activations(model, x)
        finally:
            hook.remove()
    return attach_profiles(layers, prof), n


def _check_size(layers, arch, source: str, flag: str) -> None:
    from .sizing import check_folds

    check_folds(layers, arch, source, flag)


def _label(args) -> str:
    return Path(args.topology or args.onnx).stem if args.topology or args.onnx else args.model


def _source(args) -> tuple[str, str]:
    """(the workload as the user gave it, its flag) for error messages."""
    for flag, value in (("--topology", args.topology), ("--onnx", args.onnx)):
        if value:
            return value, flag
    return args.model, "--model"


def _workload_label(args) -> str:
    """What the report's header and report.json say was simulated."""
    extra = ([f"batch {args.batch}"] if args.batch > 1 else []) + \
        ([f"activation profile of {args.profile_used:,} inputs"] if args.profile else [])
    return _label(args) + (f" ({', '.join(extra)})" if extra else "")


def _arch_label(arch_arg: str, arch) -> str:
    """The architecture's part of a run folder: its name for a built-in; for
    a user's YAML its name and a hash of its path, so that a copy keeping a
    built-in's `name:` never writes into the built-in's folder."""
    from archsim.config import ARCH_DIR, resolve_arch_path

    path = resolve_arch_path(arch_arg).resolve()
    if path == (ARCH_DIR / f"{arch.name}.yaml").resolve():
        return arch.name
    return f"{arch.name}-{_short_hash(str(path))}"


# -- output paths, checked before any work --------------------------------------

def check_out_dir(path, flag: str) -> Path:
    """A folder a command will write: made now, and written once, so that a
    file in its place or a read-only place is one line before the work."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ArchsimError("is a file; expected a folder", file=str(path), field=flag)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise ArchsimError(f"cannot write here: {e.strerror or e}", file=str(path), field=flag) from None
    return path


def check_out_file(path, flag: str) -> Path:
    """A file a command will write: not a folder, in a folder it can write."""
    path = Path(path)
    if path.is_dir():
        raise ArchsimError("is a folder; expected a file name", file=str(path), field=flag)
    check_out_dir(path.parent if str(path.parent) else Path("."), flag)
    if path.exists() and not os.access(path, os.W_OK):
        raise ArchsimError("cannot write here: the file is read-only", file=str(path), field=flag)
    return path


def cmd_run(args) -> int:
    from archsim.api import simulate
    from archsim.config import load_arch
    from archsim.llm import cli_run, is_llm

    llm = is_llm(args.model) and not args.topology and not args.onnx
    if args.arch is None:  # each kind of workload has its own default design
        args.arch = "llm_edge" if llm else "sa32_ws"
    if llm:
        return cli_run(args)  # prefill + decode (archsim/llm.py)
    if args.prompt is not None:
        raise ArchsimError(f"{args.model} is not an LLM preset; --prompt applies to LLM presets only",
                           field="--prompt")
    arch = load_arch(args.arch, args.set)
    check_out_dir(args.out, "--out")
    if args.trace:
        check_out_file(args.trace, "--trace")
    layers = _layers_from_args(args, arch)
    _check_size(layers, arch, *_source(args))
    extra = ([f"batch{args.batch}"] if args.batch > 1 else []) + \
        ([f"profile{args.profile_used}"] if args.profile else [])
    out = Path(args.out) / run_dir_name(_label(args), _arch_label(args.arch, arch), args.weights, args.set, extra)
    trace_layers = [n for n in (args.trace_layers or "").split(",") if n] or None
    report = simulate(layers, args.arch, overrides=args.set, energy_table=args.energy_table,
                      workload=_workload_label(args), weights=args.weights, trace=args.trace,
                      trace_layers=trace_layers)
    print(report.format_table())
    if args.explain_memory:
        print()
        print(report.explain_memory(min_bytes=args.explain_memory))
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


def format_metrics(m: dict) -> str:
    """A point's metrics as `run` prints them: ms, uJ, mm^2, cycles with
    thousands separators, utilisation in %, accuracy in %."""
    fmt = {"latency_ms": "{:.3f} ms", "energy_uj": "{:,.1f} uJ",
           "ttft_ms": "TTFT {:.3f} ms", "tpot_ms": "TPOT {:.3f} ms", "tokens_per_s": "{:,.1f} tokens/s",
           "energy_per_token_uj": "{:,.1f} uJ/token", "area_mm2": "{:.3f} mm^2",
           "edp_uj_ms": "EDP {:,.2f} uJ*ms", "accuracy": "top-1 {:.2f}%",
           "latency_cycles": "{:,} cycles", "stall_cycles": "{:,} stall cycles"}
    out = [f.format(m[k]) for k, f in fmt.items() if m.get(k) is not None]
    if m.get("utilisation") is not None:
        out.append(f"utilisation {100 * m['utilisation']:.1f}%")
    if m.get("dram_bytes") is not None:
        out.append(f"DRAM {m['dram_bytes'] / 1024:,.1f} KiB")
    if m.get("dram_bytes_per_token") is not None:
        out.append(f"DRAM {m['dram_bytes_per_token'] / 1e6:,.2f} MB/token")
    return "  ".join(out)


def cmd_sweep(args) -> int:
    from archsim.config import load_arch
    from archsim.dse import check_grid, expand, parse_grid, pareto_front, sweep

    from archsim.dse import foreign_rows

    grid = parse_grid(args.grid)
    check_grid(args.arch, grid)  # every key and value against the schema, before anything runs
    check_out_file(args.out, "--out")
    if args.plot:
        check_out_file(args.plot, "--plot")
    args.interrupted = (f"the points finished so far are saved in {args.out}; run the same command again "
                        f"to resume (they are reused)")
    layers = _layers_from_args(args, load_arch(args.arch[0]))
    points = expand(args.arch, grid)
    for arch_name, overrides in points:
        try:
            point_arch = load_arch(arch_name, list(overrides), flag="--grid")
        except ArchsimError:
            continue  # a combination the schema refuses: recorded in its row by sweep()
        _check_size(layers, point_arch, *_source(args))
    total = len(points)
    print(f"{total} design points of {_label(args)} -> {args.out} "
          f"(points already there with the same inputs are reused)")

    def show(row, how):
        what = row["error"] or f"{row['latency_ms']:.3f} ms  {row['energy_uj']:.1f} uJ  {row['area_mm2']:.2f} mm^2"
        progress.write(f"  {how:9s} {row['arch']} {' '.join(row['overrides'])}: {what}")

    rows = sweep(layers, args.arch, grid, args.out, workload=_workload_label(args), weights=args.weights or "",
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


def _is_study(name_or_path: str) -> bool:
    """A study file (it has `objectives`, `space` or `workload` at its top)
    or a built-in study's name, rather than an architecture."""
    import yaml

    from archsim.config import ARCH_DIR
    from archsim.study import study_names

    p = Path(name_or_path)
    if not p.is_file():
        return any(n.startswith(str(name_or_path)) for n in study_names()) and \
            not (ARCH_DIR / f"{name_or_path}.yaml").is_file()
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and bool({"objectives", "space", "workload"} & set(data))


def cmd_validate(args) -> int:
    from archsim.config import load_arch

    if _is_study(args.file):
        from archsim.study import load_study

        if args.set:
            raise ArchsimError("--set overrides an architecture, and this is a study file", field="--set")
        study = load_study(args.file)
        print(f"{study.path}: ok (study {study.name}: {len(study.all_params())} searched dimensions on "
              f"{', '.join(study.archs)}, objectives {', '.join(study.objectives)})")
        return 0
    arch = load_arch(args.file, args.set)
    pe = arch.pe_array
    what = f"{pe.rows}x{pe.cols} {pe.kind} {getattr(pe, 'dataflow', '')}".rstrip()
    print(f"{args.file}: ok ({arch.name}: {what})")
    return 0


def cmd_list(args) -> int:
    from archsim.config import ARCH_DIR, load_arch
    from archsim.hw import compat, registry
    from archsim.study import study_names

    print("models:        " + ", ".join(model_names()))
    print("architectures (the weight formats each runs):")
    for p in sorted(ARCH_DIR.glob("*.yaml")):
        a = load_arch(p)
        dec = f" + {a.decoder.kind}" if a.decoder is not None else ""
        print(f"  {p.stem}: {a.pe_array.kind}{dec}: {', '.join(compat.arch_formats(a))}")
    print("studies (archsim explore NAME): " + ", ".join(study_names()))
    print("weight formats (--weights FORMAT:key=value,...):")
    for line in weights_help().split("(defaults): ", 1)[1].split("; "):
        print("  " + line)
    print("which format runs on which PE kind, with which decoder, by what rule (- : no decoder):")
    decoders = [compat.NO_DECODER] + registry.kinds("decoder")
    for kind in registry.kinds("pe_array"):
        print(f"  {kind}:")
        for f in compat.format_names():
            runs = [(d, rule) for d in decoders for ok, rule in [compat.verdict(f, kind, d)] if ok]
            if runs:
                print(f"    {f} (decoder {', '.join(d for d, _ in runs)}): {runs[-1][1]}")
    print("compression methods (workloads.compression.compress(model, METHOD, **params)):")
    for line in compression_methods():
        print("  " + line)
    for line in llm_lines():
        print(line)
    return 0


def llm_param_count(cfg) -> int:
    """Parameters of workloads.zoo.llm.DecoderLM(cfg), from its config (a
    meta model would import torch's compiler just to count): embeddings,
    OPT's learned positions, per block the linears (OPT: with biases) and
    two norms, the final norm, the head unless tied to the embeddings."""
    hd, opt = cfg.head_dim, cfg.style == "opt"
    attn = cfg.dim * cfg.n_heads * hd * 2 + cfg.dim * cfg.n_kv_heads * hd * 2
    mlp = cfg.dim * cfg.ffn_dim * (2 if opt else 3)
    bias = (cfg.n_heads * hd + 2 * cfg.n_kv_heads * hd + cfg.dim + cfg.ffn_dim + cfg.dim) if opt else 0
    norm = cfg.dim * (2 if opt else 1)
    n = cfg.vocab * cfg.dim + cfg.n_layers * (attn + mlp + bias + 2 * norm) + norm
    n += 0 if cfg.tie_embeddings else cfg.vocab * cfg.dim
    return n + ((cfg.max_pos + 2) * cfg.dim if opt else 0)


def llm_lines() -> list[str]:
    """`archsim list`'s LLM sections: presets, weight formats, KV formats."""
    from archsim.ir.formats import LLM_WEIGHT_FORMATS, llm_weight_format
    from archsim.llm import KV_FORMATS
    from workloads.zoo.llm import ALIASES, PRESETS

    out = ["LLM presets (archsim run --model NAME --prompt N --generate N [--batch B] [--weights F] [--kv F]; "
           "a study's workload: {llm: NAME, ...}):"]
    rows = [("name", "style", "params", "layers", "dim", "heads/kv", "source")]
    for name, cfg in PRESETS.items():
        n = cfg.published_params or llm_param_count(cfg)
        size = f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M"
        src = cfg.source.split(":", 1)[0].removesuffix("/config.json")
        rows.append((name, cfg.style, size, str(cfg.n_layers), str(cfg.dim), f"{cfg.n_heads}/{cfg.n_kv_heads}", src))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    out += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows]
    out.append("  aliases: " + ", ".join(f"{a} = {b}" for a, b in ALIASES.items()))
    out.append("LLM weight formats (--weights NAME with an LLM preset; a study's compression.weights), "
               "bits per weight of a 4096 x 4096 linear with scales and codebooks:")
    for name in LLM_WEIGHT_FORMATS:
        f = llm_weight_format(name, 4096)
        out.append(f"  {name}: {f.name}, {f.storage_bits(4096 * 4096) / 4096 ** 2:.2f} bits/weight")
    out.append("KV-cache formats (--kv NAME; a study's workload.kv or compression.kv):")
    scale = {"token": "a {}-bit scale per token and K/V head", "head": "a {}-bit scale per K/V head and layer"}
    for name, kv in KV_FORMATS.items():
        extra = f" + {scale[kv.scale].format(kv.scale_bits)}" if kv.scale in scale else ""
        out.append(f"  {name}: {kv.bits}-bit elements{extra}")
    return out


def cmd_explore(args) -> int:
    from archsim.explore import (DaskExecutor, LocalExecutor, check_study_size, explore, grid_size,
                                 objective_axes, pareto_rows, results_dataframe)
    from archsim.study import load_study

    study = load_study(args.study)
    check_out_dir(args.out, "--out")
    for flag in ("csv", "plot", "html"):
        if getattr(args, flag):
            check_out_file(getattr(args, flag), f"--{flag}")
    if args.compare:
        _two_trials(args.compare)
        check_out_file(args.compare_plot, "--compare-plot")
    check_study_size(study)
    if args.executor == "dask":
        if not args.scheduler:
            raise ArchsimError("--executor dask needs --scheduler tcp://HOST:PORT", field="--scheduler")
        executor = DaskExecutor(args.scheduler)
    else:
        executor = LocalExecutor(args.workers)
    n = grid_size(study)
    total = min(study.trials, n) if n else study.trials
    w = study.workload
    what = w.checkpoint or w.model or w.llm or Path(w.topology or w.onnx).stem
    if study.is_llm:
        what += f" (prompt {w.llm_value('prompt')}, generate {w.llm_value('generate')}, batch {w.batch})"
    else:
        what += f" (batch {w.batch})"
    print(f"study {study.name}: {total} points of {what}, "
          f"objectives {', '.join(study.objectives)} -> {args.out}")
    args.interrupted = (f"the finished points are saved in {args.out}; run the same command again to resume "
                        f"(points cut off run again)")

    from archsim.ir import progress as bars

    pbar = bars.bar(total=total, desc="study", unit="point", leave=True)

    # Ctrl-C is taken between points: a KeyboardInterrupt that lands in a finalizer
    # (SQLAlchemy cleans its ORM state in GC callbacks) is printed and swallowed by
    # Python, and the study would run on. A second Ctrl-C interrupts at once.
    import signal

    asked: list = []

    def on_sigint(signum, frame):
        if asked:
            raise KeyboardInterrupt
        asked.append(signum)

    def on_point(number, params, metrics, err):
        bars.write(f"  #{number} {' '.join(f'{k}={v}' for k, v in params.items())}: "
                   f"{err or format_metrics(metrics)}")
        pbar.update(1)
        if asked:
            raise KeyboardInterrupt

    # A query cut off by Ctrl-C makes SQLAlchemy log "Error closing cursor" with a
    # traceback when the storage closes; its errors still raise, and the CLI says
    # in one line what was interrupted.
    import logging

    logging.getLogger("sqlalchemy").addHandler(logging.NullHandler())
    logging.getLogger("sqlalchemy").propagate = False
    interrupted = False
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        ostudy = explore(study, args.out, executor, on_point=on_point)
        if asked:  # pressed while the last point ran: the study is complete, and saved
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        interrupted = True  # cut the running points off instead of waiting for them
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
        pbar.close()
        executor.close(interrupted=interrupted)
    df = results_dataframe(ostudy)
    front = pareto_rows(df, study.objectives)
    print(f"{len(df)} points, {int(df['feasible'].sum()) if len(df) else 0} feasible; Pareto front:")
    print(format_front(front) if len(front) else "  (none)")
    if args.csv:
        df.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    if args.plot:
        from plots.explore import plot_fronts

        plot_fronts(df, objective_axes(study.objectives), args.plot)
        print(f"wrote {args.plot}")
    if args.html:
        from plots.explore import html_report

        html_report(df, objective_axes(study.objectives), args.html, title=f"study {study.name}")
        print(f"wrote {args.html}")
    if args.compare:
        from archsim.explore import design_report
        from plots.explore import plot_two_designs

        a, b = _two_trials(args.compare)
        plot_two_designs(design_report(study, args.out, a), design_report(study, args.out, b),
                         (f"#{a}", f"#{b}"), args.compare_plot)
        print(f"wrote {args.compare_plot}")
    return 0


def format_front(front) -> str:
    """The front's rows as `run` prints numbers: parameters, then each
    metric in its unit (ms, uJ, mm^2, %), cycles with thousands separators."""
    params = [c for c in front.columns if c.startswith("param:")]
    cols = {"weights": ("weights", "{}"), "kv": ("kv", "{}"),
            "ttft_ms": ("TTFT ms", "{:.3f}"), "tpot_ms": ("TPOT ms", "{:.3f}"), "tokens_per_s": ("tokens/s", "{:,.1f}"),
            "energy_per_token_uj": ("uJ/token", "{:,.1f}"), "prefill_energy_uj": ("prefill uJ", "{:,.1f}"),
            "latency_ms": ("latency ms", "{:.3f}"), "energy_uj": ("energy uJ", "{:,.1f}"),
            "edp_uj_ms": ("EDP uJ*ms", "{:,.2f}"), "area_mm2": ("area mm^2", "{:.3f}"),
            "accuracy": ("top-1 %", "{:.2f}"), "latency_cycles": ("cycles", "{:,}"),
            "utilisation": ("util %", None)}
    table = front[["trial"] + params].rename(columns={c: c[len("param:"):] for c in params})
    for k, (title, f) in cols.items():
        if k in front and front[k].notna().any():
            table[title] = [f"{100 * v:.1f}" if f is None else f.format(int(v) if k == "latency_cycles" else v)
                            for v in front[k]]
    return table.to_string(index=False)


def _two_trials(text: str) -> tuple[int, int]:
    try:
        a, b = (int(x) for x in text.split(","))
    except ValueError:
        raise ArchsimError(f"expected two trial numbers like 3,17, got {text!r}", field="--compare") from None
    return a, b


def cmd_reproduce(args) -> int:
    from archsim import reproduce as rp

    check_out_dir(args.out, "--out")
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


def version_line() -> str:
    from .version import COST_MODEL_VERSION, __version__

    return f"archsim {__version__} (cost model {COST_MODEL_VERSION})"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="archsim", description="Simulate DNN accelerators running compressed models.",
                                epilog="`archsim COMMAND --help` for a command's options; `archsim list` for the "
                                       "built-in models, architectures, studies and weight formats.")
    p.add_argument("--version", action="version", version=version_line(),
                   help="print archsim's version and its cost model's, and exit")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def add_arch_opts(sp):
        sp.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                        help="override an architecture field, e.g. --set pe_array.rows=64 (repeatable)")

    def add_quiet(sp):
        sp.add_argument("--quiet", "-q", action="store_true",
                        help="no progress bars (they are drawn on stderr only when it is a terminal)")

    def add_workload_opts(sp):
        sp.add_argument("--model", default="resnet18",
                        help="zoo model or trained checkpoint (resnet20_fmnist, vit_fmnist, fmnist_cnn) "
                             "(default resnet18; `archsim list`)")
        sp.add_argument("--batch", type=_positive_int, default=1, metavar="B",
                        help="images per inference (default 1); a batch too large to trace or simulate "
                             "is refused up front")
        sp.add_argument("--topology", help="a SCALE-Sim topology CSV instead of --model")
        sp.add_argument("--onnx", metavar="FILE.onnx",
                        help="an ONNX model instead of --model (a dynamic batch dimension takes --batch)")
        sp.add_argument("--weights", metavar="FORMAT[:k=v,...]", help=weights_help())
        sp.add_argument("--energy-table", help="CSV energy table replacing the architecture's")
        sp.add_argument("--profile", type=_positive_int, metavar="N",
                        help="record activation statistics (what stripes and pragmatic arrays read) from N "
                             "inputs: for a trained model (fmnist_cnn, resnet20_fmnist, vit_fmnist) its "
                             "trained weights on real Fashion-MNIST images (at most the 60,000 of the training "
                             "set), for other models seeded standard-normal inputs (synthetic, like their weights)")

    r = sub.add_parser("run", help="simulate a model on an architecture and print the per-layer report")
    add_workload_opts(r)
    r.add_argument("--arch", default=None, help="built-in architecture name or YAML path (default sa32_ws; "
                                                 "llm_edge for an LLM preset)")
    r.add_argument("--out", default="archsim_out",
                   help="output folder (default archsim_out); the report goes to <out>/<model>_<arch>[_<weights>]"
                        "[_<overrides>]/")
    r.add_argument("--no-plot", action="store_true", help="skip the PNG")
    r.add_argument("--trace", metavar="FILE.json",
                   help="write the simulation as a Chrome/Perfetto timeline (ui.perfetto.dev, chrome://tracing)")
    r.add_argument("--trace-layers", metavar="NAME,NAME",
                   help="with --trace: only these layers' slices (keeps the file small)")
    r.add_argument("--prompt", type=int, metavar="N",
                   help="LLM presets (llama2-7b, tinyllama-1.1b, llama3-8b, opt-1.3b): prompt tokens of the "
                        "prefill (default 512)")
    r.add_argument("--generate", type=int, default=128, metavar="N",
                   help="LLM presets: tokens generated, the first by the prefill (default 128)")
    r.add_argument("--kv", default="int8", metavar="FORMAT",
                   help="LLM presets: KV cache format, fp16, int8, int8-head, int4 or int4-head (default int8)")
    r.add_argument("--explain-memory", nargs="?", type=int, const=64 * 1024, default=0, metavar="MIN_BYTES",
                   help="say where each tensor of at least MIN_BYTES (default 65536) lived in the memory levels, "
                        "why, and the bytes it moved between them")
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

    v = sub.add_parser("validate", help="check an architecture YAML or a study file against its schema")
    v.add_argument("file", help="architecture YAML, SCALE-Sim .cfg, study YAML, or a built-in's name")
    add_arch_opts(v)
    add_quiet(v)
    v.set_defaults(func=cmd_validate)

    ex = sub.add_parser("explore", help="multi-objective search over a study file (Optuna; resumable)")
    ex.add_argument("study", help="study YAML (see archsim/study.py), or a built-in study's name or its start "
                                  "(e.g. fmnist; `archsim list`)")
    ex.add_argument("--out", default="archsim_out/explore", help="folder for the SQLite study and the cache")
    ex.add_argument("--executor", choices=["local", "dask"], default="local",
                    help="local process pool (default) or a Dask cluster")
    ex.add_argument("--scheduler", help="Dask scheduler address, tcp://HOST:PORT")
    ex.add_argument("--workers", type=int, help="local processes (default: all cores)")
    ex.add_argument("--csv", help="write every point's parameters and metrics here")
    ex.add_argument("--plot", help="write Pareto fronts for every pair of objectives here (PNG)")
    ex.add_argument("--html", help="write an interactive report of the study here (hover shows a point's "
                                   "parameters)")
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

    l = sub.add_parser("list", help="list built-in models, architectures, weight formats, compression methods, "
                                    "and LLM presets with their weight and KV formats")
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
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        parser.print_help()
        return 0
    if argv == ["--version"]:  # a return, not argparse's SystemExit: main() returns its exit code
        print(version_line())
        return 0
    args = parser.parse_args(argv)
    if getattr(args, "cmd", None) == "sweep" and not args.arch:
        args.arch = ["sa32_ws"]
    progress.set_quiet(args.quiet)
    try:
        return args.func(args)
    except ArchsimError as e:
        print(f"archsim: error: {_one_line(e.one_line())}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        saved = getattr(args, "interrupted", None) or "nothing was saved"
        print(f"\narchsim: interrupted: {saved}", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
