"""Timeline: a simulation as a Chrome / Perfetto trace (trace-event JSON,
opens in ui.perfetto.dev and chrome://tracing).

One track (thread) per unit: each buffer's DMA queue, the decoder, the PE
array, the write-back; at `pe_array.fidelity: rows`, one more per PE row
(busy, lock-step wait, weight shift-in, waits for data or room). One complete slice ("ph": "X") per tile node, with its
layer, kind, bytes and cycles in `args`. Counter tracks ("ph": "C") for each
buffer's occupancy in bytes and for the DRAM channel's bandwidth in use
(the processor-sharing channel runs at full bandwidth whenever at least one
transfer is in flight). Timestamps are microseconds at the architecture's
clock; `args.start_cycle` keeps the exact cycle.

Off by default: the engine records only when given a Timeline, and
`layers` limits it to some layers so that files stay small.
"""
from __future__ import annotations

import json
from pathlib import Path


class Timeline:
    def __init__(self, clock_mhz: float, bandwidth_bytes_per_cycle: float, layers=None):
        self.us_per_cycle = 1.0 / clock_mhz
        self.bw = bandwidth_bytes_per_cycle
        self.layers = set(layers) if layers else None  # layer names to keep; None: all
        self.events: list[dict] = []
        self._tids: dict[str, int] = {}

    def wants(self, layer_name: str) -> bool:
        return self.layers is None or layer_name in self.layers

    def _tid(self, unit: str) -> int:
        tid = self._tids.get(unit)
        if tid is None:
            tid = self._tids[unit] = len(self._tids) + 1
        return tid

    def slice(self, unit: str, node: dict, layer_name: str, start: int, end: int):
        args = {"layer": layer_name, "kind": node["kind"], "start_cycle": start, "cycles": end - start}
        if node.get("bytes"):
            args["bytes"] = node["bytes"]
        if node["kind"] == "compute":
            args["macs"] = node["macs"]
        self.events.append({"name": f"{node['kind']} {layer_name}", "cat": node["kind"], "ph": "X", "pid": 1,
                            "tid": self._tid(unit), "ts": start * self.us_per_cycle,
                            "dur": (end - start) * self.us_per_cycle, "args": args})

    def track(self, name: str) -> int:
        """Declare a track now (tracks are listed in the order they are declared)."""
        return self._tid(name)

    def span(self, track: str, name: str, start: int, end: int):
        """A slice [start, end) cycles on a named track (fidelity rows: one track per PE row)."""
        self.events.append({"name": name, "cat": "row", "ph": "X", "pid": 1, "tid": self._tid(track),
                            "ts": start * self.us_per_cycle, "dur": (end - start) * self.us_per_cycle,
                            "args": {"start_cycle": start, "cycles": end - start}})

    def buffer_level(self, buf: str, cycle: int, level: int):
        self.events.append({"name": f"buffer {buf} (bytes)", "ph": "C", "pid": 1, "ts": cycle * self.us_per_cycle,
                            "args": {"bytes": level}})

    def dram(self, cycle: int, in_flight: int):
        """The number of transfers on the DRAM channel changed."""
        self.events.append({"name": "DRAM bandwidth in use (B/cycle)", "ph": "C", "pid": 1,
                            "ts": cycle * self.us_per_cycle, "args": {"B/cycle": self.bw if in_flight else 0}})

    def to_json(self) -> dict:
        meta = [{"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "archsim"}}]
        meta += [{"name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": {"name": unit}}
                 for unit, tid in self._tids.items()]
        return {"traceEvents": meta + self.events, "displayTimeUnit": "ns"}

    def write(self, path: str | Path):
        Path(path).write_text(json.dumps(self.to_json()) + "\n")
