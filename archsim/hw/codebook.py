"""Codebook buffer: a small multi-ported register file holding one layer's
codewords. It bounds how many lookups per cycle the decoder can make and
charges a fixed reload cost per codebook load. Priced as an SRAM of its
capacity (CACTI rows, the 1 KB row as the floor: CACTI has no smaller
point), scaled by width_bits / 64: one read per lookup, one write per
codeword loaded.

A layer whose codebook has more codewords than the buffer's `entries`
(e.g. a 2^16 x 8 FP16 codebook, 1 MiB, on a smaller buffer) is handled as
`codebook.overflow` says (archsim.tiling builds the nodes from `Overflow`):

- `refuse` (the default): the tiler refuses the layer, naming codebook.entries.
- `cache`: the buffer holds C = `entries` codewords as a cache in front of
  the layer's codebook(s) in DRAM (all M codebooks of an additive format,
  plus a residual codebook if any: K codewords in all). Model: the indices
  of a VQ-compressed LLM layer are close to uniform over the codebook
  (QuIP# and VPTQ report near-uniform codeword use; formats built from
  parameters have no indices to count), so every lookup misses with
  probability 1 - C/K: capacity misses only, no benefit carried from one
  layer to the next. Once per layer the buffer is filled with C codewords
  (the layer's codebook_load, with its scales); then every decode tile
  fetches its expected misses, lookups x (1 - C/K) (rounded on the layer's
  running total, so a layer's misses are its expectation rounded once), in
  one load on dma.codebook that the tile's decode waits for. A miss fetches
  one codeword line, d x codebook_bits rounded up to whole DRAM bursts of
  `MISS_BURST_BYTES` = 32 B (a random codeword is its own access; 32 B is
  one LPDDR4 x16 BL16 burst: a lower bound, a DDR4 x64 access is 64 B). The fetches of a
  tile are issued together (their latencies overlap) and are written into
  the buffer (one codebook.write each).
- `stream`: for every decode tile the whole codebook passes through the
  buffer in ceil(K / entries) chunks (each a codebook_load of its chunk),
  and the tile is decoded in as many passes, each looking up the indices
  whose codewords its chunk holds (under the uniform model, the chunk's
  share of the lookups). The buffer holds one chunk: a chunk is loaded
  after the previous pass ends. Traffic = decode tiles x the codebook's
  bytes: the pessimistic bound (no reuse between tiles), where `cache`
  is the expected case under uniform indices. (In bytes, a decode tile of
  more than K x codeword bytes / (line x (1 - C/K)) lookups streams for
  less than its random misses cost; the single-buffered passes are
  pessimistic in time too.)
A codebook that fits is loaded once per layer, whatever `overflow` says.
"Fits" is the tiler's test since before overflow: k <= entries, one
codebook's k (so AQLM-2x8's 2 x 256 codewords fit 256 entries, and
lcvq-res's 2^16 + 2^8 fit 2^16); past it, C/K counts every codebook.
"""
from __future__ import annotations

import math

from .registry import register

_FLOOR_BYTES = 1024
MISS_BURST_BYTES = 32  # the smallest DRAM access a codeword miss costs (see above)


class Overflow:
    """How one layer's codebook that does not fit the buffer is fed to the
    decoder (`codebook.overflow` cache or stream): the sizes the tiler needs
    and its running state over the layer's decode tiles."""

    def __init__(self, mode: str, fmt, spec, n_weights: int):
        self.mode = mode
        d, cbits = getattr(fmt, "d", 1), getattr(fmt, "codebook_bits", 8)
        self.codeword_bits = d * cbits
        # every codebook of the layer: all M of an additive format, plus a residual codebook
        self.K = getattr(fmt, "n_codebooks", 1) * (getattr(fmt, "k", 0) + getattr(fmt, "residual_k", 0))
        self.C = min(spec.entries, self.K)
        # the rest of the side data (scales) is loaded once per layer, with the first fill
        self.other_bits = max(0, fmt.side_bits(n_weights) - self.K * self.codeword_bits)
        self.line_bytes = MISS_BURST_BYTES * math.ceil(self.codeword_bits / 8 / MISS_BURST_BYTES)
        self.codebook_bytes = math.ceil(self.K * self.codeword_bits / 8)
        n = math.ceil(self.K / spec.entries)
        # stream: chunk j holds codewords [bounds[j], bounds[j + 1])
        self.bounds = [min(self.K, j * spec.entries) for j in range(n + 1)]
        self.lookups_done = 0  # cache: lookups of the layer's decode tiles so far
        self.last_pass = None  # stream: the decode pass that last used the buffer

    def layer_load(self) -> tuple[int, int]:
        """(codewords, bytes) loaded once per layer: cache, the first fill of
        C codewords; stream, none (the scales only)."""
        cw = self.C if self.mode == "cache" else 0
        return cw, math.ceil((cw * self.codeword_bits + self.other_bits) / 8)

    def misses(self, lookups: int) -> int:
        """cache: expected misses of the next tile's `lookups`, rounded on
        the layer's running total."""
        K, C = self.K, self.C
        before = (self.lookups_done * (K - C) + K // 2) // K
        self.lookups_done += lookups
        return (self.lookups_done * (K - C) + K // 2) // K - before

    def chunk_bytes(self, j: int) -> int:
        total = self.codebook_bytes
        return total * self.bounds[j + 1] // self.K - total * self.bounds[j] // self.K

    def share(self, count: int, j: int) -> int:
        """stream: the part of `count` (lookups, weights, actions) pass j
        does: the share of the codewords its chunk holds."""
        return count * self.bounds[j + 1] // self.K - count * self.bounds[j] // self.K


@register("codebook", "codebook")
class CodebookBuffer:
    def __init__(self, env, spec, dram=None):
        self.env = env
        self.spec = spec
        self.dram = dram

    def load_cycles_after_transfer(self, codewords: int, transfer_cycles: int) -> int:
        """Cycles a (re)load takes once its DRAM transfer is done: codewords are
        written one per cycle as they arrive, then the fixed reload set-up."""
        return max(0, codewords - transfer_cycles) + self.spec.reload_cycles

    def execute(self, env, node):
        t0 = env.now
        yield self.dram.read(node["bytes"])
        extra = self.load_cycles_after_transfer(node["codewords"], env.now - t0)
        if extra:
            yield env.timeout(extra)

    @staticmethod
    def capacity_bytes(spec) -> int:
        return max(_FLOOR_BYTES, math.ceil(spec.entries * spec.width_bits / 8))

    @classmethod
    def action_costs(cls, em, spec) -> dict:
        cap = cls.capacity_bytes(spec)
        return {"codebook.read": (em.sram_read_pj(cap, spec.width_bits), em.sram_src(cap, spec.width_bits, "read")),
                "codebook.write": (em.sram_write_pj(cap, spec.width_bits),
                                   em.sram_src(cap, spec.width_bits, "write"))}

    @classmethod
    def area_um2(cls, em, spec) -> dict:
        return {"codebook": (em.sram_area_um2(cls.capacity_bytes(spec)), "sram")}
