"""Tile each LayerSpec for an architecture into one TileGraph
(a networkx.DiGraph of load / decode / compute / store operations).

The loop nest is the PE kind's (archsim/hw/<kind>.py, `map_layer`); this
module is the generic part every kind uses, the LayerTiler: it creates the
nodes, sizes transfers in bytes from the WeightFormat, reserves and frees
buffer room (double buffering = tiles of at most half a buffer), loads a
layer's side data, and chains layers.

Node attributes (the contract with archsim.engine):
  kind    load | codebook_load | decode | compute | store
  unit    the in-order queue that executes it: dma.weight, dma.input,
          dma.output (partial sums read back), dma.codebook, dma.side,
          decoder, pe, writeback
  layer   index into graph.graph["layers"]
  bytes   DRAM bytes moved (load / store)
  alloc   ((buffer, bytes), ...) room reserved in on-chip buffers before it starts
  free    ((buffer, bytes), ...) room given back when it ends
  sram    ((buffer, read_bytes, write_bytes), ...) on-chip accesses it makes
  fold    Fold(rows_used, cols_used, stream_len, first, last) for compute
  cycles  compute: the PE kind's fold timing
  macs    compute: the layer's multiply-accumulates this node covers
  actions ((name, count), ...) named actions, priced by the energy model
  lookups decode: codebook lookups
Edges are data dependencies. Nodes are numbered in program order; each unit
executes its nodes in that order, as the hardware's queues would.

Side data (codebooks, scales, shift tables...) is loaded once per layer
whenever the format has it (unless the PE kind loads it itself into its own
buffers: `loads_own_side_data`, e.g. pq_lut's prototypes and LUT tiles): into the codebook buffer when the layer is
decoded (the next layer's codebook waits for this layer's last decode), else
into the PE kind's side registers (no buffer room; the layer's computes wait
for it). Residency: an operand that fits in its whole buffer stays resident
and is loaded once (the next layer's prefetch then waits for room);
otherwise it is re-loaded on every pass, as SCALE-Sim's reference runs show.
Input DRAM traffic assumes on-chip im2col (a line buffer): a pass fetches the
raw input pixels once, not kh*kw times; the PEs still read the im2col stream
from the input SRAM.
"""
from __future__ import annotations

import json
import math
from collections import OrderedDict

import networkx as nx

from archsim.allocator import AddressSpace, Router, allocate, op_tensors
from archsim.config import ArchSpec
from archsim.ir.errors import ArchsimError
from archsim.gc_pause import gc_paused
from archsim.hw import registry
from archsim.hw.compat import check_layers

from .ir.layer_spec import LayerSpec, VectorOp

TileGraph = nx.DiGraph


class _Builder:
    def __init__(self):
        self.nodes: list[dict] = []
        self.edges: list[tuple[int, int]] = []
        # mapping choices made on the DRAM channel: ({option: counts}, chosen), for TileCache
        self.dram_choices: list[tuple[dict, str]] = []

    def add(self, kind, unit, layer, deps=(), **attrs) -> int:
        return self.push({"kind": kind, "unit": unit, "layer": layer, "alloc": (), "free": (), "sram": (),
                          "bytes": 0, "actions": (), **attrs}, deps)

    def push(self, node: dict, deps=()) -> int:
        """Append a complete node dict (every key of the contract) and its edges."""
        v = len(self.nodes)
        self.nodes.append(node)
        edges = self.edges
        for d in deps:
            if d is not None:
                edges.append((d, v))
        return v

    def graph(self) -> TileGraph:
        # Filled through networkx's own adjacency dicts (as its converters do):
        # add_nodes_from / add_edges_from re-check every item and took half of
        # the tiling time on ResNet-50.
        g = nx.DiGraph()
        node, succ, pred = g._node, g._succ, g._pred
        for v, attrs in enumerate(self.nodes):
            node[v] = attrs
            succ[v] = {}
            pred[v] = {}
        for u, v in self.edges:
            succ[u][v] = pred[v][u] = {}
        return g


class LayerTiler:
    """Everything a PE kind's loop nest needs about one layer on one
    architecture, and the node factory it emits through."""

    def __init__(self, b: _Builder, arch: ArchSpec, pe, layer: LayerSpec, li: int,
                 prev_store: int | None, decoder_cls=None, router=None, tensors=None, addresses=None):
        self.b, self.arch, self.pe, self.layer, self.li = b, arch, pe, layer, li
        # shared memory levels: where each transfer goes (None: every transfer is to/from DRAM)
        self.router, self.tensors = router, tensors or {}
        # a DRAM with banks gets each transfer's address and times a strided tile by its layout
        self.addresses = addresses
        self.prev_store = prev_store
        self.first_act_dep = prev_store  # the first activation load waits for the previous layer
        self.act_bits = arch.pe_array.act_bits
        self.fmt = layer.fmt
        self.decoder_cls = decoder_cls
        self.side_load: int | None = None
        self.loop_order = ""
        bufs = arch.buffers
        self.limit = {n: getattr(bufs, n).tile_limit_bytes for n in ("weight", "input", "output")}
        self._w_memo: dict = {}
        self._in_memo: dict = {}
        L = layer
        self._im2col_ratio = 1.0 if L.in_elems is None else min(1.0, L.in_elems / (L.groups * L.M * L.K))
        self.capacity = {n: getattr(bufs, n).capacity_bytes for n in ("weight", "input", "output")}
        self._acc_bits = getattr(pe, "acc_bits", 32)
        self._fold_fmt = None if layer.op == "matmul" else layer.fmt  # a matmul's operands are activations
        # a matmul's second operand may be a stored tensor of its own width (a KV cache)
        self.b_bits = self.act_bits
        self.needs_decode = layer.op != "matmul" and layer.fmt.decode_lookups(1) > 0

    # -- sizes (memoised: a nest asks for the same few tile sizes many times) ----
    def act_bytes(self, n: float) -> int:
        return math.ceil(n * self.act_bits / 8)

    def in_dram_bytes(self, n_im2col: float) -> int:
        # on-chip im2col: raw pixels are fetched once per pass, not kh*kw times
        v = self._in_memo.get(n_im2col)
        if v is None:
            v = self._in_memo[n_im2col] = max(1, math.ceil(n_im2col * self._im2col_ratio * self.act_bits / 8))
        return v

    def w_bytes(self, n: int) -> int:
        v = self._w_memo.get(n)
        if v is None:
            # a matmul's second operand is an activation, or a tensor stored at its own width
            v = self._w_memo[n] = math.ceil(n * self.b_bits / 8) if self.layer.op == "matmul" \
                else max(1, self.fmt.tile_bytes(n))
        return v

    def psum_bytes(self, n: int) -> int:
        return math.ceil(n * self._acc_bits / 8)

    # -- errors -----------------------------------------------------------------
    def too_small(self, buf: str, what: str):
        raise ArchsimError(f"buffer too small for one tile of layer {self.layer.name} ({what})",
                           file=self.arch.path, field=f"buffers.{buf}.capacity_bytes")

    def refuse(self, message: str, field: str):
        raise ArchsimError(f"layer {self.layer.name}: {message}", file=self.arch.path, field=field)

    # -- nodes ------------------------------------------------------------------
    def load(self, buf: str, nbytes: int, deps=(), act_dep: bool = False, unit: str | None = None,
             rows: tuple | None = None) -> int:
        """A DMA transfer from DRAM into `buf`, reserving its room. With
        `act_dep` (or for a matmul, whose operands are both activations) the
        layer's first such load waits for the previous layer's last store.
        `rows` = (row_bytes, stride_bytes, n_rows): the tile's layout in DRAM
        where it is strided (a DRAM model with banks times it by it)."""
        if act_dep or self.layer.op == "matmul":
            deps = tuple(deps) + (self.first_act_dep,)
            self.first_act_dep = None
        if self.router is None and self.addresses is None:  # the common case: every transfer is to/from DRAM
            return self.b.add("load", unit or f"dma.{buf}", self.li, deps, bytes=nbytes, buf=buf,
                              alloc=((buf, nbytes),), sram=((buf, 0, nbytes),))
        name = self.tensors.get("psum" if unit == "dma.output" else buf)
        if self.router is not None:
            r = self.router.load(name, nbytes, buf)
            sram = ((buf, 0, nbytes),) + ((r.pop("level_sram"),) if "level_sram" in r else ())
        else:
            r, sram = {"bytes": nbytes}, ((buf, 0, nbytes),)
        if self.addresses is not None and r["bytes"]:
            r.update(self._address(name or f"{self.layer.name}:{buf}", r["bytes"], rows))
        return self.b.add("load", unit or f"dma.{buf}", self.li, deps, buf=buf, alloc=((buf, nbytes),),
                          sram=sram, **r)

    def _address(self, name: str, nbytes: int, rows=None) -> dict:
        """Node attributes: the tensor and the DRAM address of its next `nbytes`
        ((base, row_bytes, stride, rows) for a strided tile)."""
        base = self.addresses.next(name, nbytes)
        return {"tensor": name, "addr": (base,) + tuple(rows) if rows is not None else base}

    # a codebook larger than the buffer (archsim.hw.codebook.Overflow), set by _load_side_data
    cb_overflow = None

    def decode(self, deps, n_weights: int, read_bytes: int) -> int:
        """Rebuild n_weights from the weight buffer's compressed tile."""
        lookups = self.fmt.decode_lookups(n_weights)
        actions = self.decoder_cls.decode_actions(self.arch.decoder, self.fmt, n_weights, lookups)
        extra = self.decoder_cls.decode_extra(self.fmt, n_weights)
        ov = self.cb_overflow
        if ov is not None:
            return self._decode_overflow(ov, tuple(deps), n_weights, read_bytes, lookups, actions, extra)
        return self.b.add("decode", "decoder", self.li, tuple(deps) + (self.side_load,), lookups=lookups,
                          weights=n_weights, actions=actions, sram=(("weight", read_bytes, 0),), **extra)

    def _decode_overflow(self, ov, deps, n_weights, read_bytes, lookups, actions, extra) -> int:
        """decode() with a codebook that does not fit the buffer
        (archsim/hw/codebook.py states the model). cache: one load of the
        tile's expected misses, which the decode waits for. stream: the
        codebook in chunks, one decode pass per chunk; returns the last pass."""
        b, li = self.b, self.li
        if ov.mode == "cache":
            misses = ov.misses(lookups)
            fetch = b.add("load", "dma.codebook", li, deps + (self.side_load,), bytes=misses * ov.line_bytes,
                          buf="codebook", codewords=misses, actions=(("codebook.write", misses),))
            return b.add("decode", "decoder", li, deps + (self.side_load, fetch), lookups=lookups,
                         weights=n_weights, actions=actions, sram=(("weight", read_bytes, 0),), **extra)
        v = None
        for j in range(len(ov.bounds) - 1):
            cw = ov.bounds[j + 1] - ov.bounds[j]
            # the buffer holds one chunk: it is refilled once the previous pass is done
            chunk = b.add("codebook_load", "dma.codebook", li, (ov.last_pass or self.side_load,),
                          bytes=ov.chunk_bytes(j), buf="codebook", codewords=cw, actions=(("codebook.write", cw),))
            v = ov.last_pass = b.add(
                "decode", "decoder", li, deps + (self.side_load, chunk), lookups=ov.share(lookups, j),
                weights=ov.share(n_weights, j), actions=tuple((a, ov.share(n, j)) for a, n in actions),
                sram=(("weight", ov.share(read_bytes, j), 0),), **{a: ov.share(n, j) for a, n in extra.items()})
        return v

    def compute(self, fold, deps, macs: int, alloc=(), sram=()) -> int:
        cycles, actions = self.pe.fold_cost(fold, self._fold_fmt)
        if self.side_load is not None and not self.needs_decode:
            deps = tuple(deps) + (self.side_load,)
        # the node dict spelt out (b.add's keyword packing is measurable: one per compute)
        return self.b.push({"kind": "compute", "unit": "pe", "layer": self.li, "alloc": alloc, "free": (),
                            "sram": sram, "bytes": 0, "actions": actions, "fold": fold, "cycles": cycles,
                            "macs": macs}, deps)

    def compute_folds(self, folds: list, deps, macs: int, alloc=(), sram=()) -> int:
        """One compute node for consecutive folds that wait for the same
        transfers (fidelity tile): their cycles and actions summed."""
        cycles, actions = 0, {}
        for fold in folds:
            c, acts = self.pe.fold_cost(fold, self._fold_fmt)
            cycles += c
            for k, v in acts:
                actions[k] = actions.get(k, 0) + v
        if self.side_load is not None and not self.needs_decode:
            deps = tuple(deps) + (self.side_load,)
        return self.b.push({"kind": "compute", "unit": "pe", "layer": self.li, "alloc": alloc, "free": (),
                            "sram": sram, "bytes": 0, "actions": tuple(actions.items()), "fold": folds[-1],
                            "cycles": cycles, "macs": macs, "folds": len(folds)}, deps)

    def store(self, nbytes: int, dep: int, free_psum: int, sram_write: int = 0, psum: bool = False) -> int:
        """Write `nbytes` back (the layer's output, or spilled partial sums
        with `psum`), freeing `free_psum` of output room."""
        sram = (("output", free_psum, sram_write),)
        if self.router is None and self.addresses is None:
            return self.b.add("store", "writeback", self.li, (dep,), bytes=nbytes, buf="output",
                              free=(("output", free_psum),), sram=sram)
        name = self.tensors.get("psum" if psum else "output")
        r = self.router.store(name, nbytes) if self.router is not None else {"bytes": nbytes}
        if "level_sram" in r:
            sram += (r.pop("level_sram"),)
        if self.addresses is not None and r["bytes"]:
            r.update(self._address(name or f"{self.layer.name}:{'psums' if psum else 'out'}", r["bytes"]))
        return self.b.add("store", "writeback", self.li, (dep,), buf="output", free=(("output", free_psum),),
                          sram=sram, **r)

    def free_later(self, v: int, buf: str, nbytes: int):
        """Node v gives back `nbytes` of `buf` when it ends."""
        node = self.b.nodes[v]
        node["free"] = node["free"] + ((buf, nbytes),)

    # -- estimates --------------------------------------------------------------
    def dry_run(self) -> "LayerTiler":
        """A tiler over a scratch graph, to count what a loop order would do."""
        return _DryRun(self)

    def choose_by_estimate(self, options: dict) -> str:
        """{name: nest(tiler)} -> the name whose dry run has the lowest
        roofline estimate (`roofline_cycles`); the first on a tie."""
        counts = {}
        for name, nest in options.items():
            dry = self.dry_run()
            nest(dry)
            counts[name] = (dry.pe_cycles, dry.dram_bytes, max(dry.loads.values(), default=0))
        best = _cheapest(counts, self.arch.dram)
        self.b.dram_choices.append((counts, best))
        return best


def roofline_cycles(counts: tuple, dram) -> float:
    """A loop order's cycles, estimated from a dry run's counts (PE cycles,
    DRAM bytes, transfers on its busiest DMA queue): the largest of its PE
    cycles, its bytes over the bandwidth and its transfers times the DRAM
    latency (a queue waits out each access)."""
    pe_cycles, dram_bytes, queue_loads = counts
    return max(pe_cycles, dram_bytes / dram.bandwidth_bytes_per_cycle, queue_loads * dram.latency_cycles)


def _cheapest(counts: dict, dram) -> str:
    return min(counts, key=lambda name: roofline_cycles(counts[name], dram))


class _DryRun(LayerTiler):
    """Counts what a loop nest would emit (PE cycles, DRAM bytes) without
    building nodes: the mapper runs one per candidate loop order."""

    def __init__(self, t: LayerTiler):
        # not routed: a loop order is chosen on the private buffers alone, as without shared levels
        super().__init__(t.b, t.arch, t.pe, t.layer, t.li, None, t.decoder_cls)
        self.b_bits = t.b_bits
        self.pe_cycles = 0
        self.dram_bytes = 0
        self.loads: dict[str, int] = {}  # DMA queue -> transfers (each waits out the DRAM latency)
        self.read_bytes: dict[str, int] = {}  # buffer -> bytes loaded into it

    def load(self, buf, nbytes, deps=(), act_dep=False, unit=None, rows=None):
        self.dram_bytes += nbytes
        unit = unit or f"dma.{buf}"
        self.loads[unit] = self.loads.get(unit, 0) + 1
        self.read_bytes[buf] = self.read_bytes.get(buf, 0) + nbytes
        return 0

    def decode(self, deps, n_weights, read_bytes):
        return 0

    def compute(self, fold, deps, macs, alloc=(), sram=()):
        self.pe_cycles += self.pe.fold_cost(fold, self._fold_fmt)[0]
        return 0

    def compute_folds(self, folds, deps, macs, alloc=(), sram=()):
        self.pe_cycles += sum(self.pe.fold_cost(f, self._fold_fmt)[0] for f in folds)
        return 0

    def store(self, nbytes, dep, free_psum, sram_write=0, psum=False):
        self.dram_bytes += nbytes
        return 0

    def free_later(self, v, buf, nbytes):
        pass


def layer_summary(L: LayerSpec) -> dict:
    return {"name": L.name, "op": L.op, "M": L.M, "N": L.N, "K": L.K, "groups": L.groups,
            "macs": L.macs, "n_weights": L.n_weights if L.op != "matmul" else 0,
            "format": L.fmt.describe() if L.op != "matmul" else {"format": "activation"},
            "weight_storage_bits": L.fmt.storage_bits(L.n_weights) if L.op != "matmul" else 0}


def _load_side_data(b: _Builder, t: LayerTiler, arch: ArchSpec, prev_decode_end: int | None) -> None:
    L, fmt = t.layer, t.fmt
    if L.op == "matmul" or t.pe.loads_own_side_data(L):
        return
    side = fmt.side_bytes(L.n_weights)
    if t.needs_decode:
        if arch.codebook is None or arch.decoder is None:
            raise ArchsimError(f"layer {L.name} has {fmt.name} weights but the architecture has no "
                               f"codebook buffer and decoder", file=arch.path, field="codebook")
        k, d = getattr(fmt, "k", 0), getattr(fmt, "d", 1)
        cbits = getattr(fmt, "codebook_bits", 8)
        overflow = arch.codebook.overflow
        if k > arch.codebook.entries and overflow == "refuse":
            raise ArchsimError(f"buffer too small for one tile: layer {L.name} needs {k} codewords "
                               f"(or set codebook.overflow to stream or cache)",
                               file=arch.path, field="codebook.entries")
        if d * cbits > arch.codebook.width_bits:
            raise ArchsimError(f"buffer too small for one tile: layer {L.name} codeword is {d * cbits} bits",
                               file=arch.path, field="codebook.width_bits")
        codewords = k * getattr(fmt, "n_codebooks", 1)
        if k > arch.codebook.entries:  # cached or streamed (archsim/hw/codebook.py)
            from archsim.hw.codebook import Overflow

            t.cb_overflow = Overflow(overflow, fmt, arch.codebook, L.n_weights)
            codewords, side = t.cb_overflow.layer_load()
        # one codebook at a time: the next layer's load waits for this layer's last decode
        t.side_load = b.add("codebook_load", "dma.codebook", t.li, (prev_decode_end,), bytes=side,
                            buf="codebook", codewords=codewords, actions=(("codebook.write", codewords),))
    elif side > 0:
        t.side_load = b.add("load", "dma.side", t.li, (), bytes=side, buf="side")


def tile(layers: list[LayerSpec], arch: ArchSpec) -> TileGraph:
    """LayerSpecs + ArchSpec -> TileGraph (layers run in order; a layer's
    activation loads wait for the previous layer's last store)."""
    with gc_paused():  # tens of thousands of small dicts, no cycles
        return _tile(layers, arch)


def _layer_shape(L: LayerSpec) -> tuple:
    """What a mapper reads of a layer: shape, format and activation profile (not its name)."""
    return (L.op, L.M, L.N, L.K, L.groups, L.conv, L.in_elems, L.fmt, L.act_profile)


def _layer_key(L: LayerSpec, t: LayerTiler):
    """Everything a layer's nodes depend on besides the architecture: its
    shape, which outside nodes it waits for, and where its tensors live."""
    key = _layer_shape(L) + (t.prev_store is None, t.side_load is None, t.b_bits)
    if t.router is not None:
        key += tuple((role, t.router.state(name)) for role, name in sorted(t.tensors.items()))
    return key


class _Recording:
    """One layer's nodes and edges as map_layer emitted them, to replay for
    a later layer of the same key (ResNet stages and transformer blocks
    repeat layers; replaying is several times cheaper than the loop nest)."""

    def __init__(self, b: _Builder, first: int, first_edge: int, first_choice: int, t: LayerTiler, last_store,
                 loop_order: str, staged_before: dict):
        self.first, self.nodes, self.edges = first, b.nodes[first:], b.edges[first_edge:]
        self.choices = b.dram_choices[first_choice:]
        self.outside = {t.prev_store, t.side_load} - {None}
        self.prev_store, self.side_load = t.prev_store, t.side_load
        self.last_store, self.loop_order = last_store, loop_order
        # routed transfers name their tensors: a replay renames them and stages as many bytes
        self.roles = {name: role for role, name in t.tensors.items()}
        self.staged = {role: t.router.fetched.get(name, 0) - staged_before.get(role, 0)
                       for role, name in t.tensors.items()} if t.router is not None else {}
        # tensors the nest placed as it went (spilled partial sums): a replay places its own
        self.placed = [role for role, name in t.tensors.items()
                       if t.router is not None and t.router.alloc.tensors[name].decided] if t.router else []
        # replay is sound only if the nest waited for nothing else outside the layer
        self.ok = all(u >= first or u in self.outside for u, _ in self.edges) and \
            (last_store is None or last_store >= first)

    @staticmethod
    def staged_now(t: LayerTiler) -> dict:
        """Bytes staged so far per role (taken before the nest runs)."""
        return {role: t.router.fetched.get(name, 0) for role, name in t.tensors.items()} if t.router else {}

    def replay(self, b: _Builder, t: LayerTiler):
        off = len(b.nodes) - self.first
        li = t.li
        rename = {old: t.tensors[role] for old, role in self.roles.items()}
        for node in self.nodes:
            d = node.copy()
            d["layer"] = li
            if "tensor" in d:
                d["tensor"] = rename.get(d["tensor"], d["tensor"])
                if "addr" in d:
                    base = t.addresses.next(d["tensor"], d["bytes"])
                    d["addr"] = (base,) + d["addr"][1:] if isinstance(d["addr"], tuple) else base
            b.nodes.append(d)
        if t.router is not None:
            for role in self.placed:
                plan = t.router.alloc.tensors[t.tensors[role]]
                if not plan.decided:
                    t.router.alloc.place(plan)
            for role, nb in self.staged.items():
                name = t.tensors[role]
                t.router.fetched[name] = t.router.fetched.get(name, 0) + nb
        first, prev = self.first, self.prev_store
        new_prev, new_side = t.prev_store, t.side_load  # the only other outside node is the side load
        b.edges.extend((u + off if u >= first else new_prev if u == prev else new_side, v + off)
                       for u, v in self.edges)
        b.dram_choices.extend(self.choices)
        return None if self.last_store is None else self.last_store + off


def _tile(layers: list[LayerSpec], arch: ArchSpec) -> TileGraph:
    if not layers and not (getattr(layers, "ops", None) and arch.vector_unit is not None):
        raise ArchsimError("no layers to simulate", field="layers")
    pe = registry.create("pe_array", arch.pe_array.kind, arch.pe_array, arch, source=arch.path,
                         field="pe_array.kind")
    decoder_cls = registry.lookup("decoder", arch.decoder.kind) if arch.decoder is not None else None
    check_layers(layers, arch, pe)  # every weight format runs by a stated rule or is refused here
    b = _Builder()
    prev_store = None
    prev_decode_end = None
    summaries = []
    recordings: dict = {}
    # With a vector unit, the non-GEMM operators of the DAG run on it in
    # program order between the layers; without one they are not simulated
    # (the report says which and how many).
    vu = registry.create("vector_unit", arch.vector_unit.kind, arch.vector_unit, source=arch.path,
                         field="vector_unit.kind") if arch.vector_unit is not None else None
    dag_ops = getattr(layers, "ops", None)
    ops = list(dag_ops) if vu is not None and dag_ops else list(layers)
    fused = {op.name for op in ops if isinstance(op, VectorOp) and op.after_gemm and op.op in arch.vector_unit.fused}
    router, roles, alloc, addresses = None, [{}] * len(ops), None, None
    if arch.memory.levels or arch.dram.kind != "dram":
        weight_reads = None
        if not arch.memory.pin_weights and any("weights" in lv.serves for lv in arch.memory.levels):
            weight_reads = _weight_reads(ops, arch, pe, decoder_cls)
        candidates, roles = op_tensors(ops, arch, layers, fused, weight_reads)
        if arch.memory.levels:
            alloc = allocate(candidates, len(ops), arch)
            router = Router(alloc)
        if arch.dram.kind != "dram":  # the pipe does not look at addresses
            addresses = AddressSpace({t.name: t.bytes for t in candidates})
    stored_bits = {n: info.bits for n, info in getattr(layers, "tensors", {}).items() if info.bits is not None}
    for li, L in enumerate(ops):
        if isinstance(L, VectorOp):
            prev_store = _tile_vector_op(b, vu, L, li, prev_store, router, roles[li], L.name in fused,
                                         arch.pe_array.act_bits, stored_bits.get(L.output))
            summaries.append(_vector_summary(L, vu, L.name in fused))
            continue
        t = LayerTiler(b, arch, pe, L, li, prev_store, decoder_cls, router, roles[li], addresses)
        if L.op == "matmul" and len(L.inputs) > 1 and L.inputs[1] in stored_bits:
            t.b_bits = stored_bits[L.inputs[1]]
        _load_side_data(b, t, arch, prev_decode_end)
        first_node, first_edge, first_choice = len(b.nodes), len(b.edges), len(b.dram_choices)
        key = _layer_key(L, t) if pe.layers_independent else None
        rec = recordings.get(key)
        if rec is not None:
            prev_store, loop_order = rec.replay(b, t), rec.loop_order
        else:
            staged_before = _Recording.staged_now(t)
            prev_store = pe.map_layer(t)
            loop_order = pe.loop_order(t)
            if key is not None:
                rec = _Recording(b, first_node, first_edge, first_choice, t, prev_store, loop_order, staged_before)
                if rec.ok:
                    recordings[key] = rec
        if t.needs_decode:
            prev_decode_end = max(v for v in range(first_node, len(b.nodes)) if b.nodes[v]["kind"] == "decode")
        s = layer_summary(L)
        s["loop_order"] = loop_order
        summaries.append(s)
    g = b.graph()
    g.graph["layers"] = summaries
    g.graph["arch"] = arch.name
    g.graph["dram_choices"] = b.dram_choices
    if alloc is not None:
        g.graph["allocation"] = alloc
    if dag_ops and vu is None:
        skipped: dict[str, int] = {}
        for op in dag_ops:
            if isinstance(op, VectorOp):
                skipped[op.op] = skipped.get(op.op, 0) + 1
        g.graph["unsimulated_ops"] = skipped
    return g


def _weight_reads(ops, arch: ArchSpec, pe, decoder_cls) -> dict[int, int]:
    """{op index: bytes its loop nest loads into the weight buffer}, from a dry
    run of each distinct layer's mapper (on a scratch graph): keeping a weight
    tensor on chip helps only a layer that reads it more than once."""
    scratch, seen, out = _Builder(), {}, {}
    for i, L in enumerate(ops):
        if isinstance(L, VectorOp) or L.op == "matmul":
            continue
        key = _layer_shape(L)
        if key not in seen:
            dry = _DryRun(LayerTiler(scratch, arch, pe, L, i, None, decoder_cls))
            pe.map_layer(dry)
            seen[key] = dry.read_bytes.get("weight", 0)
        out[i] = seen[key]
    return out


def _vector_summary(op: VectorOp, vu, fused: bool) -> dict:
    return {"name": op.name, "op": op.op, "M": op.elems, "N": 1, "K": op.window, "groups": 1, "macs": 0,
            "n_weights": 0, "format": {"format": "vector"}, "weight_storage_bits": 0,
            "lane_ops": vu.lane_ops(op.op, op.elems, op.window),
            "loop_order": "fused into the write-back" if fused else f"vector unit, {vu.lanes} lanes"}


def _tile_vector_op(b: _Builder, vu, op: VectorOp, li: int, prev_store, router, tensors: dict, fused: bool,
                    act_bits: int, out_bits: float | None = None):
    """A non-GEMM operator on the vector unit: its inputs and output stream
    through the unit's buffer in chunks (double buffered); each chunk is a
    load per input, one compute and one store. A fused operator runs in the
    PE array's write-back: no transfer, no cycle, only its lane-ops.
    `out_bits`: the output tensor's own width (a KV cache append), else act_bits."""
    lane_ops = vu.lane_ops(op.op, op.elems, op.window)
    if fused:
        b.push({"kind": "vector", "unit": "vector", "layer": li, "alloc": (), "free": (), "sram": (),
                "bytes": 0, "actions": (("vector_unit.lane_op", lane_ops),), "cycles": 0, "macs": 0}, (prev_store,))
        return prev_store
    nbytes = lambda elems: max(1, -(-elems * act_bits // 8))
    in_bytes = [nbytes(e) for e in op.in_elems]
    extra = []  # an embedding gathers its rows of the table from DRAM
    if op.op == "embedding":
        extra = [nbytes(op.elems)]
    out_bytes = nbytes(op.elems) if out_bits is None else max(1, math.ceil(op.elems * out_bits / 8))
    chunk = vu.spec.buffer_bytes
    n = max(1, -(-(sum(in_bytes) + sum(extra) + out_bytes) // chunk))
    part = lambda total, j: total * (j + 1) // n - total * j // n
    first_dep, last_store = prev_store, prev_store
    for j in range(n):
        loads = []
        for k, total in enumerate(in_bytes + extra):
            nb = part(total, j)
            if nb == 0:
                continue
            name = tensors.get(f"in{k}") if k < len(in_bytes) else None
            r = router.load(name, nb, "vector") if router is not None else {"bytes": nb}
            sram = (("vector", 0, nb),) + ((r.pop("level_sram"),) if "level_sram" in r else ())
            v = b.add("load", "dma.vector", li, (first_dep,), buf="vector", alloc=(("vector", nb),), sram=sram, **r)
            first_dep = None
            loads.append((v, nb))
        onb = part(out_bytes, j)
        work = part(lane_ops, j)
        cp = b.push({"kind": "vector", "unit": "vector", "layer": li, "alloc": (("vector", onb),),
                     "free": tuple(("vector", nb) for _, nb in loads),
                     "sram": (("vector", sum(nb for _, nb in loads), onb),), "bytes": 0,
                     "actions": (("vector_unit.lane_op", work),), "cycles": -(-work // vu.lanes), "macs": 0},
                    [v for v, _ in loads] + ([first_dep] if not loads else []))
        r = router.store(tensors.get("output"), onb, "vector") if router is not None else {"bytes": onb}
        sram = (("vector", onb, 0),) + ((r.pop("level_sram"),) if "level_sram" in r else ())
        last_store = b.add("store", "writeback", li, (cp,), buf="vector", free=(("vector", onb),), sram=sram, **r)
    return last_store


# Top-level architecture fields no mapper reads (the DRAM channel only
# through LayerTiler.choose_by_estimate, which records its choices).
NOT_MAPPING = {"description", "source", "clock_mhz", "energy", "dram"}


class TileCache:
    """The last few tile graphs, reused for architectures that map the
    workload the same way: a design-space study varies DRAM bandwidth,
    clock or energy table at a fixed array and buffers, and those points
    share one graph. The key is the layers (names, shapes, formats) and
    every architecture field a mapper may read except the DRAM channel; a
    graph whose mapper chose a loop order on the channel
    (choose_by_estimate) is reused only where every such choice comes out
    the same on the new channel. The engine never modifies a graph, so a
    hit is exactly the graph tile() would build."""

    def __init__(self, size: int = 2):
        self.size = size
        self._graphs: OrderedDict = OrderedDict()
        self.hits = self.misses = 0

    @staticmethod
    def _keys(layers, arch: ArchSpec):
        lk = tuple((L.name,) + _layer_shape(L) for L in layers) + tuple(
            (o.name, o.op, o.elems, o.in_elems, o.window, o.inputs, o.output) for o in getattr(layers, "vector_ops", ())) \
            + tuple((n, i.elems, i.bits, i.level) for n, i in getattr(layers, "tensors", {}).items() if i.persistent
                    or i.bits is not None)
        dump = arch.model_dump(mode="json")
        return lk, json.dumps({k: v for k, v in dump.items() if k not in NOT_MAPPING}, sort_keys=True)

    def tile(self, layers: list[LayerSpec], arch: ArchSpec) -> TileGraph:
        key = self._keys(layers, arch)
        hit = self._graphs.get(key)
        if hit is not None and all(_cheapest(counts, arch.dram) == chosen
                                   for counts, chosen in hit.graph["dram_choices"]):
            self._graphs.move_to_end(key)
            self.hits += 1
            return hit
        self.misses += 1
        g = tile(layers, arch)
        self._graphs[key] = g
        self._graphs.move_to_end(key)
        while len(self._graphs) > self.size:
            self._graphs.popitem(last=False)
        return g
