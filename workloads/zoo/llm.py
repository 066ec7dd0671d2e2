"""Decoder-only transformers: the Llama style (RMSNorm, rotary embeddings,
grouped-query attention, SwiGLU MLP) and the OPT/GPT style (LayerNorm,
learned positions, a two-layer MLP with ReLU or GELU), with presets from the
published configurations.

    model = build_llm("llama2-7b", device="meta")   # shapes only, never allocated
    step_workload(cfg, tokens=1, past=640)          # a decode step's Workload: embedding, blocks, head

Attention is written for the compiler: q @ k^T and attn @ v are
torch.matmul between activations (op 'matmul'), and grouped-query attention
is laid out as the decode kernels lay it out: the `group` query heads that
share one K/V head are stacked as rows, so the matmul runs n_kv_heads
groups of (group x tokens) rows against one K (or V) each. Its second
operand, the K or V cache, is thus read once per K/V head, not once per
query head: GQA cuts KV bytes by the group factor.

A block takes the cache of the earlier tokens (`past_k`, `past_v`: batch x
n_kv_heads x past x head_dim) and appends its own keys and values; prefill
is past = 0. The causal mask, softmax, norms, rotary and activations do no
MACs: they are the DAG's vector operators (run by a vector unit). Step is
what the simulator traces (step_workload): embedding, blocks and head, each
block's cache a persistent tensor that the step appends to.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from archsim.ir.errors import ArchsimError


@dataclass(frozen=True)
class LLMConfig:
    name: str
    style: str            # "llama" | "opt"
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    vocab: int
    max_pos: int
    tie_embeddings: bool = False
    act: str = "silu"     # OPT style: "relu" | "gelu"
    rope_theta: float = 10000.0
    published_params: int = 0  # parameter count of the published model (0: not a published preset)
    source: str = ""

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def group(self) -> int:
        return self.n_heads // self.n_kv_heads


# Numbers from each model's config.json on the Hugging Face hub (hidden_size,
# intermediate_size / ffn_dim, num_hidden_layers, num_attention_heads,
# num_key_value_heads, vocab_size, max_position_embeddings, tie_word_embeddings).
# published_params: the parameter count of the published checkpoint
# (sum of numel over model.parameters(), shared embeddings counted once).
PRESETS: dict[str, LLMConfig] = {
    "tinyllama-1.1b": LLMConfig(
        "tinyllama-1.1b", "llama", dim=2048, n_layers=22, n_heads=32, n_kv_heads=4, ffn_dim=5632,
        vocab=32000, max_pos=2048, published_params=1_100_048_384,
        source="TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T/config.json: hidden_size 2048, "
               "intermediate_size 5632, num_hidden_layers 22, num_attention_heads 32, "
               "num_key_value_heads 4, vocab_size 32000, max_position_embeddings 2048"),
    "llama2-7b": LLMConfig(
        "llama2-7b", "llama", dim=4096, n_layers=32, n_heads=32, n_kv_heads=32, ffn_dim=11008,
        vocab=32000, max_pos=4096, published_params=6_738_415_616,
        source="meta-llama/Llama-2-7b-hf/config.json: hidden_size 4096, intermediate_size 11008, "
               "num_hidden_layers 32, num_attention_heads 32, num_key_value_heads 32, vocab_size 32000, "
               "max_position_embeddings 4096"),
    "llama3-8b": LLMConfig(
        "llama3-8b", "llama", dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, ffn_dim=14336,
        vocab=128256, max_pos=8192, rope_theta=500000.0, published_params=8_030_261_248,
        source="meta-llama/Meta-Llama-3-8B/config.json: hidden_size 4096, intermediate_size 14336, "
               "num_hidden_layers 32, num_attention_heads 32, num_key_value_heads 8, vocab_size 128256, "
               "max_position_embeddings 8192, rope_theta 500000"),
    "opt-1.3b": LLMConfig(
        "opt-1.3b", "opt", dim=2048, n_layers=24, n_heads=32, n_kv_heads=32, ffn_dim=8192,
        vocab=50272, max_pos=2048, tie_embeddings=True, act="relu", published_params=1_315_758_080,
        source="facebook/opt-1.3b/config.json: hidden_size 2048, ffn_dim 8192, num_hidden_layers 24, "
               "num_attention_heads 32, vocab_size 50272, max_position_embeddings 2048, "
               "activation_function relu, tie_word_embeddings (OPT's learned positions keep 2 extra rows)"),
    # small models of each style, for tests and the exactness check (not published)
    "llama-tiny": LLMConfig("llama-tiny", "llama", dim=256, n_layers=4, n_heads=8, n_kv_heads=2,
                            ffn_dim=688, vocab=1024, max_pos=1024, source="archsim test model"),
    "opt-tiny": LLMConfig("opt-tiny", "opt", dim=256, n_layers=4, n_heads=8, n_kv_heads=8, ffn_dim=1024,
                          vocab=1024, max_pos=1024, tie_embeddings=True, act="gelu",
                          source="archsim test model"),
}
ALIASES = {"tinyllama": "tinyllama-1.1b", "llama2": "llama2-7b", "llama3": "llama3-8b", "opt": "opt-1.3b"}

# OPT's learned position table has 2 rows more than max_position_embeddings
# (transformers' OPTLearnedPositionalEmbedding offset).
_OPT_POS_OFFSET = 2


def preset(name: str) -> LLMConfig:
    key = ALIASES.get(name, name)
    if key not in PRESETS:
        raise ArchsimError(f"unknown LLM preset {name!r}; known: {', '.join(PRESETS)}", field="model")
    return PRESETS[key]


def _rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.cfg = cfg
        bias = cfg.style == "opt"
        hd = cfg.head_dim
        self.q_proj = nn.Linear(cfg.dim, cfg.n_heads * hd, bias=bias)
        self.k_proj = nn.Linear(cfg.dim, cfg.n_kv_heads * hd, bias=bias)
        self.v_proj = nn.Linear(cfg.dim, cfg.n_kv_heads * hd, bias=bias)
        self.o_proj = nn.Linear(cfg.n_heads * hd, cfg.dim, bias=bias)
        if cfg.style == "llama":
            inv = 1.0 / cfg.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd)
            self.register_buffer("inv_freq", inv, persistent=False)

    def _rope(self, x, start: int):
        # x: batch x tokens x heads x head_dim; positions start.. start+tokens-1
        pos = torch.arange(x.shape[1], device=x.device, dtype=torch.float32) + start
        ang = pos[:, None] * self.inv_freq[None, :]
        ang = torch.cat((ang, ang), dim=-1)[:, None, :]
        return x * ang.cos() + _rotate_half(x) * ang.sin()

    def forward(self, x, past_k=None, past_v=None):
        c = self.cfg
        t = x.shape[1]
        hd, kvh, g = c.head_dim, c.n_kv_heads, c.group
        q = self.q_proj(x).unflatten(-1, (kvh, g, hd))          # b t kvh g hd
        k = self.k_proj(x).unflatten(-1, (kvh, hd))             # b t kvh hd
        v = self.v_proj(x).unflatten(-1, (kvh, hd)).transpose(1, 2)
        start = 0 if past_k is None else past_k.shape[2]
        if c.style == "llama":
            q = self._rope(q.flatten(2, 3), start).unflatten(2, (kvh, g))
            k = self._rope(k, start)
        k = k.transpose(1, 2)                                   # b kvh t hd
        if past_k is not None:
            k = torch.cat((past_k, k), dim=2)
            v = torch.cat((past_v, v), dim=2)
        ctx = k.shape[2]
        # the query heads of one K/V head stacked as rows: b kvh (g t) hd
        q = q.permute(0, 2, 3, 1, 4).flatten(2, 3)
        s = torch.matmul(q, k.transpose(-2, -1)) * hd ** -0.5  # b kvh (g t) ctx
        mask = torch.full((t, ctx), float("-inf"), device=x.device).triu(ctx - t + 1)
        s = (s.unflatten(2, (g, t)) + mask).flatten(2, 3)
        o = torch.matmul(s.softmax(dim=-1), v)                 # b kvh (g t) hd
        o = o.unflatten(2, (g, t)).permute(0, 3, 1, 2, 4).flatten(2)
        return self.o_proj(o), k, v


class MLP(nn.Module):
    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.llama = cfg.style == "llama"
        if self.llama:  # SwiGLU
            self.gate_proj = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
            self.up_proj = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
            self.down_proj = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)
        else:
            self.fc1 = nn.Linear(cfg.dim, cfg.ffn_dim)
            self.fc2 = nn.Linear(cfg.ffn_dim, cfg.dim)
            self.act = nn.ReLU() if cfg.act == "relu" else nn.GELU()

    def forward(self, x):
        if self.llama:
            return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))
        return self.fc2(self.act(self.fc1(x)))


def _norm(cfg: LLMConfig) -> nn.Module:
    return nn.RMSNorm(cfg.dim, eps=1e-5) if cfg.style == "llama" else nn.LayerNorm(cfg.dim)


class Block(nn.Module):
    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.norm1 = _norm(cfg)
        self.attn = Attention(cfg)
        self.norm2 = _norm(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x, past_k=None, past_v=None):
        a, k, v = self.attn(self.norm1(x), past_k, past_v)
        x = x + a
        return x + self.mlp(self.norm2(x)), k, v


class Head(nn.Module):
    """Final norm + the vocabulary projection of the last token."""

    def __init__(self, cfg: LLMConfig, embed: nn.Embedding):
        super().__init__()
        self.norm = _norm(cfg)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = embed.weight

    def forward(self, x):
        return self.lm_head(self.norm(x[:, -1:]))


class DecoderLM(nn.Module):
    """forward(tokens) -> logits of the last position (prefill, no cache)."""

    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab, cfg.dim)
        self.pos = nn.Embedding(cfg.max_pos + _OPT_POS_OFFSET, cfg.dim) if cfg.style == "opt" else None
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.head = Head(cfg, self.embed)

    def forward(self, tokens):
        x = self.embed(tokens)
        if self.pos is not None:
            x = x + self.pos(torch.arange(tokens.shape[1], device=tokens.device) + _OPT_POS_OFFSET)
        for blk in self.blocks:
            x = blk(x)[0]
        return self.head(x)


def build_llm(name: str, device: str = "meta", seed: int = 0) -> DecoderLM:
    """The preset's model. device="meta": shapes only (billions of parameters
    cost no memory); "cpu": weights drawn from `seed` (normal, std 0.02, as
    the published models initialise), for the small models only."""
    cfg = preset(name)
    if device == "meta":
        with torch.device("meta"):
            return DecoderLM(cfg).eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DecoderLM(cfg)
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
    return model.eval()


class Step(nn.Module):
    """One step of generation as the compiler sees it: the embedding of the
    new tokens (and OPT's learned positions), `n_blocks` blocks each against
    its own K/V cache (past_k, past_v: n_blocks x batch x n_kv_heads x past x
    head_dim), and the head."""

    def __init__(self, cfg: LLMConfig, n_blocks: Optional[int] = None):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab, cfg.dim)
        self.pos = nn.Embedding(cfg.max_pos + _OPT_POS_OFFSET, cfg.dim) if cfg.style == "opt" else None
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers if n_blocks is None else n_blocks))
        self.head = Head(cfg, self.embed)

    def forward(self, tokens, positions, past_k, past_v):
        x = self.embed(tokens)
        if self.pos is not None:
            x = x + self.pos(positions + _OPT_POS_OFFSET)
        for i, blk in enumerate(self.blocks):
            x = blk(x, past_k[i], past_v[i])[0]
        return self.head(x)


def step_workload(cfg: LLMConfig, tokens: int, past: int, batch: int = 1, n_blocks: Optional[int] = None,
                  formats: Optional[dict] = None, kv_bits: Optional[float] = None, kv_op: str = "concat"):
    """The Workload of one step (Step, traced on the meta device): `tokens`
    new tokens after `past` cached ones. `formats`: {module name
    ('blocks.0.attn.q_proj', 'head.lm_head', ...): WeightFormat}.

    Each block's cache is one persistent tensor per K and V
    ('blocks.i.attn.k_cache', 'blocks.i.attn.v_cache': past + tokens tokens,
    stored at `kv_bits` per element, scales included; None = act_bits). The
    traced torch.cat(past, new) becomes an append ('blocks.i.attn.k_append',
    operator class `kv_op`: 'concat' copies, 'quantize' scales and rounds)
    that writes the new tokens' elements only: a cache grows in place, it is
    not copied every step."""
    from workloads.compile import trace

    with torch.device("meta"):
        model = Step(cfg, n_blocks).eval()
    nb = len(model.blocks)
    kv = torch.empty(nb, batch, cfg.n_kv_heads, past, cfg.head_dim, device="meta")
    inputs = (torch.empty(batch, tokens, dtype=torch.long, device="meta"),
              torch.empty(tokens, dtype=torch.long, device="meta"), kv, kv)
    return _kv_appends(trace(model, inputs, formats=formats), kv_bits, kv_op)


def _kv_appends(wl, kv_bits, kv_op: str):
    """Rewrite each cat(past cache, new K or V) of a traced Step into an
    append to a persistent cache tensor (see step_workload). The tracer
    aliases the views past_k[i] to past_k, so a cat reads past_k or past_v."""
    import dataclasses

    from archsim.ir.layer_spec import TensorInfo, VectorOp, Workload

    past = {"past_k": "k", "past_v": "v"}
    seen = {"k": 0, "v": 0}
    rename: dict[str, str] = {}   # the cat's output tensor -> the cache
    appends: dict[str, str] = {}  # the cat -> its append
    ops = []
    for o in wl.ops:
        if isinstance(o, VectorOp) and o.op == "concat" and len(o.inputs) == 2 and o.inputs[0] in past:
            # blocks run in program order: the i-th K (V) cat is block i's
            which = past[o.inputs[0]]
            blk = f"blocks.{seen[which]}.attn"
            seen[which] += 1
            rename[o.output], appends[o.name] = f"{blk}.{which}_cache", f"{blk}.{which}_append"
            new = o.in_elems[1]
            o = VectorOp(appends[o.name], kv_op, new, (o.inputs[1],), (new,), rename[o.output])
        ops.append(dataclasses.replace(o, inputs=tuple(rename.get(n, n) for n in o.inputs)))
    tensors = {}
    for n, info in wl.tensors.items():
        if n in past:
            continue  # the caches below stand for them
        consumers = tuple(appends.get(c, c) for c in info.consumers)
        if n in rename:
            tensors[rename[n]] = TensorInfo(rename[n], info.elems, appends[info.producer], consumers,
                                            bits=kv_bits, persistent=True)
        else:
            tensors[n] = dataclasses.replace(info, consumers=consumers)
    inputs = tuple(n for n in wl.inputs if n in tensors)
    outputs = tuple(n for n in wl.outputs if n in tensors)
    return Workload(ops, tensors, inputs, outputs)


def linear_shapes(cfg: LLMConfig) -> dict:
    """{block-relative name: (out_features, in_features)} of a block's linears."""
    hd = cfg.head_dim
    att = {"attn.q_proj": (cfg.n_heads * hd, cfg.dim), "attn.k_proj": (cfg.n_kv_heads * hd, cfg.dim),
           "attn.v_proj": (cfg.n_kv_heads * hd, cfg.dim), "attn.o_proj": (cfg.dim, cfg.n_heads * hd)}
    if cfg.style == "llama":
        mlp = {"mlp.gate_proj": (cfg.ffn_dim, cfg.dim), "mlp.up_proj": (cfg.ffn_dim, cfg.dim),
               "mlp.down_proj": (cfg.dim, cfg.ffn_dim)}
    else:
        mlp = {"mlp.fc1": (cfg.ffn_dim, cfg.dim), "mlp.fc2": (cfg.dim, cfg.ffn_dim)}
    return {**att, **mlp}


__all__ = ["LLMConfig", "PRESETS", "preset", "build_llm", "step_workload", "linear_shapes", "DecoderLM", "Block",
           "Step"]
