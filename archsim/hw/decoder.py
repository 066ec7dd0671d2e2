"""Weight decoders: rebuild a tile of compressed weights before the PE rows.

`kind: vq_decoder` turns indices into weights by codebook lookups; its
throughput is the smaller of its own lanes and the codebook's read ports.
`kind: sign_vq_decoder` (SSVQ) looks up a codeword of magnitudes and applies
each weight's stored sign bit after the lookup: a conditional negation per
weight, `signs_per_cycle` of them per cycle.
Each decoder declares its actions per decoded tile (`decode_actions`), their
energy (`action_costs`) and its area; the codebook's reads are its actions.
"""
from __future__ import annotations

import math
from typing import Literal

from pydantic import PositiveInt

from ..config import DecoderSpec
from .registry import register


class VQDecoderSpec(DecoderSpec):
    kind: Literal["vq_decoder"] = "vq_decoder"


@register("decoder", "vq_decoder")
class VQDecoder:
    Spec = VQDecoderSpec
    # the formats it rebuilds, each with how (archsim.hw.compat)
    formats = {"vq": "one codebook lookup per sub-vector"}

    def __init__(self, env, spec, codebook):
        self.env = env
        self.spec = spec
        self.codebook = codebook
        self.vectors_per_cycle = min(spec.vectors_per_cycle, codebook.spec.lookups_per_cycle)

    def cycles(self, node) -> int:
        return math.ceil(node["lookups"] / self.vectors_per_cycle) + self.spec.latency_cycles

    def execute(self, env, node):
        return env.timeout(self.cycles(node))

    @classmethod
    def decode_extra(cls, fmt, n_weights: int) -> dict:
        """Node attributes this decoder's timing needs beyond lookups and weights."""
        return {}

    @classmethod
    def decode_actions(cls, spec, fmt, n_weights: int, lookups: int) -> tuple:
        return (("codebook.read", lookups), ("decoder.lookup", lookups))

    @classmethod
    def action_costs(cls, em, spec, cb) -> dict:
        # latching each looked-up codeword into the lane that expands it
        reg = em.table.value("register_1b", "pJ/access")
        return {"decoder.lookup": (reg * cb.width_bits, f"register_1b x width_bits {cb.width_bits}")}

    @classmethod
    def area_um2(cls, em, spec, cb) -> dict:
        # one codeword latch per lane, doubled for the lane's output register
        return {"decoder": (spec.vectors_per_cycle * cb.width_bits * em.table.area("register_1b") * 2, "logic")}


class SignVQDecoderSpec(DecoderSpec):
    kind: Literal["sign_vq_decoder"] = "sign_vq_decoder"
    signs_per_cycle: PositiveInt = 128


@register("decoder", "sign_vq_decoder")
class SignVQDecoder(VQDecoder):
    """SSVQ: magnitude codebook lookup, then the stored sign of every weight."""
    Spec = SignVQDecoderSpec
    formats = {"vq": "one codebook lookup per sub-vector (no signs to apply)",
               "ssvq": "one lookup of magnitudes per sub-vector, then each weight's stored sign"}

    def cycles(self, node) -> int:
        lookup = math.ceil(node["lookups"] / self.vectors_per_cycle)
        sign = math.ceil(node["weights"] / self.spec.signs_per_cycle)
        # the sign stage is pipelined behind the lookup: the slower stage sets the pace,
        # plus one cycle of its own latency
        return max(lookup, sign) + self.spec.latency_cycles + 1

    @classmethod
    def decode_actions(cls, spec, fmt, n_weights: int, lookups: int) -> tuple:
        signs = n_weights if getattr(fmt, "sign_bits", 0) else 0
        return super().decode_actions(spec, fmt, n_weights, lookups) + (("decoder.sign", signs),)

    @classmethod
    def action_costs(cls, em, spec, cb) -> dict:
        costs = super().action_costs(em, spec, cb)
        # a conditional negation of one codeword element: an XOR row plus an
        # increment, priced as one adder of the element's width
        w = max(1, cb.width_bits // 16)
        costs["decoder.sign"] = (em.table.value("int8_add", "pJ/op") * w / 8,
                                 f"int8_add x{w}/8 per weight ({em.src('int8_add')})")
        return costs

    @classmethod
    def area_um2(cls, em, spec, cb) -> dict:
        a, kind = super().area_um2(em, spec, cb)["decoder"]
        return {"decoder": (a + spec.signs_per_cycle * em.table.area("int8_add"), kind)}


class MVQLoaderSpec(DecoderSpec):
    kind: Literal["mvq_loader"] = "mvq_loader"
    mask_decoders: PositiveInt = 8


@register("decoder", "mvq_loader")
class MVQLoader(VQDecoder):
    """MVQ's weight loader (Li et al., ASPLOS 2025): rebuilds sparse weights from
    index + N:M mask + a codebook register file. Per sub-vector one codebook
    lookup; per group of M weights its mask goes through a leading-zero-count
    mask decoder (`mask_decoders` groups per cycle) that yields the positions
    of the N kept weights, which steer them to the sparse array's PE rows.
    The slower of the two stages sets the pace."""
    Spec = MVQLoaderSpec
    formats = {"vq": "one codebook lookup per sub-vector (no masks)",
               "mvq": "one codebook lookup per sub-vector, the N:M mask of each group through an LZC"}

    def cycles(self, node) -> int:
        lookup = math.ceil(node["lookups"] / self.vectors_per_cycle)
        masks = math.ceil(node["mask_groups"] / self.spec.mask_decoders)
        return max(lookup, masks) + self.spec.latency_cycles

    @classmethod
    def decode_extra(cls, fmt, n_weights: int) -> dict:
        return {"mask_groups": fmt.n_groups(n_weights) if hasattr(fmt, "n_groups") else 0}

    @classmethod
    def decode_actions(cls, spec, fmt, n_weights: int, lookups: int) -> tuple:
        passes = cls.decode_extra(fmt, n_weights)["mask_groups"] * getattr(fmt, "n", 0)
        return super().decode_actions(spec, fmt, n_weights, lookups) + (("decoder.mask_decode", passes),)

    @classmethod
    def action_costs(cls, em, spec, cb) -> dict:
        costs = super().action_costs(em, spec, cb)
        costs["decoder.mask_decode"] = em.lzc_pj(8)  # one LZC pass per kept weight over a mask of M <= 8 bits
        return costs

    @classmethod
    def area_um2(cls, em, spec, cb) -> dict:
        a, kind = super().area_um2(em, spec, cb)["decoder"]
        return {"decoder": (a + spec.mask_decoders * em.lzc_area_um2(8), kind)}
