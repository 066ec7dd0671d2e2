"""LLM inference: the prefill of a prompt, then decode steps with a KV cache
that grows by one token per step.

    r = simulate_llm("llama2-7b", "arch_configs/llm_edge.yaml", prompt=512, generate=128,
                     weights="aqlm-2x8", kv_format="int8")
    print(r.describe())

What is simulated, and how (each stated in the report's notes):
  * A step runs every transformer block, then the head (final norm + the
    vocabulary projection of the last token). The prefill runs `prompt`
    tokens with an empty cache and yields the first token (TTFT); each of the
    `generate - 1` decode steps runs one token against a cache of
    prompt + step - 1 tokens (TPOT = their mean).
  * A block is two segments, each one archsim.api.simulate() call: its
    linear layers (weights in their formats, activations at the array's
    act_bits), and its attention matmuls (q @ K^T, attn @ V) whose second
    operand is the K or V cache, read from DRAM whole at the KV format's
    element width (the array's act_bits set to it). Until shared memory
    levels hold the cache on chip it is always read from DRAM. KV scales
    (one per token and K/V head) are a transfer of their bytes at the DRAM
    bandwidth added to the attention segment.
  * Replay: blocks with the same weight formats are identical; one is
    simulated and multiplied by their number. Linear layers and the head do
    not depend on context: simulated once per phase. Attention is simulated
    at `decode_samples` context lengths spread evenly over the decode steps
    (first and last included) and linearly interpolated in between; with
    mode="full" every step simulates the whole model (all blocks in one call
    per segment, every context length), which the fast mode must match
    within 1% (tests/test_llm.py).
  * Non-GEMM operators (norms, rotary, softmax, SiLU) and the embedding
    lookup are not simulated: the vector unit is not modelled yet.
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

    def bytes_per_token(self, n_kv_heads: int, head_dim: int) -> float:
        """K and V of one token in one layer."""
        elems = 2 * n_kv_heads * head_dim * self.bits / 8
        scales = 2 * n_kv_heads * self.scale_bits / 8 if self.scale == "token" else 0
        return elems + scales

    def scale_bytes(self, tokens: int, n_kv_heads: int) -> int:
        if self.scale == "token":
            return math.ceil(tokens * 2 * n_kv_heads * self.scale_bits / 8)
        if self.scale == "head":
            return math.ceil(2 * n_kv_heads * self.scale_bits / 8)
        return 0


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
    weight_bytes: float = 0.0      # weight tiles, codebooks, scales of the linears
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

    @property
    def dram_bytes(self):
        return self.weight_bytes + self.kv_bytes + self.act_bytes


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
        lines.append(f"  TTFT {self.ttft_ms:.3f} ms   prefill energy {self.prefill_energy_uj:.1f} uJ")
        if self.tpot_ms is not None:
            lines.append(f"  TPOT {self.tpot_ms:.3f} ms   {self.tokens_per_s:.1f} tokens/s   "
                         f"energy/token {self.energy_per_token_uj:.1f} uJ")
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

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r in reports:
        ax.plot(r.context, r.ms_per_token, label=f"{r.weights}, KV {r.kv_format}")
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

def _seg_of(report, kv_layers: bool) -> _Seg:
    """A Report's totals split by what the DRAM bytes were."""
    s = _Seg(cycles=report.totals["total_cycles"], energy_pj=report.totals["energy_total_pj"])
    for row, c in zip(report.layers, report.layer_counters):
        by = c["dram_read_by_buffer"]
        s.codebook_load_cycles += c["busy_cycles"].get("dma.codebook", 0)
        s.decoder_wait_cycles += c["wait_data_cycles"].get("decoder", 0)
        s.pe_wait_cycles += c["wait_data_cycles"].get("pe", 0)
        if row["op"] == "matmul":
            # the second operand (K or V cache) goes to the weight buffer
            kv = by.get("weight", 0) if kv_layers else 0
            s.kv_bytes += kv
            s.act_bytes += row["dram_read_bytes"] - kv + row["dram_write_bytes"]
        else:
            w = sum(by.get(b, 0) for b in WEIGHT_BUFFERS)
            s.weight_bytes += w
            s.codebook_bytes += by.get("codebook", 0)
            s.act_bytes += row["dram_read_bytes"] - w + row["dram_write_bytes"]
    return s


def _fmt_key(fmts: dict) -> tuple:
    return tuple(sorted(fmts.items(), key=lambda kv: kv[0]))


class _Runner:
    """Simulates segments: a chain of `copies` blocks' linears (+ the head),
    or `copies` blocks' attention matmuls at one context length."""

    def __init__(self, cfg, arch: ArchSpec, kv: KVFormat, batch: int):
        self.cfg, self.arch, self.kv, self.batch = cfg, arch, kv, batch
        self.kv_arch = arch if kv.bits == arch.pe_array.act_bits else \
            arch.with_overrides([f"pe_array.act_bits={kv.bits}"])
        self._traced: dict = {}
        self._memo: dict = {}

    def _block(self, tokens: int, fmts: dict) -> list:
        """One block traced for `tokens` new tokens on an empty cache."""
        from workloads.zoo.llm import block_layers

        key = (tokens, _fmt_key(fmts))
        if key not in self._traced:
            self._traced[key] = list(block_layers(self.cfg, tokens, 0, self.batch, formats=fmts))
        return self._traced[key]

    def attention_layers(self, tokens: int, ctx: int) -> list:
        """The block's two attention matmuls against a cache of ctx tokens
        (the new ones included). Traced once per `tokens`; the context
        length is the one dimension that differs between decode steps: N of
        q @ K^T and K of attn @ V (tests/test_llm.py checks this against a
        trace at that context)."""
        import dataclasses

        from workloads.zoo.llm import linear_shapes

        qk, av = [L for L in self._block(tokens, {n: _dense() for n in linear_shapes(self.cfg)})
                  if L.op == "matmul"]
        return [dataclasses.replace(qk, N=ctx), dataclasses.replace(av, K=ctx)]

    def _sim(self, layers, arch, kv_layers) -> _Seg:
        from .api import simulate

        return _seg_of(simulate(layers, arch), kv_layers)

    def linears(self, tokens: int, blocks: list, head_fmt=None) -> _Seg:
        """The linears of `blocks` (a list of per-block formats) in one call, then the head."""
        key = ("lin", tokens, tuple(_fmt_key(f) for f in blocks), head_fmt)
        if key not in self._memo:
            from workloads.zoo.llm import head_layers

            layers = []
            for i, fmts in enumerate(blocks):
                layers += _prefixed([L for L in self._block(tokens, fmts) if L.op != "matmul"], i)
            if head_fmt is not None:
                layers += list(head_layers(self.cfg, self.batch, head_fmt))
            self._memo[key] = self._sim(layers, self.arch, False)
        return self._memo[key]

    def attention(self, tokens: int, ctx: int, copies: int) -> _Seg:
        """`copies` blocks' attention matmuls in one call, and the KV scales."""
        key = ("att", tokens, ctx, copies)
        if key not in self._memo:
            one = self.attention_layers(tokens, ctx)
            s = self._sim([L for i in range(copies) for L in _prefixed(one, i)], self.kv_arch, True)
            # KV scales: read whole each step, at the DRAM bandwidth
            sb = self.kv.scale_bytes(ctx, self.cfg.n_kv_heads) * self.batch * copies
            s.kv_bytes += sb
            s.cycles += math.ceil(sb / self.arch.dram.bandwidth_bytes_per_cycle)
            self._memo[key] = s
        return self._memo[key]

    # -- the two modes -----------------------------------------------------------
    def full_step(self, tokens: int, ctx: int, blocks: list, head_fmt) -> _Seg:
        """Every block in one call per segment (no replay), then the head."""
        return self.linears(tokens, blocks, head_fmt) + self.attention(tokens, ctx, len(blocks))

    def replay_linears(self, tokens: int, blocks: list, head_fmt) -> _Seg:
        """The chain of every block's linears + the head from at most two
        calls per distinct block: the first block with the head, and each
        further block at its steady-state cost (two blocks minus one, which
        keeps the overlap between neighbours that a lone block lacks)."""
        total = self.linears(tokens, blocks[:1], head_fmt)
        for fmts in blocks[1:]:
            total = total + self.linears(tokens, [fmts, fmts]) + self.linears(tokens, [fmts]) * -1
        return total

    def replay_attention(self, tokens: int, ctx: int) -> _Seg:
        one = self.attention(tokens, ctx, 1)
        n = self.cfg.n_layers
        return one if n == 1 else one + (self.attention(tokens, ctx, 2) + one * -1) * (n - 1)


def _dense():
    from archsim.ir.formats import DenseFormat

    return DenseFormat(bits=8)


def _prefixed(layers, i):
    import dataclasses

    return [dataclasses.replace(L, name=f"blocks.{i}.{L.name}") for L in layers]


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
    run = _Runner(cfg, arch, kv, batch)

    steps = list(range(1, generate))          # decode step s: one token after prompt + s - 1 cached
    ctx = [prompt + s for s in steps]
    if mode == "full":
        prefill = run.full_step(prompt, prompt, blocks, head_fmt)
        per_step = [run.full_step(1, c, blocks, head_fmt) for c in ctx]
        sampled = list(ctx)
    else:
        prefill = run.replay_linears(prompt, blocks, head_fmt) + run.replay_attention(prompt, prompt)
        fixed = run.replay_linears(1, blocks, head_fmt) if steps else _Seg()
        sampled = _samples(ctx[0], ctx[-1], decode_samples) if steps else []
        att = [run.replay_attention(1, c) for c in sampled]
        per_step = [fixed + _interp(sampled, att, c) for c in ctx]

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
    notes = [
        "KV cache read from DRAM whole every step as the attention matmuls' second operand "
        "(no on-chip residency until the memory redesign); KV scales as a transfer at DRAM bandwidth",
        "non-GEMM operators (norms, rotary, softmax, activations) and the embedding lookup not simulated",
        "prefill attention computes the full prompt x prompt scores (the causal half is not skipped)",
    ]
    if mode == "fast":
        distinct = len({_fmt_key(f) for f in blocks})
        notes.append(f"replay: {distinct} distinct block(s) x {cfg.n_layers} layers, each block after the "
                     f"first at its steady-state cost (2 blocks - 1 block); linears and head simulated once "
                     f"per phase; decode attention simulated at context {sampled} and linearly "
                     f"interpolated over the {nd} decode steps")
    else:
        notes.append("full: every block and every decode step simulated")
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
        mode=mode, sim_wall_s=time.perf_counter() - t0, notes=notes)
