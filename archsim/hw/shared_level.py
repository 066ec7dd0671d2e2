"""A shared on-chip memory level (`memory.levels`, kind sram): its port is
one bandwidth shared by every transfer in flight between it and the levels
below, as the DRAM channel's is (the same fluid processor-sharing model),
with its own access latency. Residency is static (archsim.allocator), so
the level needs no runtime reservations; the private buffers below it keep
theirs."""
from __future__ import annotations

from types import SimpleNamespace

from .dram import DRAMChannel
from .registry import register


@register("level", "sram")
class SharedLevel(DRAMChannel):
    def __init__(self, env, spec):
        super().__init__(env, SimpleNamespace(bandwidth_bytes_per_cycle=spec.bytes_per_cycle,
                                              latency_cycles=spec.latency_cycles))
        self.name = spec.name
        self.spec = spec
