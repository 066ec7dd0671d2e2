"""VQ decoder: turns a tile of indices into weights by codebook lookups. Its
throughput is the smaller of its own lanes and the codebook's read ports."""
from __future__ import annotations

import math

from .registry import register


@register("decoder", "vq_decoder")
class VQDecoder:
    def __init__(self, env, spec, codebook):
        self.env = env
        self.spec = spec
        self.codebook = codebook
        self.vectors_per_cycle = min(spec.vectors_per_cycle, codebook.spec.lookups_per_cycle)

    def cycles(self, lookups: int) -> int:
        return math.ceil(lookups / self.vectors_per_cycle) + self.spec.latency_cycles
