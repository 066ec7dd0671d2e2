"""Codebook buffer: a small multi-ported register file holding one layer's
codewords. It bounds how many lookups per cycle the decoder can make and
charges a fixed reload cost per codebook load. Priced as an SRAM of its
capacity (CACTI rows, the 1 KB row as the floor: CACTI has no smaller
point), scaled by width_bits / 64: one read per lookup, one write per
codeword loaded."""
from __future__ import annotations

import math

from .registry import register

_FLOOR_BYTES = 1024


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
