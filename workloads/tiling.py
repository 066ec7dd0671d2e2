"""Tile each LayerSpec for an architecture into one TileGraph
(a networkx.DiGraph of load / decode / compute / store operations).

Node attributes (the contract with archsim.engine):
  kind   load | decode | compute | store
  unit   the in-order queue that executes it: dma.weight, dma.input,
         dma.output (partial sums read back), dma.codebook, decoder, pe, writeback
  layer  index into graph.graph["layers"]
  bytes  DRAM bytes moved (load / store)
  alloc  ((buffer, bytes), ...) room reserved in on-chip buffers before it starts
  free   ((buffer, bytes), ...) room given back when it ends
  sram   ((buffer, read_bytes, write_bytes), ...) on-chip accesses it makes
  fold   (rows_used, cols_used, stream_len, first, last) for compute
  macs   useful multiply-accumulates (compute); lookups (decode); codewords (codebook load)
Edges are data dependencies. Nodes are numbered in program order; each unit
executes its nodes in that order, as the hardware's queues would.

Loop nests (chosen so that PE compute cycles equal SCALE-Sim's):
  ws: for col fold (N) / row fold (K) / chunk of output pixels: stream.
      Weights stay in the array for a whole fold. Partial sums of a column
      fold stay in the output buffer across row folds when they fit. When
      they do not, pe_array.psum_overflow decides: `spill` (SCALE-Sim's loop
      order) writes them to DRAM and reads them back (SCALE-Sim writes them
      out and never reads them back); `tile_outputs` cuts the output pixels
      into blocks whose partial sums fit and runs every row fold per block,
      refilling the array each time.
  is: as ws with inputs stationary and weights streamed.
  os: for pixel fold (M) / col fold (N) / chunk of K: stream K; outputs
      accumulate in the PEs and leave once per fold.
Tiles are at most half a buffer when it is double buffered. An operand that
fits in its whole buffer stays resident and is loaded once (the next layer's
prefetch then waits for room); otherwise it is re-loaded on every pass, as
SCALE-Sim's reference runs show.
Input DRAM traffic assumes on-chip im2col (a line buffer): a pass fetches the
raw input pixels once, not kh*kw times; the PEs still read the im2col stream
from the input SRAM.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx

from archsim.config import ArchSpec
from archsim.errors import ArchsimError

from .layer_spec import LayerSpec

TileGraph = nx.DiGraph


class _Builder:
    def __init__(self):
        self.nodes: list[dict] = []
        self.edges: list[tuple[int, int]] = []

    def add(self, kind, unit, layer, deps=(), **attrs) -> int:
        v = len(self.nodes)
        node = {"kind": kind, "unit": unit, "layer": layer, "alloc": (), "free": (), "sram": (), "bytes": 0}
        node.update(attrs)
        self.nodes.append(node)
        for d in deps:
            if d is not None:
                self.edges.append((d, v))
        return v

    def free_later(self, v: int, buf: str, nbytes: int):
        self.nodes[v]["free"] = self.nodes[v]["free"] + ((buf, nbytes),)

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


@dataclass
class _Ctx:
    """Everything the loop nests need about one layer on one architecture."""
    arch: ArchSpec
    layer: LayerSpec
    li: int
    prev_store: int | None  # last store of the previous layer: activations ready in DRAM
    codebook_load: int | None
    limit: dict  # buffer -> largest tile (bytes): half the buffer when double buffered
    capacity: dict  # buffer -> bytes: an operand this size stays resident

    @property
    def act_bits(self):
        return self.layer.act_bits

    def act_bytes(self, n: float) -> int:
        return math.ceil(n * self.act_bits / 8)

    def in_dram_bytes(self, n_im2col: float) -> int:
        # on-chip im2col: raw pixels are fetched once per pass, not kh*kw times
        L = self.layer
        ratio = 1.0
        if L.in_elems is not None:
            ratio = min(1.0, L.in_elems / (L.groups * L.M * L.K))
        return max(1, math.ceil(n_im2col * ratio * self.act_bits / 8))

    def w_bytes(self, n: int) -> int:
        if self.layer.op == "matmul":  # second operand is an activation
            return self.act_bytes(n)
        return max(1, self.layer.fmt.tile_bytes(n))

    @property
    def needs_decode(self) -> bool:
        return self.layer.op != "matmul" and self.layer.fmt.decode_lookups(1) > 0

    def psum_bytes(self, n: int) -> int:
        return math.ceil(n * self.arch.pe_array.acc_bits / 8)

    def too_small(self, buf: str, what: str):
        raise ArchsimError(f"buffer too small for one tile of layer {self.layer.name} ({what})",
                           file=self.arch.path, field=f"buffers.{buf}.capacity_bytes")


def _tile_stationary(b: _Builder, x: _Ctx, weights_stationary: bool) -> int:
    """ws (weights_stationary) and is. Returns the layer's last store node."""
    L, pe = x.layer, x.arch.pe_array
    R, C = pe.rows, pe.cols
    Kred = L.K
    if weights_stationary:
        S, ncol = L.M, L.N
        stat_buf, strm_buf = "weight", "input"
        stat_bytes, strm_bytes = x.w_bytes, x.in_dram_bytes
    else:
        if x.needs_decode:
            raise ArchsimError("decoding compressed weights on an input-stationary array is not modelled",
                               file=x.arch.path, field="pe_array.dataflow")
        S, ncol = L.N, L.M
        stat_buf, strm_buf = "input", "weight"
        stat_bytes, strm_bytes = x.in_dram_bytes, x.w_bytes
    nr, nc = math.ceil(Kred / R), math.ceil(ncol / C)
    lim_stat, lim_strm, lim_out = x.limit[stat_buf], x.limit[strm_buf], x.limit["output"]

    if stat_bytes(R * C) > lim_stat:
        x.too_small(stat_buf, f"one {R}x{C} stationary tile")
    per_s = max(strm_bytes(R * 64) / 64, 1e-9)  # bytes per streamed element row of R
    s_chunk = min(S, int(lim_strm // per_s), lim_out // x.psum_bytes(C))
    if s_chunk < 1:
        x.too_small("output" if lim_out < x.psum_bytes(C) else strm_buf, "one streamed row")
    n_s = math.ceil(S / s_chunk)
    s_per_load = max(1, int(lim_strm // max(strm_bytes(s_chunk * R), 1)))
    psum_fits = nr == 1 or x.psum_bytes(S * min(C, ncol)) <= x.capacity["output"]
    if not psum_fits and pe.psum_overflow == "tile_outputs":
        # blocks of output chunks whose partial sums fit in the output buffer's
        # tile room; every block refills the array, so each stationary tile
        # costs a fill per block instead of a DRAM round trip per row fold
        per_blk = max(1, lim_out // x.psum_bytes(s_chunk * min(C, ncol)))
        s_per_load = min(s_per_load, per_blk)
        per_blk -= per_blk % s_per_load  # a streamed transfer never straddles two blocks
        blocks = [(b0, min(b0 + per_blk, n_s)) for b0 in range(0, n_s, per_blk)]
    else:
        blocks = [(0, n_s)]
    spill_psums = not psum_fits and len(blocks) == 1
    blk_len = s_per_load * s_chunk
    # resident if all its transfers (each rounded up to whole bytes) fit at once
    strm_total = sum(strm_bytes(min(blk_len, S - s0) * min(R, Kred - r * R))
                     for r in range(nr) for s0 in range(0, S, blk_len))
    strm_resident = strm_total <= x.capacity[strm_buf]
    first_act_dep = x.prev_store
    last_store = None
    unit_stat, unit_strm = f"dma.{stat_buf}", f"dma.{strm_buf}"
    act_unit = "dma.input"
    pe_order: list[int] = []

    for g in range(L.groups):
        resident_loads: dict[tuple[int, int], int] = {}
        resident_last_use: dict[tuple[int, int], int] = {}
        load_bytes: dict[int, int] = {}
        for c in range(nc):
            if not strm_resident:
                resident_loads = {}
            cu = min(C, ncol - c * C)
            spill: dict[int, int] = {}  # chunk -> store node of its spilled partial sums
            # stationary tiles of this column fold, grouped into DMA transfers that fit
            groups_r: list[tuple[int, int]] = []
            r0 = 0
            while r0 < nr:
                r1, tot = r0, 0
                while r1 < nr:
                    ru = min(R, Kred - r1 * R)
                    nb = stat_bytes(ru * cu)
                    if tot + nb > lim_stat and r1 > r0:
                        break
                    tot += nb
                    r1 += 1
                groups_r.append((r0, r1))
                r0 = r1
            # with several output blocks, the column fold's stationary tiles stay
            # in SRAM across blocks when they all fit
            stat_resident = len(blocks) > 1 and \
                sum(stat_bytes(min(R, Kred - r * R) * cu) for r in range(nr)) <= x.capacity[stat_buf]
            stat_loads: dict[tuple[int, int], int] = {}
            for bi, (b0, b1) in enumerate(blocks):
                free_stat = bi == len(blocks) - 1 or not stat_resident
                for (r0, r1) in groups_r:
                    nb = sum(stat_bytes(min(R, Kred - r * R) * cu) for r in range(r0, r1))
                    ld = stat_loads.get((r0, r1))
                    if ld is None:
                        dep = first_act_dep if unit_stat == act_unit or L.op == "matmul" else None
                        ld = b.add("load", unit_stat, x.li, (dep,), bytes=nb, buf=stat_buf,
                                   alloc=((stat_buf, nb),), sram=((stat_buf, 0, nb),))
                        if dep is not None:
                            first_act_dep = None
                        if stat_resident:
                            stat_loads[(r0, r1)] = ld
                    for r in range(r0, r1):
                        ru = min(R, Kred - r * R)
                        stat_tile = stat_bytes(ru * cu)
                        dec = None
                        if x.needs_decode:
                            dec = b.add("decode", "decoder", x.li, (ld, x.codebook_load),
                                        lookups=L.fmt.decode_lookups(ru * cu),
                                        sram=(("weight", stat_tile, 0),))
                        for s in range(b0, b1):
                            s0 = s * s_chunk
                            sl = min(s_chunk, S - s0)
                            deps = [ld if dec is None else dec]
                            # streamed operand: one DMA transfer feeds several chunks
                            key = (r, s // s_per_load)
                            if s % s_per_load == 0 and not (strm_resident and key in resident_loads):
                                snb = strm_bytes(min(blk_len, S - s0) * ru)
                                dep = first_act_dep if unit_strm == act_unit or L.op == "matmul" else None
                                sld = b.add("load", unit_strm, x.li, (dep,), bytes=snb, buf=strm_buf,
                                            alloc=((strm_buf, snb),), sram=((strm_buf, 0, snb),))
                                if dep is not None:
                                    first_act_dep = None
                                resident_loads[key] = sld
                                load_bytes[sld] = snb
                            sld = resident_loads[key]
                            deps.append(sld)
                            # partial sums
                            pnb = x.psum_bytes(sl * cu)
                            alloc = ()
                            if r == 0:
                                alloc = (("output", pnb),)
                            elif spill_psums:
                                # read back at most one tile ahead of the PEs: a read-back that ran
                                # further ahead could fill the buffer that the PEs' own tiles need
                                ahead = pe_order[-2] if len(pe_order) >= 2 else None
                                deps.append(b.add("load", "dma.output", x.li, (spill[s], ahead), bytes=pnb,
                                                  buf="output", alloc=(("output", pnb),),
                                                  sram=(("output", 0, pnb),)))
                            first = s == b0
                            # the PEs read the im2col stream (ws) or the weight stream (is)
                            strm_read = x.act_bytes(sl * ru) if weights_stationary else x.w_bytes(sl * ru)
                            sram = [(strm_buf, strm_read, 0), ("output", pnb if r > 0 else 0, pnb)]
                            if first and dec is None:
                                stat_read = stat_tile if weights_stationary else x.act_bytes(ru * cu)
                                sram.append((stat_buf, stat_read, 0))
                            cp = b.add("compute", "pe", x.li, deps, alloc=alloc, sram=tuple(sram),
                                       fold=(ru, cu, sl, first, s == b1 - 1), macs=ru * cu * sl)
                            pe_order.append(cp)
                            # stationary room is free once the group's last tile is in the array
                            if r == r1 - 1 and first and dec is None and free_stat:
                                b.free_later(cp, stat_buf, nb)
                            if strm_resident:
                                resident_last_use[key] = cp
                            elif s % s_per_load == s_per_load - 1 or s == n_s - 1:
                                b.free_later(cp, strm_buf, load_bytes[sld])
                            # write-back
                            if r == nr - 1:
                                onb = x.act_bytes(sl * cu)
                                last_store = b.add("store", "writeback", x.li, (cp,), bytes=onb, buf="output",
                                                   free=(("output", pnb),), sram=(("output", pnb, 0),))
                            elif spill_psums:
                                spill[s] = b.add("store", "writeback", x.li, (cp,), bytes=pnb, buf="output",
                                                 free=(("output", pnb),), sram=(("output", pnb, 0),))
                        if dec is not None and r == r1 - 1 and free_stat:
                            b.free_later(dec, stat_buf, nb)
        for key, cp in resident_last_use.items():
            b.free_later(cp, strm_buf, load_bytes[resident_loads[key]])
    return last_store


def _tile_output_stationary(b: _Builder, x: _Ctx) -> int:
    L, pe = x.layer, x.arch.pe_array
    R, C = pe.rows, pe.cols
    Kred, T, N = L.K, L.M, L.N
    nt, nc = math.ceil(T / R), math.ceil(N / C)
    lim_in, lim_w = x.limit["input"], x.limit["weight"]
    per_k = max(x.in_dram_bytes(R * 64) / 64, 1e-9), max(x.w_bytes(C * 64) / 64, 1e-9)
    k_chunk = min(Kred, int(lim_in // per_k[0]), int(lim_w // per_k[1]))
    if k_chunk < 1:
        x.too_small("input" if lim_in < per_k[0] else "weight", "one reduction step")
    if x.act_bytes(R * C) > x.limit["output"]:
        x.too_small("output", f"one {R}x{C} output tile")
    n_k = math.ceil(Kred / k_chunk)
    k_lens = [min(k_chunk, Kred - k * k_chunk) for k in range(n_k)]
    # resident if all its transfers (each rounded up to whole bytes) fit at once
    w_resident = sum(x.w_bytes(kl * min(C, N - c * C)) for c in range(nc) for kl in k_lens) <= x.capacity["weight"]
    in_resident = sum(x.in_dram_bytes(R * kl) for kl in k_lens) <= x.capacity["input"]
    first_act_dep = x.prev_store
    last_store = None
    recent_computes: list[int] = []
    for g in range(L.groups):
        w_loads: dict[tuple[int, int], int] = {}
        w_last: dict[tuple[int, int], tuple[int, int]] = {}
        for t in range(nt):
            tu = min(R, T - t * R)
            in_loads: dict[int, int] = {}
            in_last: dict[int, tuple[int, int]] = {}
            for c in range(nc):
                cu = min(C, N - c * C)
                for k in range(n_k):
                    kl = min(k_chunk, Kred - k * k_chunk)
                    # inputs
                    if in_resident and k in in_loads:
                        ild = in_loads[k]
                    else:
                        inb = x.in_dram_bytes(tu * kl)
                        ild = b.add("load", "dma.input", x.li, (first_act_dep,), bytes=inb, buf="input",
                                    alloc=(("input", inb),), sram=(("input", 0, inb),))
                        first_act_dep = None
                        in_loads[k] = ild
                    # weights
                    wnb = x.w_bytes(kl * cu)
                    if w_resident and (c, k) in w_loads:
                        wld = w_loads[(c, k)]
                    else:
                        dep = x.prev_store if L.op == "matmul" else None
                        wld = b.add("load", "dma.weight", x.li, (dep,), bytes=wnb, buf="weight",
                                    alloc=(("weight", wnb),), sram=(("weight", 0, wnb),))
                        w_loads[(c, k)] = wld
                    deps = [ild]
                    sram = [("input", x.act_bytes(tu * kl), 0)]
                    if x.needs_decode:
                        # decoded weights go straight to the array through a two-tile FIFO
                        ddeps = [wld, x.codebook_load]
                        if len(recent_computes) >= 2:
                            ddeps.append(recent_computes[-2])
                        deps.append(b.add("decode", "decoder", x.li, ddeps,
                                          lookups=L.fmt.decode_lookups(kl * cu), sram=(("weight", wnb, 0),)))
                    else:
                        deps.append(wld)
                        sram.append(("weight", wnb, 0))
                    last = k == n_k - 1
                    alloc = (("output", x.act_bytes(tu * cu)),) if last else ()
                    cp = b.add("compute", "pe", x.li, deps, alloc=alloc, sram=tuple(sram),
                               fold=(tu, cu, kl, k == 0, last), macs=tu * cu * kl)
                    recent_computes.append(cp)
                    if len(recent_computes) > 2:
                        recent_computes.pop(0)
                    if in_resident:
                        in_last[k] = (cp, x.in_dram_bytes(tu * kl))
                    else:
                        b.free_later(cp, "input", x.in_dram_bytes(tu * kl))
                    if w_resident:
                        w_last[(c, k)] = (cp, wnb)
                    else:
                        b.free_later(cp, "weight", wnb)
                    if last:
                        onb = x.act_bytes(tu * cu)
                        last_store = b.add("store", "writeback", x.li, (cp,), bytes=onb, buf="output",
                                           free=(("output", onb),), sram=(("output", onb, onb),))
            for cp, nb in in_last.values():
                b.free_later(cp, "input", nb)
        for cp, nb in w_last.values():
            b.free_later(cp, "weight", nb)
    return last_store


def layer_summary(L: LayerSpec) -> dict:
    return {"name": L.name, "op": L.op, "M": L.M, "N": L.N, "K": L.K, "groups": L.groups,
            "macs": L.macs, "n_weights": L.n_weights if L.op != "matmul" else 0,
            "format": L.fmt.describe() if L.op != "matmul" else {"format": "activation"},
            "weight_storage_bits": L.fmt.storage_bits(L.n_weights) if L.op != "matmul" else 0}


def tile(layers: list[LayerSpec], arch: ArchSpec) -> TileGraph:
    """LayerSpecs + ArchSpec -> TileGraph (layers run in order; a layer's
    activation loads wait for the previous layer's last store)."""
    if not layers:
        raise ArchsimError("no layers to simulate", field="layers")
    bufs = arch.buffers
    names = ("weight", "input", "output")
    limit = {name: getattr(bufs, name).tile_limit_bytes for name in names}
    capacity = {name: getattr(bufs, name).capacity_bytes for name in names}
    b = _Builder()
    prev_store = None
    prev_decode_end = None
    for li, L in enumerate(layers):
        cb_load = None
        x = _Ctx(arch, L, li, prev_store, None, limit, capacity)
        if x.needs_decode:
            fmt = L.fmt
            if arch.codebook is None or arch.decoder is None:
                raise ArchsimError(f"layer {L.name} has {fmt.name} weights but the architecture has no "
                                   f"codebook buffer and decoder", file=arch.path, field="codebook")
            k, d = getattr(fmt, "k", 0), getattr(fmt, "d", 1)
            cbits = getattr(fmt, "codebook_bits", 8)
            if k > arch.codebook.entries:
                raise ArchsimError(f"buffer too small for one tile: layer {L.name} needs {k} codewords",
                                   file=arch.path, field="codebook.entries")
            if d * cbits > arch.codebook.width_bits:
                raise ArchsimError(f"buffer too small for one tile: layer {L.name} codeword is {d * cbits} bits",
                                   file=arch.path, field="codebook.width_bits")
            # one codebook at a time: the next layer's load waits for this layer's last decode
            cb_load = b.add("load", "dma.codebook", li, (prev_decode_end,), bytes=fmt.side_bytes(L.n_weights),
                            buf="codebook", codewords=k * getattr(fmt, "n_codebooks", 1))
            x.codebook_load = cb_load
        if arch.pe_array.dataflow == "os":
            prev_store = _tile_output_stationary(b, x)
        else:
            prev_store = _tile_stationary(b, x, weights_stationary=arch.pe_array.dataflow == "ws")
        if cb_load is not None:
            prev_decode_end = max(v for v in range(cb_load, len(b.nodes)) if b.nodes[v]["kind"] == "decode")
    g = b.graph()
    g.graph["layers"] = [layer_summary(L) for L in layers]
    g.graph["arch"] = arch.name
    return g
