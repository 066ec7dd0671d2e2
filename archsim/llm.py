"""LLM inference: the prefill of a prompt, then decode steps with a KV cache
that grows by one token per step.

    r = simulate_llm("llama2-7b", "arch_configs/llm_edge.yaml", prompt=512, generate=128,
                     weights="aqlm-2x8", kv_format="int8")
    print(r.describe())

What is simulated, and how (each stated in the report's notes):
  * A step is one traced workload (workloads.zoo.llm.step_workload): the
    embedding of the new tokens, every transformer block, then the head
    (final norm + the vocabulary projection of the last token). The prefill
    runs `prompt` tokens with an empty cache and yields the first token
    (TTFT); each of the `generate - 1` decode steps runs one token against a
    cache of prompt + step - 1 tokens (TPOT = their mean).
  * Non-GEMM operators (norms, rotary, softmax, SiLU/GELU, residual adds,
    the embedding lookup and the cache appends) run on the architecture's
    vector unit; without one they are not simulated (said in the notes).
  * The KV cache is a persistent tensor per layer, K and V, at the KV
    format's width (per-token scales included). The allocator places the
    caches before any other tensor, layer by layer, in a memory level that
    serves 'kv' while they fit (read from there; the new token's K and V
    appended there), else they live in DRAM (every step reads the whole
    cache; the append writes one token). As the context grows, the caches
    leave the chip one by one, each copied to DRAM by the vector unit before
    the step that no longer finds it on chip. Attention reads the cache as the second
    operand of q @ K^T and attn @ V; a grouped-query head shares its K/V.
  * Fast mode (the default): blocks with the same weight formats are
    identical; the whole model is estimated from one block with the head and
    each further block at its steady-state cost (two blocks minus one), at
    the first context of each phase; the attention cores (the appends, the
    two matmuls and the softmax between them: the operators whose size
    depends on the context) are then replaced by theirs at each step's
    context, with each layer's caches where the allocator puts them at that
    context. The cores are simulated at `decode_samples` contexts spread
    evenly over the decode steps (first and last included) and linearly
    interpolated in between. mode="full" simulates the whole model at every
    step, which the fast mode must match within 1% (tests/test_llm.py).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from .config import ArchSpec, load_arch
from .ir.errors import ArchsimError

WEIGHT_BUFFERS = ("weight", "codebook", "side")


@dataclass(frozen=True)
class KVFormat:
    """How the KV cache is stored: `bits` per element, plus one scale of
    `scale_bits` per `scale` group: 'token' = per token and K/V head (over
    head_dim elements), 'head' = per K/V head and layer (negligible), 'none'."""
    name: str
    bits: int
    scale_bits: int = 0
    scale: str = "none"

    def bits_per_elem(self, head_dim: int) -> float:
        """Storage bits per cached element, a per-token scale spread over the
        head_dim elements it scales. A per-head scale (one per K/V head and
        layer, a few bytes) is not counted."""
        return self.bits + (self.scale_bits / head_dim if self.scale == "token" else 0)

    @property
    def append_op(self) -> str:
        """The vector-unit operator class of writing new tokens to the cache."""
        return "quantize" if self.scale != "none" else "concat"


KV_FORMATS = {
    "fp16": KVFormat("fp16", 16),
    "int8": KVFormat("int8", 8, 16, "token"),
    "int8-head": KVFormat("int8-head", 8, 16, "head"),
    "int4": KVFormat("int4", 4, 16, "token"),
    "int4-head": KVFormat("int4-head", 4, 16, "head"),
}


@dataclass
class _Seg:
    """One simulate() call's totals (or a sum / interpolation of them)."""
    cycles: float = 0.0
    energy_pj: float = 0.0
    weight_bytes: float = 0.0      # weight tiles, codebooks, scales of the linears, embedding rows
    codebook_bytes: float = 0.0    # of which codebooks
    kv_bytes: float = 0.0
    act_bytes: float = 0.0
    codebook_load_cycles: float = 0.0  # the codebook DMA queue busy (loads of codebooks)
    decoder_wait_cycles: float = 0.0   # the decoder waiting for its inputs (codebook or index tile)
    pe_wait_cycles: float = 0.0        # the PE array waiting for its inputs

    def __add__(self, o):
        return _Seg(*(a + b for a, b in zip(self._t(), o._t())))

    def __mul__(self, k):
        return _Seg(*(a * k for a in self._t()))

    def _t(self):
        return (self.cycles, self.energy_pj, self.weight_bytes, self.codebook_bytes, self.kv_bytes, self.act_bytes,
                self.codebook_load_cycles, self.decoder_wait_cycles, self.pe_wait_cycles)


@dataclass
class LLMReport:
    model: str
    arch: str
    weights: str
    kv_format: str
    prompt: int
    generate: int
    batch: int
    hardware_only: bool
    clock_mhz: float
    ttft_ms: float
    tpot_ms: Optional[float]          # None when generate == 1
    tokens_per_s: Optional[float]
    prefill_energy_uj: float
    energy_per_token_uj: Optional[float]
    dram_bytes_per_token: dict        # decode, per generated token: weights / codebook (of weights) / kv / activations
    stall_ms_per_token: dict          # decode, per step: codebook loading, decoder and PE array waiting for inputs
    prefill_dram_bytes: dict
    weight_storage_bytes: int
    context: list = field(default_factory=list)        # context length of each decode step
    ms_per_token: list = field(default_factory=list)   # its time
    sampled_context: list = field(default_factory=list)
    kv_layers_on_chip: list = field(default_factory=list)  # layers whose cache is on chip, each decode step
    prefill_kv_layers_on_chip: float = 0.0
    mode: str = "fast"
    sim_wall_s: float = 0.0
    notes: list = field(default_factory=list)

    def describe(self) -> str:
        b = self.dram_bytes_per_token
        lines = [f"{self.model} on {self.arch}: weights {self.weights}, KV {self.kv_format}, "
                 f"prompt {self.prompt}, generate {self.generate}, batch {self.batch}"]
        if self.hardware_only:
            lines.append("HARDWARE-ONLY run: meta-device model (shapes only, no weight values); "
                         "formats built from their parameters")
        lines.append(f"  TTFT {self.ttft_ms:.3f} ms   prefill energy {self.prefill_energy_uj / 1e3:.3f} mJ")
        if self.tpot_ms is not None:
            lines.append(f"  TPOT {self.tpot_ms:.3f} ms   {self.tokens_per_s:.1f} tokens/s   "
                         f"energy/token {self.energy_per_token_uj / 1e3:.3f} mJ")
            lines.append(f"  DRAM bytes/token: weights {b['weights'] / 1e6:.2f} MB (codebooks "
                         f"{b['codebook'] / 1e6:.2f} MB), KV {b['kv'] / 1e6:.3f} MB, activations "
                         f"{b['activations'] / 1e6:.3f} MB")
            st = self.stall_ms_per_token
            lines.append(f"  per decode step: codebook loads {st['codebook_load']:.3f} ms, decoder waiting "
                         f"{st['decoder_waiting']:.3f} ms, PE array waiting for data {st['pe_waiting']:.3f} ms")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def headline(self) -> dict:
        return {"model": self.model, "arch": self.arch, "weights": self.weights, "kv": self.kv_format,
                "ttft_ms": self.ttft_ms, "tpot_ms": self.tpot_ms, "tokens_per_s": self.tokens_per_s,
                "energy_per_token_uj": self.energy_per_token_uj,
                **{f"{k}_bytes_per_token": v for k, v in self.dram_bytes_per_token.items()},
                "hardware_only": self.hardware_only}


def plot_tpot(reports: list, path: Union[str, Path], title: str = "") -> None:
    """PNG: time per output token against context length, one line per report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from plots.palette import color

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    styles = {}  # one line style per KV format, one colour per weight format
    for r in reports:
        ls = styles.setdefault(r.kv_format, ("-", "--", ":", "-.")[len(styles) % 4])
        ax.plot(r.context, r.ms_per_token, color=color(r.weights), linestyle=ls,
                label=f"{r.weights}, KV {r.kv_format}")
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("time per output token (ms)")
    ax.set_ylim(bottom=0)
    ax.set_title(title or f"{reports[0].model} on {reports[0].arch}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(report: LLMReport, out_dir: Union[str, Path], plot: bool = True) -> list[str]:
    """llm_report.json (every field) and, with `plot`, tpot.png into out_dir."""
    import dataclasses
    import json

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "llm_report.json").write_text(json.dumps(dataclasses.asdict(report), indent=1))
        if plot and report.context:
            plot_tpot([report], out / "tpot.png")
    except OSError as e:
        raise ArchsimError(f"cannot write the report: {e.strerror or e}", file=str(out), field="--out") from None
    return ["llm_report.json"] + (["tpot.png"] if plot and report.context else [])


def cli_run(args) -> int:
    """`archsim run --model <LLM preset> [--prompt N] [--generate N] [--batch B]
    [--weights FORMAT] [--kv FORMAT] [--arch A] [--set P=V] [--out DIR] [--no-plot]`:
    print the report, write llm_report.json and tpot.png. --weights: a name
    of archsim.ir.formats.LLM_WEIGHT_FORMATS, or FORMAT[:k=v,...] as for CNNs."""
    from archsim.ir.formats import LLM_WEIGHT_FORMATS

    from .cli import _parse_format, run_dir_name

    weights = args.weights or "int8"
    if weights not in LLM_WEIGHT_FORMATS:
        weights = _parse_format(weights)
    prompt = 512 if args.prompt is None else args.prompt
    r = simulate_llm(args.model, args.arch, prompt=prompt, generate=args.generate, batch=args.batch,
                     weights=weights, kv_format=args.kv, overrides=args.set)
    print(r.describe())
    extra = [f"p{prompt}", f"g{args.generate}", f"kv{args.kv}"] + ([f"batch{args.batch}"] if args.batch > 1 else [])
    out = Path(args.out) / run_dir_name(r.model, r.arch, args.weights, args.set, extra)
    wrote = write_outputs(r, out, plot=not args.no_plot)
    print(f"\nwrote {out}/" + ", ".join(wrote))
    return 0


def is_llm(name: str) -> bool:
    """Is `name` an LLM preset (or its alias)?"""
    from workloads.zoo.llm import ALIASES, PRESETS

    return isinstance(name, str) and (name in PRESETS or name in ALIASES)


# -- inputs -----------------------------------------------------------------

def _block_formats(cfg, model, weights) -> tuple[list, object, str, bool]:
    """(per-block {block-relative name: fmt}, head fmt, label, hardware_only)."""
    from archsim.ir.formats import WeightFormat, llm_weight_format
    from workloads.zoo.llm import linear_shapes

    shapes = linear_shapes(cfg)
    real = model is not None and not _is_meta(model)
    if isinstance(weights, str):
        try:
            one = {n: llm_weight_format(weights, out) for n, (out, _) in shapes.items()}
            head = llm_weight_format(weights, cfg.vocab)
        except ValueError as e:
            raise ArchsimError(str(e), field="weights") from None
        return [one] * cfg.n_layers, head, weights, not real
    if isinstance(weights, WeightFormat):  # one format as given, for every linear
        from .api import format_label

        return [{n: weights for n in shapes}] * cfg.n_layers, weights, format_label(weights), not real
    if not isinstance(weights, dict) or not all(isinstance(f, WeightFormat) for f in weights.values()):
        raise ArchsimError("weights must be a format name or {module name: WeightFormat} "
                           "(e.g. compress(...).formats)", field="weights")
    from archsim.ir.formats import DenseFormat

    blocks = []
    for i in range(cfg.n_layers):
        blocks.append({n: weights.get(f"blocks.{i}.{n}", DenseFormat(bits=8)) for n in shapes})
    head = weights.get("head.lm_head", DenseFormat(bits=8))
    kinds = sorted({f.name for f in weights.values()})
    return blocks, head, "compressed: " + ",".join(kinds), not real


def _is_meta(model) -> bool:
    p = next(model.parameters(), None)
    return p is None or p.is_meta


def _check_inputs(arch: ArchSpec, prompt, generate, batch, kv: KVFormat, cfg):
    for name, v, lo in (("prompt", prompt, 1), ("generate", generate, 1), ("batch", batch, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ArchsimError(f"must be an integer >= {lo}, got {v!r}", field=name)
    if prompt + generate > cfg.max_pos:
        raise ArchsimError(f"prompt + generate = {prompt + generate} exceeds {cfg.name}'s "
                           f"{cfg.max_pos} positions", field="generate")
    if kv.bits > arch.pe_array.act_bits:
        raise ArchsimError(f"a {kv.name} KV cache has {kv.bits}-bit elements; the array multiplies "
                           f"activations of at most {arch.pe_array.act_bits} bits",
                           file=arch.path, field="pe_array.act_bits")


# -- simulation -----------------------------------------------------------------

def _seg_of(report) -> _Seg:
    """A Report's totals, its DRAM bytes split by what they were: weights
    (of which codebooks), KV cache (the attention matmuls' cache operand and
    the appends' writes) and activations (the rest)."""
    s = _Seg(cycles=report.totals["total_cycles"], energy_pj=report.totals["energy_total_pj"])
    for row, c in zip(report.layers, report.layer_counters):
        by = c["dram_read_by_buffer"]
        s.codebook_load_cycles += c["busy_cycles"].get("dma.codebook", 0)
        s.decoder_wait_cycles += c["wait_data_cycles"].get("decoder", 0)
        s.pe_wait_cycles += c["wait_data_cycles"].get("pe", 0)
        moved = row["dram_read_bytes"] + row["dram_write_bytes"]
        if row["op"] == "matmul":
            kv = by.get("weight", 0)  # the second operand, the K or V cache, goes to the weight buffer
        elif row["name"].endswith(("k_append", "v_append")) or row["name"].startswith("kv_evict@"):
            kv = row["dram_write_bytes"]
        else:
            kv = 0
            w = sum(by.get(b, 0) for b in WEIGHT_BUFFERS)
            if row["op"] == "embedding":
                w = row["dram_read_bytes"]  # the table's rows (the token ids are a few bytes)
            s.weight_bytes += w
            s.codebook_bytes += by.get("codebook", 0)
            moved -= w
        s.kv_bytes += kv
        s.act_bytes += moved - kv
    return s


def _fmt_key(fmts: dict) -> tuple:
    return tuple(sorted(fmts.items(), key=lambda kv: kv[0]))


class _Runner:
    """Builds and simulates steps of the model: a few blocks (given by their
    weight formats) and the head, for `tokens` new tokens against caches of
    `ctx` tokens, each block's K and V cache in the level the caller chose
    (or the allocator's choice); or the attention core of such a step alone."""

    def __init__(self, cfg, arch: ArchSpec, kv: KVFormat, batch: int, blocks: list, head_fmt):
        self.cfg, self.arch, self.kv, self.batch = cfg, arch, kv, batch
        self.blocks, self.head_fmt = blocks, head_fmt
        self.kv_bits = kv.bits_per_elem(cfg.head_dim)
        self._traced: dict = {}
        self._memo: dict = {}
        self._residency: dict = {}

    # -- where the caches live ---------------------------------------------------
    def cache_bytes(self, ctx: int) -> int:
        """One layer's K (or V) cache at `ctx` tokens."""
        c = self.cfg
        return max(1, math.ceil(self.batch * c.n_kv_heads * ctx * c.head_dim * self.kv_bits / 8))

    def residency(self, ctx: int) -> tuple:
        """((K level, V level) of every layer) with caches of `ctx` tokens: the
        allocator's own choice (archsim.allocator places the caches before
        any other tensor, in layer order, innermost level first while they
        fit), so a run of the whole model decides the same."""
        from .allocator import TensorPlan, allocate

        if ctx not in self._residency:
            n = self.cfg.n_layers
            if not any("kv" in lv.serves for lv in self.arch.memory.levels):
                # nothing to place: skip the allocator (called once per context, thousands in a long run)
                self._residency[ctx] = (("dram", "dram"),) * n
            else:
                plans = [TensorPlan(f"{i}.{w}", "kv", self.cache_bytes(ctx), 0, 0) for i in range(n) for w in "kv"]
                allocate(plans, 1, self.arch)
                self._residency[ctx] = tuple((plans[2 * i].level, plans[2 * i + 1].level) for i in range(n))
        return self._residency[ctx]

    # -- workloads -----------------------------------------------------------------
    def workload(self, tokens: int, ctx: int, blocks: tuple, levels=None, core: bool = False):
        """The traced step of `blocks` (indices into the model's blocks, whose
        weight formats they take) and the head, with caches of `ctx` tokens
        (`tokens` of them new). `levels`: per block (K level, V level) chosen
        by the caller, with the room the other layers' kept caches take
        reserved in each level; None: the allocator decides. `core`: only the
        attention core (see core_ops)."""
        import dataclasses

        from archsim.ir.layer_spec import TensorInfo, Workload
        from workloads.zoo.llm import step_workload

        fmts = tuple(_fmt_key(self.blocks[i]) for i in blocks)
        key = (tokens, ctx, fmts)
        if key not in self._traced:
            named = {f"blocks.{j}.{name}": f for j, i in enumerate(blocks) for name, f in self.blocks[i].items()}
            named["head.lm_head"] = self.head_fmt
            self._traced[key] = step_workload(self.cfg, tokens, ctx - tokens, self.batch, n_blocks=len(blocks),
                                              formats=named, kv_bits=self.kv_bits, kv_op=self.kv.append_op)
        wl = self._traced[key]
        if core:
            wl = wl.subgraph(self.core_ops(tokens, len(blocks)))
        if levels is None:
            return wl
        tensors = dict(wl.tensors)
        for j, (kl, vl) in enumerate(levels):
            for w, lv in (("k", kl), ("v", vl)):
                name = f"blocks.{j}.attn.{w}_cache"
                tensors[name] = dataclasses.replace(tensors[name], level=lv)
        # the caches of the layers not simulated here hold their room all run
        kept: dict[str, int] = {}
        for kl, vl in self.residency(ctx)[len(blocks):]:
            for lv in (kl, vl):
                if lv != "dram":
                    kept[lv] = kept.get(lv, 0) + self.cache_bytes(ctx)
        for lv, nb in kept.items():
            name = f"kv_cache.other_layers@{lv}"
            tensors[name] = TensorInfo(name, nb, None, (), bits=8, persistent=True, level=lv)
        return Workload(wl.ops, tensors, wl.inputs, wl.outputs)

    def core_ops(self, tokens: int, n: int) -> set:
        """Names of the attention-core operators of an n-block step: those whose
        size changes with the context (found by tracing two contexts), and
        the cache appends."""
        key = ("core", tokens, n)
        if key not in self._memo:
            a = self.workload(tokens, tokens + 1, tuple(range(n)))
            b = self.workload(tokens, tokens + 2, tuple(range(n)))
            size = lambda o: (o.M, o.N, o.K, o.groups) if hasattr(o, "fmt") else (o.elems, o.in_elems)
            names = {o.name for o, p in zip(a.ops, b.ops) if size(o) != size(p)}
            names |= {o.name for o in a.ops if o.name.endswith(("k_append", "v_append"))}
            self._memo[key] = names
        return self._memo[key]

    def sim(self, tokens: int, ctx: int, blocks: tuple, levels=None, core: bool = False) -> _Seg:
        from .api import simulate

        key = ("sim", tokens, ctx, tuple(_fmt_key(self.blocks[i]) for i in blocks),
               None if levels is None else tuple(levels), core)
        if key not in self._memo:
            self._memo[key] = _seg_of(simulate(self.workload(tokens, ctx, blocks, levels, core), self.arch))
        return self._memo[key]

    # -- the fast estimate -----------------------------------------------------------
    def first(self, tokens: int, ctx: int, v, core: bool = False) -> _Seg:
        """Block 0 (with the head), its caches at level pair v."""
        return self.sim(tokens, ctx, (0,), (v,), core)

    def steady(self, tokens: int, ctx: int, i: int, v, core: bool = False) -> _Seg:
        """Block i at its steady-state cost: two such blocks minus one keeps the
        overlap with a neighbour that a lone block lacks."""
        return self.sim(tokens, ctx, (i, i), (v, v), core) + self.sim(tokens, ctx, (i,), (v,), core) * -1

    def base(self, tokens: int, ctx: int) -> tuple:
        """(every block and the head at `ctx` with every layer's caches where
        layer 0's are, the attention cores of the same as counted in it)."""
        v = self.residency(ctx)[0]
        full, cores = self.first(tokens, ctx, v), self.first(tokens, ctx, v, True)
        for i in range(1, self.cfg.n_layers):
            full = full + self.steady(tokens, ctx, i, v)
            cores = cores + self.steady(tokens, ctx, i, v, True)
        return full, cores

    def full_step(self, tokens: int, ctx: int) -> _Seg:
        """Every layer in one simulation, the allocator placing the caches."""
        return self.sim(tokens, ctx, tuple(range(self.cfg.n_layers)))

    def evictions(self, ctx: int) -> _Seg:
        """The caches that stop fitting when the context grows from ctx - 1 to
        ctx: each is copied from its level to DRAM (through the vector unit,
        before the step that no longer finds it on chip). None without a
        vector unit to copy them (not simulated then; the notes say so)."""
        moved: dict[str, int] = {}
        for before, now in zip(self.residency(ctx - 1), self.residency(ctx)):
            for lv, lv_now in zip(before, now):
                if lv != "dram" and lv_now != lv:
                    moved[lv] = moved.get(lv, 0) + self.cache_bytes(ctx - 1)
        if not moved or self.arch.vector_unit is None:
            return _Seg()
        key = ("evict", tuple(sorted(moved.items())))
        if key not in self._memo:
            from archsim.ir.layer_spec import TensorInfo, VectorOp, Workload

            from .api import simulate

            ops, tensors = [], {}
            for lv, nb in moved.items():
                src, dst = f"kv_cache.leaving@{lv}", f"kv_cache.left@{lv}"
                op = VectorOp(f"kv_evict@{lv}", "concat", nb, (src,), (nb,), dst)
                ops.append(op)
                tensors[src] = TensorInfo(src, nb, None, (op.name,), bits=8, persistent=True, level=lv)
                tensors[dst] = TensorInfo(dst, nb, op.name, (), bits=8, persistent=True, level="dram")
            self._memo[key] = _seg_of(simulate(Workload(ops, tensors), self.arch))
        return self._memo[key]


def _samples(first: int, last: int, n: int) -> list[int]:
    if last - first + 1 <= n:
        return list(range(first, last + 1))
    return sorted({round(first + (last - first) * i / (n - 1)) for i in range(n)})


def _interp(xs: list, segs: list, x: int) -> _Seg:
    for j in range(len(xs) - 1):
        if xs[j] <= x <= xs[j + 1]:
            w = (x - xs[j]) / (xs[j + 1] - xs[j])
            return segs[j] * (1 - w) + segs[j + 1] * w
    return segs[xs.index(x)]


def simulate_llm(model, arch: Union[str, Path, ArchSpec], prompt: int = 512, generate: int = 128,
                 batch: int = 1, weights: Union[str, dict] = "int8", kv_format: str = "int8",
                 mode: str = "fast", decode_samples: int = 5, overrides=()) -> LLMReport:
    """Simulate prefill + decode of a decoder-only LLM on `arch`.

    model:     an LLM preset name ('llama2-7b', 'tinyllama-1.1b', ...) or a
               workloads.zoo.llm.DecoderLM (its config; its weights say
               whether the run is hardware-only)
    weights:   a format name of archsim.ir.formats.LLM_WEIGHT_FORMATS, the
               same for every linear (hardware-only: built from parameters),
               a WeightFormat used as is for every linear, or
               {module name: WeightFormat} from compress() on the model
    kv_format: a key of KV_FORMATS
    mode:      'fast' (replay + sampled context) or 'full' (every block, every step)
    """
    from workloads.zoo.llm import DecoderLM, linear_shapes, preset

    t0 = time.perf_counter()
    if isinstance(model, DecoderLM):
        cfg, module = model.cfg, model
    elif isinstance(model, str):
        cfg, module = preset(model), None
    else:
        raise ArchsimError(f"model must be an LLM preset name or a DecoderLM, got {type(model).__name__}",
                           field="model")
    if kv_format not in KV_FORMATS:
        raise ArchsimError(f"unknown KV format {kv_format!r}; known: {', '.join(KV_FORMATS)}", field="kv_format")
    if mode not in ("fast", "full"):
        raise ArchsimError(f"mode must be 'fast' or 'full', got {mode!r}", field="mode")
    if not isinstance(decode_samples, int) or decode_samples < 2:
        raise ArchsimError(f"must be an integer >= 2, got {decode_samples!r}", field="decode_samples")
    kv = KV_FORMATS[kv_format]
    if not isinstance(arch, ArchSpec):
        arch = load_arch(arch, list(overrides))
    elif overrides:
        arch = arch.with_overrides(list(overrides))
    _check_inputs(arch, prompt, generate, batch, kv, cfg)
    blocks, head_fmt, label, hardware_only = _block_formats(cfg, module, weights)
    run = _Runner(cfg, arch, kv, batch, blocks, head_fmt)

    steps = list(range(1, generate))          # decode step s: one token after prompt + s - 1 cached
    ctx = [prompt + s for s in steps]
    if mode == "full":
        prefill = run.full_step(prompt, prompt)
        per_step = [run.full_step(1, c) + run.evictions(c) for c in ctx]
        sampled = list(ctx)
    else:
        prefill = _fast_phase(run, prompt, [prompt], [prompt])[0]
        sampled = _samples(ctx[0], ctx[-1], decode_samples) if steps else []
        per_step = [s + run.evictions(c) for s, c in zip(_fast_phase(run, 1, ctx, sampled), ctx)] if steps else []

    mhz = arch.clock_mhz
    ms = [s.cycles / (mhz * 1e3) for s in per_step]
    dec = sum(per_step, _Seg())
    nd = len(per_step)
    per_tok = {"weights": dec.weight_bytes / (nd * batch) if nd else 0.0,
               "codebook": dec.codebook_bytes / (nd * batch) if nd else 0.0,
               "kv": dec.kv_bytes / (nd * batch) if nd else 0.0,
               "activations": dec.act_bytes / (nd * batch) if nd else 0.0}
    tpot = sum(ms) / nd if nd else None
    cyc_ms = 1 / (mhz * 1e3) / nd if nd else 0.0
    stalls = {"codebook_load": dec.codebook_load_cycles * cyc_ms, "decoder_waiting": dec.decoder_wait_cycles * cyc_ms,
              "pe_waiting": dec.pe_wait_cycles * cyc_ms}
    shapes = linear_shapes(cfg)
    storage = sum(fmts[n].storage_bits(o * i) for fmts in blocks for n, (o, i) in shapes.items())
    storage += head_fmt.storage_bits(cfg.vocab * cfg.dim)
    kv_on_chip = [sum(lv != "dram" for pair in run.residency(c) for lv in pair) / 2 for c in [prompt] + ctx]
    notes = [_kv_note(arch, run, prompt, ctx, kv_on_chip)]
    if arch.vector_unit is None:
        notes.append("no vector unit: the non-GEMM operators (norms, rotary, softmax, SiLU/GELU, residual adds, "
                     "cache appends) and the embedding lookup are not simulated")
    else:
        notes.append(f"non-GEMM operators (norms, rotary, softmax, SiLU/GELU, residual adds, cache appends as "
                     f"'{kv.append_op}') and the embedding lookup run on the vector unit")
    notes.append("prefill attention computes the full prompt x prompt scores (the causal half is not skipped)")
    if mode == "fast":
        distinct = len({_fmt_key(f) for f in blocks})
        notes.append(f"fast: {distinct} distinct block(s) x {cfg.n_layers} layers, each block after the first at "
                     f"its steady-state cost (2 blocks - 1 block), at the first context of each phase; the "
                     f"attention cores (cache appends, q.K^T, softmax, .V) simulated at context {sampled}, "
                     f"linearly interpolated over the {nd} decode steps, each step with the caches where the "
                     f"allocator puts them at its own context")
    else:
        notes.append("full: every layer and every decode step in one simulation each")
    return LLMReport(
        model=cfg.name, arch=arch.name, weights=label, kv_format=kv.name, prompt=prompt, generate=generate,
        batch=batch, hardware_only=hardware_only, clock_mhz=mhz,
        ttft_ms=prefill.cycles / (mhz * 1e3), tpot_ms=tpot,
        tokens_per_s=batch * 1e3 / tpot if tpot else None,
        prefill_energy_uj=prefill.energy_pj / 1e6,
        energy_per_token_uj=dec.energy_pj / (nd * batch) / 1e6 if nd else None,
        dram_bytes_per_token=per_tok, stall_ms_per_token=stalls,
        prefill_dram_bytes={"weights": prefill.weight_bytes, "codebook": prefill.codebook_bytes,
                            "kv": prefill.kv_bytes, "activations": prefill.act_bytes},
        weight_storage_bytes=math.ceil(storage / 8), context=ctx, ms_per_token=ms, sampled_context=sampled,
        kv_layers_on_chip=kv_on_chip[1:], prefill_kv_layers_on_chip=kv_on_chip[0],
        mode=mode, sim_wall_s=time.perf_counter() - t0, notes=notes)


def _fast_phase(run: _Runner, tokens: int, contexts: list, sampled: list) -> list:
    """Each context's step (a phase: prefill = one context, decode = one per
    step): the whole model at the phase's first context (_Runner.base), its
    attention cores replaced by those at the step's context, with each
    layer's caches where the allocator puts them then. The cores'
    first-block and steady-state costs per cache placement are simulated at
    the `sampled` contexts and linearly interpolated in between."""
    ref = contexts[0]
    full, counted = run.base(tokens, ref)
    fixed = full + counted * -1
    placements = {c: run.residency(c) for c in contexts}
    firsts = {p[0] for p in placements.values()}
    rests = {v for p in placements.values() for v in p[1:]}
    f = {v: [run.first(tokens, c, v, True) for c in sampled] for v in firsts}
    st = {v: [run.steady(tokens, c, 0, v, True) for c in sampled] for v in rests}
    out = []
    for c in contexts:
        p = placements[c]
        att = _interp(sampled, f[p[0]], c)
        for v in set(p[1:]):
            att = att + _interp(sampled, st[v], c) * p[1:].count(v)
        out.append(fixed + att)
    return out


def _kv_note(arch: ArchSpec, run: _Runner, prompt: int, ctx: list, on_chip: list) -> str:
    """Where the caches lived, in words."""
    n = run.cfg.n_layers
    levels = [lv.name for lv in arch.memory.levels if "kv" in lv.serves]
    per_layer = 2 * run.cache_bytes(ctx[-1] if ctx else prompt)
    if not levels:
        return (f"KV cache in DRAM (no memory level serves kv): every step reads each layer's whole cache "
                f"({per_layer / 1e6:.3f} MB per layer at the last context) and writes the new token's K and V")
    last = on_chip[-1]
    evict = ("the vector unit copies it to DRAM before the step" if arch.vector_unit is not None
             else "its copy to DRAM is not simulated (no vector unit)")
    return (f"KV cache: a persistent tensor per layer, K and V, kept in {', '.join(levels)} while it fits "
            f"(layers on chip: {on_chip[0]:g} of {n} after the prefill, {last:g} at the last step; "
            f"{per_layer / 1e6:.3f} MB per layer then), otherwise read from and appended to in DRAM. "
            f"When a cache stops fitting, {evict}")
