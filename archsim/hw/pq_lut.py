"""`kind: pq_lut`: the PQA lookup-table accelerator (AbouElhamayed et al.,
arXiv 2305.18334 / ACM TRETS 2024).

A PQ layer (archsim.ir.formats.PQFormat) has no weights: each input column of
K = C*kh*kw activations is cut into Ns = ceil(K/Ls) sub-vectors, each is
replaced by the index of its nearest of Np prototypes, and the output is the
sum over subspaces of LUT_s[idx_s][0..Cout). The datapath is a pipeline of
four stages joined by FIFOs (SimPy Stores of `fifo_depth` blocks), run for
every compute node (`execute`), so back-pressure and stalls come out of the
simulation:
  1. dist   distance/argmin unit: ns_vec subspaces at a time, each with
            ls_vec x np_vec lanes (L2 by default, L1 as an option):
            ceil(Ls/ls_vec) * ceil(Np/np_vec) cycles per subspace group;
  2. lut    LUT lookup in the banked LUT buffer (ns_vec banks, `lut_ports`
            read ports of `lut_port_entries` entries each per bank):
            ceil(Cout / (lut_ports * lut_port_entries)) cycles per group;
  3. adder  adder tree accumulating nout_vec outputs per cycle:
            ceil(Cout/nout_vec) cycles per group;
  4. out    write-out of Cout outputs at nout_vec per cycle.
A column needs G = ceil(Ns/ns_vec) subspace groups. With the paper's port
width (lut_port_entries = nout_vec, one port) the steady state per column is
PQA's model
    max(ceil(Ls/ls_vec)*ceil(Np/np_vec), ceil(Cout/nout_vec)) * ceil(Ns/ns_vec)
and a layer's compute is its output pixels times that, plus the pipeline's
fill and drain once per pass (a run of nodes with the same stage profile:
one LUT tile's columns, chunk after chunk): the first subspace group's
encoding, and a cycle each through the adder tree and the write-out
(`fill_drain_cycles`); PQA's model has neither. The simulation
moves blocks of `block_columns` columns per event (tiles, not cycles); the
block size changes no cycle count, only how finely FIFO stalls are seen.

Tables: the prototypes (Ns*Np*Ls entries at the format's proto_bits, plus
the two scales) go into the kind's prototype buffer (`proto_buffer_bytes`),
loaded once per layer (once per group where all groups do not fit); the
next layer's prototypes are prefetched while this layer runs where both
fit at once (`proto_double_buffered`). A group whose prototypes alone exceed
the buffer streams them in parts of whole ns_vec-subspace steps (half the
buffer each when double buffered, so the next part loads while one is in
use): every encoding pass of a column chunk runs one node per part, the
partial sums staying in the accumulators, and loads the parts again (the
DRAM cost of a too-small buffer). Only a buffer that cannot hold one
subspace's prototypes is refused (one line naming it). The LUT (Ns*Np*Cout entries at lut_bits) goes into the LUT
buffer, which is the architecture's `buffers.weight` (PQA folds the weights
into the LUT: there is nothing else to hold there); loading a LUT tile
overlaps the previous tile's computation when that buffer is double
buffered. A LUT larger than its tile room is tiled by output channels
(multiples of nout_vec where possible); then the first tile's pass keeps the
argmin indices (Ns * ceil(log2 Np) bits per column) in the input buffer and
the later tiles skip the distance unit for those columns; where not all
indices fit, those of as many leading column chunks as fit are kept and
the other chunks are encoded again by every tile (the loop order says how
many columns and what it costs). A table of which not even one tile fits
is a one-line ArchsimError naming the layer and the buffer field.

Only PQ layers run here: a dense layer or a matmul of two activations is
refused with a one-line error (PQA's pipeline has no multiplier array).

Energy: the kind prices its own actions from the energy table (distance lane
ops, argmin compares, prototype-buffer reads, adder-tree adds); LUT reads,
input reads and output writes are on-chip accesses of the generic buffers.
Area: distance lanes, comparators, adder tree and accumulators from the
table's adder / multiplier / register rows; the prototype buffer and the
extra periphery of ns_vec LUT banks (vs one array) from CACTI. The FIFOs
(a few blocks of indices / partial sums) are not priced.
"""
from __future__ import annotations

import math
from typing import Literal, Optional

import simpy
from pydantic import Field, PositiveInt, model_validator

from .pe_kind import Fold, PEKind, PESpec, register_pe_kind

STAGES = ("dist", "lut", "adder", "out")


class PQLutSpec(PESpec):
    kind: Literal["pq_lut"] = "pq_lut"
    # PESpec's rows x cols: here ns_vec x nout_vec (filled in; shown by `archsim validate`)
    rows: Optional[PositiveInt] = None
    cols: Optional[PositiveInt] = None
    ls_vec: PositiveInt = Field(4, description="sub-vector elements per distance step (PQA default 4)")
    np_vec: PositiveInt = Field(16, description="prototypes compared in parallel (PQA default 16)")
    ns_vec: PositiveInt = Field(16, description="subspaces in parallel = LUT banks (PQA default 16)")
    nout_vec: PositiveInt = Field(16, description="outputs accumulated per cycle (PQA default 16)")
    distance: Literal["l2", "l1"] = "l2"
    proto_bits: PositiveInt = Field(8, description="widest prototype entry the distance lanes take")
    lut_bits: PositiveInt = Field(16, description="widest LUT entry the adder tree takes")
    acc_bits: PositiveInt = 32
    lut_ports: PositiveInt = Field(1, description="read ports per LUT bank")
    lut_port_entries: Optional[PositiveInt] = Field(
        None, description="LUT entries one port reads per cycle (None: nout_vec, PQA's model)")
    fifo_depth: PositiveInt = Field(2, description="depth of each inter-stage FIFO, in blocks")
    block_columns: PositiveInt = Field(32, description="input columns per simulated block (one event per stage; "
                                       "no cycle count depends on it)")
    proto_buffer_bytes: PositiveInt = Field(32768, description="prototype buffer capacity")
    proto_double_buffered: bool = Field(True, description="prefetch the next layer's prototypes when both fit")

    @model_validator(mode="after")
    def _shape(self):
        if self.rows is None:
            self.rows = self.ns_vec
        if self.cols is None:
            self.cols = self.nout_vec
        return self


def _c(a: int, b: int) -> int:
    return -(-a // b)


@register_pe_kind("pq_lut")
class PQLutArray(PEKind):
    Spec = PQLutSpec
    weight_formats = {"pq": "activations encoded to their nearest prototypes, outputs summed from "
                            "lookup tables (no multiplier array)"}
    layers_independent = False  # a layer's prototype load waits on earlier layers' computes

    def __init__(self, spec, arch):
        super().__init__(spec, arch)
        s = spec
        self.acc_bits = s.acc_bits
        self.lut_rate = s.lut_ports * (s.lut_port_entries or s.nout_vec)
        self._layer_last_compute: dict[int, int] = {}
        self._layer_proto_bytes: dict[int, int] = {}

    # -- the closed forms -----------------------------------------------------
    def stage_cycles_per_column(self, Ls: int, Np: int, Ns: int, cout: int, encode: bool = True,
                                write_out: bool = True) -> tuple:
        """(dist, lut, adder, out) cycles one column spends in each stage.
        `write_out` False: a part of the subspaces whose sums stay in the
        accumulators for the next part (streamed prototypes)."""
        s = self.spec
        g = _c(Ns, s.ns_vec)
        dist = _c(Ls, s.ls_vec) * _c(Np, s.np_vec) * g if encode else 0
        return (dist, _c(cout, self.lut_rate) * g, _c(cout, s.nout_vec) * g,
                _c(cout, s.nout_vec) if write_out else 0)

    def cycles_per_column(self, Ls: int, Np: int, Ns: int, cout: int) -> int:
        """Steady state: the slowest stage (PQA's model with the default ports)."""
        return max(self.stage_cycles_per_column(Ls, Np, Ns, cout))

    def _blocks(self, n: int) -> list[int]:
        b = self.spec.block_columns
        return [b] * (n // b) + ([n % b] if n % b else [])

    def fill_drain_cycles(self, per: tuple, Ls: int, Np: int, cout: int) -> tuple[int, int]:
        """(fill, drain) of one pass through the pipeline whose per-column
        stage cycles are `per`. The distance unit hands over a subspace
        group's indices once its argmin is done (ceil(Ls/ls_vec) *
        ceil(Np/np_vec) cycles); LUT entries, sums and outputs stream on
        at one hop a cycle. So the fill is that first group's encoding
        (unless the distance unit is the slowest stage, which then starts at
        once), and the drain one cycle through the adder tree and one
        through the write-out, after the last group's LUT reads where the
        distance unit was the slowest stage."""
        s = self.spec
        slowest = max(range(3), key=lambda i: (per[i], -i))  # the first slowest of dist / lut / adder
        hops = 1 + (1 if per[3] else 0)  # adder tree, write-out (none for a part whose sums stay)
        if slowest == 0:
            return 0, _c(cout, self.lut_rate) + hops
        return (_c(Ls, s.ls_vec) * _c(Np, s.np_vec) if per[0] else 0), hops

    def fold_cycles(self, fold: Fold, fmt) -> int:
        """Closed form of one node in steady state: its columns at the
        slowest stage's pace (what `execute` gives with any FIFO depth: the
        stage times are constant). The pass's fill and drain are added to
        its first and last node by `map_layer` (node "pq_fill_drain")."""
        per = self.stage_cycles_per_column(fmt.Ls, fmt.Np, fold.rows_used, fold.cols_used, fold.first, fold.last)
        return max(per) * fold.stream_len

    def fold_actions(self, fold: Fold, fmt) -> dict[str, int]:
        Ns, cu, n = fold.rows_used, fold.cols_used, fold.stream_len
        a = {"pq_adder.add": n * Ns * cu}
        if fold.first:  # this pass encodes its columns
            a["pq_dist.op"] = n * Ns * fmt.Np * fmt.Ls
            a["pq_argmin.cmp"] = n * Ns * (fmt.Np - 1)
            # with Ns <= ns_vec the prototypes stay in the lanes for the whole node;
            # otherwise every column reads them all again
            reads = _c(Ns * fmt.Np * fmt.Ls * fmt.proto_bits, 64)
            a["pq_proto.read"] = reads if Ns <= self.spec.ns_vec else n * reads
        return a

    @property
    def peak_macs_per_cycle(self) -> int:
        # equivalent MACs: each LUT entry added stands for Ls MACs; stated at
        # PQA's Ls = 9 (the adder tree adds ns_vec x nout_vec entries a cycle)
        return self.spec.ns_vec * self.spec.nout_vec * 9

    # -- simulation: the pipeline ---------------------------------------------
    def execute(self, env, node):
        """Run one compute node's columns through dist -> lut -> adder -> out,
        block by block, the stages joined by Stores of fifo_depth blocks.
        The pipeline runs across the nodes of a pass: the first node waits
        for the fill and the last for the drain (map_layer's
        "pq_fill_drain"); in between, each stage starts on a block its
        upstream finished in the previous block slot (one block already in
        each FIFO), so a node takes exactly its steady state, whatever
        `block_columns`. Returns per-stage busy / starved / blocked cycles
        for the layer stats."""
        per = node["pq_stage_cols"]
        fill, drain = node["pq_fill_drain"]
        blocks = self._blocks(node["fold"].stream_len)
        depth = self.spec.fifo_depth
        fifos = [simpy.Store(env, capacity=depth) for _ in range(len(STAGES) - 1)]
        for f in fifos:
            f.items.append(blocks[0])  # the pipeline is already running
        busy = [0] * len(STAGES)
        starved = [0] * len(STAGES)
        blocked = [0] * len(STAGES)

        def stage(i):
            for j, b in enumerate(blocks):
                if i > 0:
                    t = env.now
                    yield fifos[i - 1].get()
                    starved[i] += env.now - t
                if per[i]:
                    yield env.timeout(per[i] * b)
                    busy[i] += per[i] * b
                if i < len(STAGES) - 1 and j + 1 < len(blocks):
                    t = env.now
                    yield fifos[i].put(blocks[j + 1])
                    blocked[i] += env.now - t

        if fill:
            yield env.timeout(fill)
        procs = [env.process(stage(i)) for i in range(len(STAGES))]
        yield env.all_of(procs)
        if drain:
            yield env.timeout(drain)
        return {f"pe.{name}": (busy[i], starved[i], blocked[i]) for i, name in enumerate(STAGES)}

    # -- mapping ----------------------------------------------------------------
    def loads_own_side_data(self, layer) -> bool:
        return True

    def loop_order(self, t) -> str:
        return getattr(t, "loop_order", "")

    def tables(self, L, fmt) -> dict:
        """Sizes of one layer's tables (per group; Cout is the layer's own)."""
        Ns = _c(L.K, fmt.Ls)
        return {"Ns": Ns, "cout": L.N,
                "proto_bits": Ns * fmt.Np * fmt.Ls * fmt.proto_bits,
                "lut_bits_per_channel": Ns * fmt.Np * fmt.lut_bits,
                "scale_bits": 2 * fmt.scale_bits,
                "idx_bits_per_column": Ns * max(1, math.ceil(math.log2(fmt.Np))) if fmt.Np > 1 else Ns}

    def map_layer(self, t):
        L, fmt, s = t.layer, t.fmt, self.spec
        if t.li == 0:
            self._layer_last_compute, self._layer_proto_bytes = {}, {}
        if L.op == "matmul":
            t.refuse("a matmul of two activations has no lookup table; pq_lut runs PQ layers only",
                     "pe_array.kind")
        if fmt.proto_bits > s.proto_bits or fmt.lut_bits > s.lut_bits:
            t.refuse(f"tables of {fmt.proto_bits}-bit prototypes / {fmt.lut_bits}-bit LUT entries are wider "
                     f"than the datapath ({s.proto_bits} / {s.lut_bits})", "pe_array.lut_bits")
        tb = self.tables(L, fmt)
        Ns, cout, K, M = tb["Ns"], tb["cout"], L.K, L.M
        b = t.b

        # prototypes: all groups at once if they fit, else one group at a time,
        # else a group's subspaces in parts streamed through the buffer
        cap = s.proto_buffer_bytes
        proto_group = _c(tb["proto_bits"] + tb["scale_bits"], 8)
        parts = self._proto_parts(t, Ns, fmt, tb) if proto_group > cap else []
        proto_all = _c(L.groups * tb["proto_bits"] + tb["scale_bits"], 8)
        proto_per_group = proto_all > cap
        proto_nb = proto_group if proto_per_group else proto_all
        # the load waits until the buffer's previous occupant is done with it: the
        # previous layer's, unless both fit at once (prefetch, double buffering)
        prev_nb = self._layer_proto_bytes.get(t.li - 1, 0)
        back = 2 if s.proto_double_buffered and prev_nb + proto_nb <= cap and not proto_per_group else 1
        proto_wait = self._layer_last_compute.get(t.li - back)
        self._layer_proto_bytes[t.li] = cap if proto_per_group else proto_nb

        # LUT tiles by output channels
        lut_lim = t.limit["weight"]
        per_ch = tb["lut_bits_per_channel"]
        cu_max = min(cout, (lut_lim * 8) // per_ch)
        if cu_max < 1:
            raise self._too_small(t, f"one output channel of its LUT ({_c(per_ch, 8)} B) does not fit "
                                  f"({lut_lim} B{' per half' if self.arch.buffers.weight.double_buffered else ''})",
                                  "buffers.weight.capacity_bytes")
        if cu_max < cout and cu_max >= s.nout_vec:
            cu_max -= cu_max % s.nout_vec
        tiles = [(c0, min(cu_max, cout - c0)) for c0 in range(0, cout, cu_max)]

        # columns per compute node: bounded by the input and output buffers
        per_col_in = max(t.in_dram_bytes(64 * K) / 64, 1e-9)
        idx_col = tb["idx_bits_per_column"] / 8
        idx_total = math.ceil(M * idx_col)
        cap_in, lim_in = t.capacity["input"], t.limit["input"]
        keep_all = len(tiles) > 1 and idx_total + 2 * per_col_in <= cap_in
        if keep_all:
            lim_in = min(lim_in, int((cap_in - idx_total) // 2))
        elif len(tiles) > 1:  # not all indices fit: quarter-buffer chunks leave half for some
            lim_in = min(lim_in, cap_in // 4)
        s_chunk = min(M, int(lim_in // per_col_in), t.limit["output"] // t.act_bytes(cu_max))
        if s_chunk < 1:
            t.too_small("output" if t.limit["output"] < t.act_bytes(cu_max) else "input", "one input column")
        chunks = [(m0, min(s_chunk, M - m0)) for m0 in range(0, M, s_chunk)]
        # the chunks whose indices the later tiles reuse: all, or as many leading ones
        # as fit beside two chunks of input; the others are encoded again by every tile
        kept = set(range(len(chunks))) if keep_all else set()
        if len(tiles) > 1 and not keep_all:
            room = cap_in - 2 * max(t.in_dram_bytes(n * K) for _, n in chunks)
            for ci, (_, n) in enumerate(chunks):
                if room < math.ceil(n * idx_col):
                    break
                room -= math.ceil(n * idx_col)
                kept.add(ci)
            idx_total = sum(math.ceil(chunks[ci][1] * idx_col) for ci in kept)
        keep_idx = bool(kept)
        in_resident = sum(t.in_dram_bytes(n * K) for _, n in chunks) <= cap_in and not keep_idx
        re_cols = sum(n for ci, (_, n) in enumerate(chunks) if ci not in kept)
        t.loop_order = (f"pq: {len(tiles)} LUT tile(s) of <= {cu_max} ch, {len(chunks)} column chunk(s)"
                        + (", indices kept" if keep_all else "")
                        + (f", indices kept for {len(kept)} of {len(chunks)} chunks" if kept and not keep_all else "")
                        + (self._reencode_note(t, fmt, Ns, tiles, re_cols, in_resident)
                           if len(tiles) > 1 and re_cols else "")
                        + (f", prototypes streamed in {len(parts)} parts" if parts else ""))
        computes: list[int] = []
        # streamed prototypes: a part's load waits for the compute that used the
        # buffer room it takes (the previous part's, or the one before it when
        # two parts fit at once)
        proto_users: list[int] = []
        part_back = 2 if parts and s.proto_double_buffered and 2 * parts[0][2] <= cap else 1

        last_store = None
        proto_ld = last_cp = None
        for g in range(L.groups):
            if not parts and (proto_ld is None or proto_per_group):
                proto_ld = self._proto_load(t, proto_wait if proto_ld is None else last_cp, proto_nb)
            in_loads: dict[int, tuple[int, int]] = {}
            idx_keep: dict[int, int] = {}
            last_cp = None
            for ti, (c0, cu) in enumerate(tiles):
                lut_nb = _c(per_ch * cu, 8)
                lut_ld = t.load("weight", lut_nb)
                for ci, (m0, n) in enumerate(chunks):
                    encode = ti == 0 or ci not in kept
                    in_nb = t.in_dram_bytes(n * K)
                    onb = t.act_bytes(n * cu)
                    if encode:
                        if ci in in_loads:
                            ld = in_loads[ci][0]
                        else:
                            ld = t.load("input", in_nb, act_dep=True)
                            if in_resident:
                                in_loads[ci] = (ld, in_nb)
                            if keep_idx and ci == 0:
                                # room for all the group's indices is reserved with its first
                                # input load (reserving it chunk by chunk could deadlock
                                # against input prefetches); freed by its last compute
                                b.nodes[ld]["alloc"] = (("input", in_nb + idx_total),)
                    else:
                        ld = idx_keep[ci]
                    # one node, or with streamed prototypes one per part of the
                    # subspaces, the partial sums kept in the accumulators between parts
                    node_parts = parts if encode and parts else [(0, Ns, 0)]
                    cp = None
                    for pi, (s0, ns_p, p_nb) in enumerate(node_parts):
                        first_p, last_p = pi == 0, pi == len(node_parts) - 1
                        if not parts:
                            deps = [lut_ld, proto_ld, ld]
                        elif encode:
                            wait = proto_users[-part_back] if len(proto_users) >= part_back else proto_wait
                            deps = [lut_ld, self._proto_load(t, wait, p_nb), ld]
                        else:
                            deps = [lut_ld, ld]
                        if cp is not None:
                            deps.append(cp)
                        k_p = min(K, (s0 + ns_p) * fmt.Ls) - s0 * fmt.Ls  # this part's reduction
                        sram = [("weight", _c(n * ns_p * cu * fmt.lut_bits, 8), 0)]
                        if encode:
                            sram.append(("input", t.act_bytes(n * k_p), 0))
                            if ci in kept:  # the indices stay in the input buffer for the later tiles
                                sram.append(("input", 0, _c(n * ns_p * tb["idx_bits_per_column"] // Ns, 8)))
                        else:
                            sram.append(("input", _c(n * tb["idx_bits_per_column"], 8), 0))
                        if last_p:
                            sram.append(("output", 0, onb))
                        cp = t.compute(Fold(ns_p, cu, n, encode, last_p), deps, macs=n * cu * k_p,
                                       alloc=(("output", onb),) if first_p else (), sram=tuple(sram))
                        b.nodes[cp]["pq_stage_cols"] = self.stage_cycles_per_column(
                            fmt.Ls, fmt.Np, ns_p, cu, encode, last_p)
                        computes.append(cp)
                        if encode and parts:
                            proto_users.append(cp)
                    last_cp = cp
                    if encode and not in_resident:
                        t.free_later(cp, "input", in_nb)
                    if ci in kept and ti == 0:
                        idx_keep[ci] = cp
                    last_store = t.store(onb, cp, free_psum=onb)
                t.free_later(last_cp, "weight", lut_nb)
            for ld, nb in in_loads.values():
                t.free_later(last_cp, "input", nb)
            if keep_idx:
                t.free_later(last_cp, "input", idx_total)
        self._passes(b, computes, fmt)
        self._layer_last_compute[t.li] = last_cp
        return last_store

    def _passes(self, b, computes: list[int], fmt) -> None:
        """The pipeline fills once at the start of a pass and drains once at
        its end, not per node: a pass is a run of consecutive compute nodes
        with the same stage profile (one LUT tile's or prototype part's
        columns, chunk after chunk). Its first node gets the fill, its last
        the drain."""
        nodes = [b.nodes[v] for v in computes]
        for i, nd in enumerate(nodes):
            per = nd["pq_stage_cols"]
            fill, drain = self.fill_drain_cycles(per, fmt.Ls, fmt.Np, nd["fold"].cols_used)
            fill *= i == 0 or nodes[i - 1]["pq_stage_cols"] != per
            drain *= i == len(nodes) - 1 or nodes[i + 1]["pq_stage_cols"] != per
            nd["pq_fill_drain"] = (fill, drain)
            nd["cycles"] += fill + drain

    def _reencode_note(self, t, fmt, Ns: int, tiles, M: int, in_resident: bool) -> str:
        """Loop-order note for a tiled LUT whose indices do not all fit beside
        the input: what re-encoding `M` columns for every later tile costs
        (the steady-state cycles it adds where the distance unit becomes the
        slowest stage, and the input bytes read again)."""
        K = t.layer.K
        extra = sum(M * (max(self.stage_cycles_per_column(fmt.Ls, fmt.Np, Ns, cu, True))
                         - max(self.stage_cycles_per_column(fmt.Ls, fmt.Np, Ns, cu, False))) for _, cu in tiles[1:])
        again = (len(tiles) - 1) * t.in_dram_bytes(M * K)
        where = "input buffer" if in_resident else "DRAM"
        return f", {M:,} columns re-encoded per tile (+{extra:,} cycles, +{again:,} B read again from {where})"

    @staticmethod
    def _proto_load(t, wait, nbytes: int) -> int:
        """Prototypes (a layer's, a group's or a streamed part) from DRAM into
        the prototype buffer, once `wait` is done with the room they take."""
        return t.b.add("load", "dma.side", t.li, (wait,), bytes=nbytes, buf="proto",
                       actions=(("pq_proto.write", _c(nbytes * 8, 64)),))

    def _proto_parts(self, t, Ns: int, fmt, tb) -> list[tuple[int, int, int]]:
        """[(first subspace, subspaces, bytes)]: a group's prototypes cut into
        parts of whole distance-unit steps (ns_vec subspaces) that fit the
        prototype buffer, half of it where prefetching the next part is on;
        the scales travel with the first part."""
        s, cap = self.spec, self.spec.proto_buffer_bytes
        per_sub = fmt.Np * fmt.Ls * fmt.proto_bits
        fits = lambda room: (room * 8 - tb["scale_bits"]) // per_sub  # noqa: E731
        n = fits(cap // 2) if s.proto_double_buffered and fits(cap // 2) >= s.ns_vec else fits(cap)
        if n < 1:
            raise self._too_small(t, f"the prototypes of one subspace ({_c(per_sub + tb['scale_bits'], 8)} B) "
                                  f"do not fit ({cap} B)", "pe_array.proto_buffer_bytes")
        if n >= s.ns_vec:
            n -= n % s.ns_vec
        return [(s0, min(n, Ns - s0), _c(min(n, Ns - s0) * per_sub + (tb["scale_bits"] if s0 == 0 else 0), 8))
                for s0 in range(0, Ns, n)]

    def _too_small(self, t, what: str, field: str):
        from archsim.ir.errors import ArchsimError

        return ArchsimError(f"buffer too small for one tile of layer {t.layer.name}: {what}",
                            file=self.arch.path, field=field)

    # -- cost -----------------------------------------------------------------
    def _lane_pj_area(self, em) -> tuple[float, float, str]:
        t, s = em.table, self.spec
        acc = 24 / 32  # a sum of Ls squared 9-bit differences fits 24 bits
        if s.distance == "l2":
            pj = t.value("int8_add", "pJ/op") + t.value("int8_mult", "pJ/op") + t.value("int32_add", "pJ/op") * acc
            area = t.area("int8_add") + t.area("int8_mult") + t.area("int32_add") * acc
            src = "L2 lane: int8_add (difference) + int8_mult (square) + int32_add x24/32 (accumulate)"
        else:
            pj = 2 * t.value("int8_add", "pJ/op") + t.value("int32_add", "pJ/op") * acc
            area = 2 * t.area("int8_add") + t.area("int32_add") * acc
            src = "L1 lane: 2 x int8_add (difference, absolute value) + int32_add x24/32 (accumulate)"
        return pj, area, f"{src} ({em.src('int8_add')}; {em.src('int8_mult')}; {em.src('int32_add')})"

    def action_costs(self, em) -> dict[str, tuple[float, str]]:
        t, s = em.table, self.spec
        lane_pj, _, lane_src = self._lane_pj_area(em)
        add = t.value("int32_add", "pJ/op")
        pcap = s.proto_buffer_bytes
        return {
            "pq_dist.op": (lane_pj, lane_src),
            "pq_argmin.cmp": (add * 24 / 32, f"int32_add x24/32 ({em.src('int32_add')})"),
            "pq_adder.add": (add * s.acc_bits / 32, f"int32_add x{s.acc_bits}/32 ({em.src('int32_add')})"),
            "pq_proto.read": (em.sram_read_pj(pcap, 64), em.sram_src(pcap, 64, "read")),
            "pq_proto.write": (em.sram_write_pj(pcap, 64), em.sram_src(pcap, 64, "write")),
        }

    def area_um2(self, em) -> dict[str, tuple[float, str]]:
        t, s = em.table, self.spec
        _, lane_area, _ = self._lane_pj_area(em)
        reg = t.area("register_1b")
        lanes = s.ns_vec * s.np_vec * s.ls_vec
        dist = lanes * (lane_area + (8 + s.proto_bits) * reg)  # + activation and prototype registers
        argmin = s.ns_vec * s.np_vec * (t.area("int32_add") * 24 / 32 + 24 * reg)
        # the adder tree: ns_vec entries summed per output, into an accumulator
        adder = s.nout_vec * (s.ns_vec * t.area("int32_add") * s.acc_bits / 32 + s.acc_bits * reg)
        lut_cap = self.arch.buffers.weight.capacity_bytes
        banks = s.ns_vec * s.lut_ports
        bank_extra = max(0.0, banks * em.sram_area_um2(max(1, lut_cap // banks)) - em.sram_area_um2(lut_cap))
        return {"pq_dist": (dist + argmin, "logic"), "pq_adder": (adder, "logic"),
                "pq_proto": (em.sram_area_um2(s.proto_buffer_bytes), "sram"),
                "pq_lut_banks": (bank_extra, "sram")}
