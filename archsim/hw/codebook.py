"""Codebook buffer: a small multi-ported register file holding one layer's
codewords. It bounds how many lookups per cycle the decoder can make and
charges a fixed reload cost per codebook load."""
from __future__ import annotations

from .registry import register


@register("codebook", "codebook")
class CodebookBuffer:
    def __init__(self, env, spec, source: str | None = None):
        self.env = env
        self.spec = spec
        self.source = source
        self.lookups = 0
        self.loads = 0

    def load_cycles(self, codewords: int) -> int:
        # one codeword written per cycle after the fixed reload set-up
        return self.spec.reload_cycles + codewords
