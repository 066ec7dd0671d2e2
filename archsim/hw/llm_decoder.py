"""Decoder of the VQ formats LLMs use (archsim.ir.formats: AdditiveVQFormat
'aqlm', LargeCodebookVQFormat 'lcvq').

`kind: additive_vq_decoder` looks up every codeword a sub-vector indexes
(AQLM: one per additive codebook; large-codebook VQ: one, plus one in the
residual codebook) and sums them element by element. Two pipelined stages,
the slower sets the pace: lookups (`vectors_per_cycle`, capped by the
codebook's read ports) and additions (`adders`, element adds per cycle).

The codebook's cost where it hurts: a 2^16 x 8 FP16 codebook is 1 MiB per
layer. A codebook buffer that holds it reloads it from DRAM for every
layer, on every decode step, behind the previous layer's last decode. One
that does not (k > codebook.entries) is refused, naming codebook.entries,
unless `codebook.overflow` is `cache` (the buffer caches `entries`
codewords; with near-uniform indices every lookup misses with probability
1 - entries/K and each decode tile fetches its expected misses, one 32 B
burst per codeword) or `stream` (the whole codebook passes through the
buffer in chunks for every decode tile, the tile decoded in one pass per
chunk: the no-reuse bound); archsim/hw/codebook.py states the model. Both
show in the simulation: the codebook's DRAM bytes
(dram_read_by_buffer['codebook']) and the decoder and PE waiting for it.
"""
from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from ..config import DecoderSpec
from .decoder import VQDecoder
from .registry import register


class AdditiveVQDecoderSpec(DecoderSpec):
    kind: Literal["additive_vq_decoder"] = "additive_vq_decoder"
    adders: int = Field(64, gt=0, description="codeword element additions per cycle (summing the M codewords)")


@register("decoder", "additive_vq_decoder")
class AdditiveVQDecoder(VQDecoder):
    Spec = AdditiveVQDecoderSpec
    formats = {"vq": "one codebook lookup per sub-vector",
               "aqlm": "one lookup in each of the M codebooks per sub-vector, the M codewords summed",
               "lcvq": "one lookup per sub-vector in the 2^16-entry codebook (plus one in the residual "
                       "codebook, summed)"}

    def cycles(self, node) -> int:
        lookup = math.ceil(node["lookups"] / self.vectors_per_cycle)
        adds = math.ceil(node.get("adds", 0) / self.spec.adders)
        return max(lookup, adds) + self.spec.latency_cycles

    @classmethod
    def decode_extra(cls, fmt, n_weights: int) -> dict:
        return {"adds": fmt.decode_adds(n_weights) if hasattr(fmt, "decode_adds") else 0}

    @classmethod
    def decode_actions(cls, spec, fmt, n_weights: int, lookups: int) -> tuple:
        adds = cls.decode_extra(fmt, n_weights)["adds"]
        return super().decode_actions(spec, fmt, n_weights, lookups) + (("decoder.add", adds),)

    @classmethod
    def action_costs(cls, em, spec, cb) -> dict:
        costs = super().action_costs(em, spec, cb)
        # one addition of two codeword elements (FP16 in AQLM / VPTQ), priced
        # as an integer adder of the element's width
        w = max(1, cb.width_bits // 8)
        costs["decoder.add"] = (em.table.value("int8_add", "pJ/op") * w / 8,
                                f"int8_add x{w}/8 per element ({em.src('int8_add')})")
        return costs

    @classmethod
    def area_um2(cls, em, spec, cb) -> dict:
        a, kind = super().area_um2(em, spec, cb)["decoder"]
        w = max(1, cb.width_bits // 8)
        return {"decoder": (a + spec.adders * em.table.area("int8_add") * w / 8, kind)}
