"""The engine: run a TileGraph on an architecture with SimPy.

Every unit (DMA queue per buffer, decoder, PE array, write-back) is a SimPy
process that executes its nodes in program order. A node starts when its
predecessors are done and its unit is free, after reserving room in the
buffers it writes (which blocks while they are full). Overlap (double
buffering, prefetch of the next layer) and stalls come out of the simulation.
What a node does is up to the component that owns its kind (`execute`): the
engine only waits, reserves, frees and counts, and never branches on a kind
of hardware.
"""
from __future__ import annotations


import weakref
from types import SimpleNamespace

import simpy

from .config import ArchSpec
from .ir.errors import ArchsimError
from .gc_pause import gc_paused
from .hw.registry import create
from .stats import LayerStats, Stats


class _Machine:
    """The SimPy components of one architecture, and which executes what.

    A component's `execute(env, node)` either returns the SimPy event that
    ends the node (a closed-form wait: the cheap case, one event per node) or
    is a SimPy generator, which may return its internal units' cycles."""

    def __init__(self, env: simpy.Environment, arch: ArchSpec):
        src = arch.path
        self.dram = create("dram", arch.dram.kind, env, arch.dram, source=src, field="dram.kind")
        self.buffers = {}
        for name in ("weight", "input", "output"):
            spec = getattr(arch.buffers, name)
            self.buffers[name] = create("buffer", spec.kind, env, spec, name, source=src, field=f"buffers.{name}.kind")
        self.pe = create("pe_array", arch.pe_array.kind, arch.pe_array, arch, source=src, field="pe_array.kind")
        self.codebook = self.decoder = None
        if arch.codebook is not None:
            self.codebook = create("codebook", arch.codebook.kind, env, arch.codebook, self.dram,
                                   source=src, field="codebook.kind")
        if arch.decoder is not None:
            if self.codebook is None:
                raise ArchsimError("a decoder needs a codebook buffer", file=src, field="codebook")
            self.decoder = create("decoder", arch.decoder.kind, env, arch.decoder, self.codebook,
                                  source=src, field="decoder.kind")
        self.writeback = create("writeback", "writeback", env, self.dram)
        self.levels = {lv.name: create("level", lv.kind, env, lv, source=src, field="memory.levels.kind")
                       for lv in arch.memory.levels}
        store = self._store if self.levels else self.writeback.execute
        if arch.vector_unit is not None:
            # the vector unit's operand buffer: room for two chunks (double buffered)
            spec = SimpleNamespace(capacity_bytes=2 * arch.vector_unit.buffer_bytes, word_bits=64)
            self.buffers["vector"] = create("buffer", "sram", env, spec, "vector")
        # the plain pipe needs neither a level lookup nor an address per load (the common, fast case)
        load = self._load if self.levels or arch.dram.kind != "dram" else self._dram_load
        self.execute = {"load": load, "store": store, "compute": self.pe.execute,
                        "decode": self.decoder.execute if self.decoder else None,
                        "codebook_load": self.codebook.execute if self.codebook else None,
                        "vector": self._vector}

    @staticmethod
    def _vector(env, node):
        return env.timeout(node["cycles"])

    def _dram_load(self, env, node):
        return self.dram.read(node["bytes"])

    def _load(self, env, node):
        src = node.get("src")  # a tile read wholly from a shared level (archsim.allocator.Router)
        if src is not None:
            return self.levels[src].read(node["level_bytes"])
        return self.dram.read(node["bytes"], addr=node.get("addr"), stream=node["unit"])

    def _store(self, env, node):
        dst = node.get("dst")
        if dst is not None:
            return self.levels[dst].transfer(node["level_bytes"], write=True)
        return self.writeback.execute(env, node)


def run(graph, arch: ArchSpec, timeline=None) -> Stats:
    """Simulate; `timeline` (an archsim.timeline.Timeline) records slices and counters."""
    with gc_paused():
        return _run(graph, arch, timeline)


class _Plan:
    """What a run needs from a graph besides timing: its nodes, their
    predecessors, each unit's queue and the per-layer counts that do not
    depend on timing (bytes moved, actions, on-chip accesses). Kept per
    graph, so a graph simulated again (a TileCache hit in a study) skips it."""

    def __init__(self, graph):
        n = graph.number_of_nodes()
        self.attrs = attrs = [graph.nodes[v] for v in range(n)]
        pred = graph._pred
        self.preds = [tuple(pred[v]) for v in range(n)]
        self.queues: dict[str, list[int]] = {}
        for v in range(n):
            self.queues.setdefault(attrs[v]["unit"], []).append(v)
        proto = [LayerStats(name="", op="", macs=0) for _ in graph.graph["layers"]]
        tensor_moves: dict[str, dict] = {}  # tensor -> {'from->to': bytes} (with shared levels)
        for a in attrs:
            ls = proto[a["layer"]]
            kind = a["kind"]
            if kind == "load" or kind == "codebook_load":
                ls.dram_read_bytes += a["bytes"]
                ls.dram_read_by_buffer[a["buf"]] += a["bytes"]
                if kind == "codebook_load":
                    ls.codebook_loads += 1
            elif kind == "store":
                ls.dram_write_bytes += a["bytes"]
            if a["actions"]:
                actions = ls.actions
                for name, count in a["actions"]:
                    actions[name] += count
            moves = a.get("moves")
            if moves:
                per_tensor = tensor_moves.setdefault(a["tensor"], {})
                for src, dst, nb in moves:
                    ls.transfer_bytes[f"{src}->{dst}"] += nb
                    per_tensor[f"{src}->{dst}"] = per_tensor.get(f"{src}->{dst}", 0) + nb
            for buf, rd, wr in a["sram"]:
                if rd:
                    ls.sram_read_bytes[buf] += rd
                if wr:
                    ls.sram_write_bytes[buf] += wr
        self.static = proto
        alloc = graph.graph.get("allocation")
        # per tensor: where it lived, why, and the bytes it moved between each pair of levels
        self.tensors = [] if alloc is None else [
            {**t.describe(), "moved_bytes": dict(sorted(tensor_moves.get(t.name, {}).items()))}
            for t in alloc.tensors.values()]

    def layer_stats(self, metas) -> list[LayerStats]:
        out = []
        for meta, p in zip(metas, self.static):
            ls = LayerStats(name=meta["name"], op=meta["op"], macs=meta["macs"], meta=meta,
                            dram_read_bytes=p.dram_read_bytes, dram_write_bytes=p.dram_write_bytes,
                            codebook_loads=p.codebook_loads)
            for f in ("dram_read_by_buffer", "actions", "sram_read_bytes", "sram_write_bytes", "transfer_bytes"):
                getattr(ls, f).update(getattr(p, f))
            out.append(ls)
        return out


_plans: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _plan(graph) -> _Plan:
    plan = _plans.get(graph)
    if plan is None:
        plan = _plans[graph] = _Plan(graph)
    return plan


def _deadlock(attrs, preds, finished, queues, bufs, layers) -> str:
    """What each queue's next operation waits for when the simulation stops
    with work left: an unfinished predecessor, or room in a full buffer."""
    def what(v):
        a = attrs[v]
        return f"node {v} ({a['kind']} on {a['unit']}, layer {layers[a['layer']].name})"

    waits = []
    for unit, order in queues.items():
        v = next((v for v in order if not finished[v]), None)
        if v is None:
            continue
        pending = [p for p in preds[v] if not finished[p]]
        if pending:
            waits.append(f"{what(v)} waits for {what(pending[0])}")
        else:
            room = ", ".join(f"{nb} B in buffer {b} ({bufs[b].level} of {bufs[b].capacity} B held)"
                             for b, nb in attrs[v]["alloc"] if nb > 0)
            waits.append(f"{what(v)} waits for room: {room}")
    return "simulation deadlocked; the next operation of each queue: " + "; ".join(waits)


def _run(graph, arch: ArchSpec, tl) -> Stats:
    env = simpy.Environment()
    m = _Machine(env, arch)
    if tl is not None:
        m.dram.on_change = lambda n: tl.dram(env.now, n)
        m.pe.timeline = (tl, [meta["name"] for meta in graph.graph["layers"]])  # fidelity rows draws its rows
    plan = _plan(graph)
    attrs, preds, queues = plan.attrs, plan.preds, plan.queues
    n = len(attrs)
    finished = bytearray(n)
    waiters: dict[int, simpy.Event] = {}
    metas = graph.graph["layers"]
    nl = len(metas)
    layers = plan.layer_stats(metas)
    starts = [None] * nl
    ends = [0] * nl
    per_unit = {}  # unit -> (busy, waiting for data, waiting for room) cycles per layer
    bufs = m.buffers
    execute = m.execute
    new_event = env.event
    is_event = simpy.Event

    # env._now: the attribute behind SimPy's `now` property, read four times a node
    def unit_process(unit: str, order: list[int]):
        busy, wdata, wspace, seen = [0] * nl, [0] * nl, [0] * nl, bytearray(nl)
        per_unit[unit] = (busy, wdata, wspace, seen)
        for v in order:
            a = attrs[v]
            t0 = env._now
            for p in preds[v]:
                if not finished[p]:
                    ev = waiters.get(p)
                    if ev is None:
                        ev = waiters[p] = new_event()
                    yield ev
            t1 = env._now
            for buf, nb in a["alloc"]:
                if nb > 0:
                    yield bufs[buf].reserve(nb)
                    if tl is not None:
                        tl.buffer_level(buf, env.now, bufs[buf].level)
            t2 = env._now
            done = execute[a["kind"]](env, a)
            if isinstance(done, is_event):
                yield done
            else:
                sub = yield from done
                if sub:  # a component with its own internal units (e.g. pipeline stages) reports their time
                    ls = layers[a["layer"]]
                    for name, (b, starved, blocked) in sub.items():
                        ls.busy_cycles[name] += b
                        ls.wait_data_cycles[name] += starved
                        ls.wait_space_cycles[name] += blocked
            t3 = env._now
            for buf, nb in a["free"]:
                if nb > 0:
                    bufs[buf].release(nb)
                    if tl is not None:
                        tl.buffer_level(buf, t3, bufs[buf].level)
            li = a["layer"]
            if tl is not None and tl.wants(layers[li].name):
                tl.slice(unit, a, layers[li].name, t2, t3)
            seen[li] = 1
            wdata[li] += t1 - t0
            wspace[li] += t2 - t1
            busy[li] += t3 - t2
            st = starts[li]
            if st is None or t2 < st:
                starts[li] = t2
            if t3 > ends[li]:
                ends[li] = t3
            finished[v] = 1
            ev = waiters.pop(v, None)
            if ev is not None:
                ev.succeed()

    for unit, order in queues.items():
        env.process(unit_process(unit, order))
    env.run()
    if not all(finished):
        raise RuntimeError(_deadlock(attrs, preds, finished, queues, bufs, layers))
    for unit, (busy, wdata, wspace, seen) in per_unit.items():
        for li, ls in enumerate(layers):
            if seen[li]:
                ls.busy_cycles[unit] += busy[li]
                ls.wait_data_cycles[unit] += wdata[li]
                ls.wait_space_cycles[unit] += wspace[li]
    prev_end = 0
    for li, ls in enumerate(layers):
        ls.start_cycle = starts[li] or 0
        ls.end_cycle = max(ends[li], prev_end)
        ls.total_cycles = ls.end_cycle - prev_end
        ls.compute_cycles = ls.busy_cycles.get("pe", 0) + ls.busy_cycles.get("vector", 0)
        ls.stall_cycles = max(0, ls.total_cycles - ls.compute_cycles)
        ls.codebook_lookups = ls.actions.get("codebook.read", 0)
        prev_end = ls.end_cycle
    if hasattr(m.dram, "stats"):  # a DRAM model with banks: row hits, bandwidth and latency per layer
        for ls in layers:
            ls.dram_stats = m.dram.stats(ls.start_cycle, ls.end_cycle)
    alloc = graph.graph.get("allocation")
    if tl is not None and alloc is not None:  # shared levels hold what the allocator placed, op by op
        for level, occ in alloc.occupancy.items():
            for li, ls in enumerate(layers):
                tl.buffer_level(level, ls.start_cycle, occ[li])
    return Stats(arch=arch.name, layers=layers, total_cycles=int(env.now), dram_busy_cycles=m.dram.busy_cycles,
                 buffer_peak_bytes={k: b.peak_bytes for k, b in bufs.items()},
                 buffer_end_bytes={k: b.level for k, b in bufs.items()}, tensors=plan.tensors,
                 unsimulated_ops=dict(graph.graph.get("unsimulated_ops", {})))
