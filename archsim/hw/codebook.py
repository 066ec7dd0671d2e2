"""Codebook buffer: a small multi-ported register file holding one layer's
codewords. It bounds how many lookups per cycle the decoder can make and
charges a fixed reload cost per codebook load."""
from __future__ import annotations

from .registry import register


@register("codebook", "codebook")
class CodebookBuffer:
    def __init__(self, env, spec):
        self.env = env
        self.spec = spec

    def load_cycles_after_transfer(self, codewords: int, transfer_cycles: int) -> int:
        """Cycles a (re)load takes once its DRAM transfer is done: codewords are
        written one per cycle as they arrive, then the fixed reload set-up."""
        return max(0, codewords - transfer_cycles) + self.spec.reload_cycles
