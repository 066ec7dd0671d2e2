"""Stats: what happened in one simulation, per layer and per component, as
plain counts (cycles, bytes, accesses). Energy and area are computed from
these by archsim.energy; the simulator itself never prices anything."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, fields


@dataclass
class LayerStats:
    name: str
    op: str
    macs: int
    start_cycle: int = 0
    end_cycle: int = 0
    total_cycles: int = 0      # end of this layer - end of the previous one
    compute_cycles: int = 0    # PE array busy
    stall_cycles: int = 0      # total - compute: the PE array waited
    dram_read_bytes: int = 0
    dram_write_bytes: int = 0
    dram_read_by_buffer: dict = field(default_factory=lambda: defaultdict(int))  # weight/input/output/codebook
    codebook_lookups: int = 0
    codebook_loads: int = 0
    # 'component.action' -> count (MACs, register moves, lookups, sign applications...),
    # named by the component that performs them and priced by archsim.energy
    actions: dict = field(default_factory=lambda: defaultdict(int))
    # buffer -> bytes read / written on chip
    sram_read_bytes: dict = field(default_factory=lambda: defaultdict(int))
    sram_write_bytes: dict = field(default_factory=lambda: defaultdict(int))
    # 'from->to' -> bytes moved between memory levels (with shared levels declared)
    transfer_bytes: dict = field(default_factory=lambda: defaultdict(int))
    # unit (queue) -> cycles busy / waiting for data / waiting for buffer room
    busy_cycles: dict = field(default_factory=lambda: defaultdict(int))
    wait_data_cycles: dict = field(default_factory=lambda: defaultdict(int))
    wait_space_cycles: dict = field(default_factory=lambda: defaultdict(int))
    meta: dict = field(default_factory=dict)  # shape and format from the TileGraph
    # a banked DRAM's view of the layer's window: row-hit rate, bandwidth vs peak, mean read latency, commands
    dram_stats: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        # asdict() cannot rebuild defaultdicts; plain dicts are what JSON wants anyway
        return {f.name: (dict(v) if isinstance(v, dict) else v)
                for f in fields(self) for v in [getattr(self, f.name)]}


@dataclass
class Stats:
    arch: str
    layers: list[LayerStats]
    total_cycles: int
    dram_busy_cycles: int
    buffer_peak_bytes: dict
    buffer_end_bytes: dict = field(default_factory=dict)  # bytes still held when the run ends (0 = all freed)
    events: int = 0
    tensors: list = field(default_factory=list)  # with shared levels: per tensor, where it lived and what it moved
    unsimulated_ops: dict = field(default_factory=dict)  # non-GEMM operator class -> count, without a vector unit

    def to_dict(self) -> dict:
        return {"arch": self.arch, "total_cycles": self.total_cycles, "dram_busy_cycles": self.dram_busy_cycles,
                "buffer_peak_bytes": dict(self.buffer_peak_bytes),
                "buffer_end_bytes": dict(self.buffer_end_bytes), "layers": [l.to_dict() for l in self.layers]}
