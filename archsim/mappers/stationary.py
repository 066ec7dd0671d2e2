"""The weight- and input-stationary mapper of the systolic family (ws, is):
a plan (pure geometry: folds, streamed chunks, output blocks, residency)
and an emit step that walks it through the tiler. The datapath (a PE kind
of archsim/hw) keeps its timing, actions and area, and answers the few
questions the nest asks of it: `rows`, `cols`, `reduction_span(t)` (reduction
elements one row fold covers), `pe_rows(span_used, t)`, `fold_at(t, g, r, c)`
when `records_folds`, `fold_lanes(rows)` in row fidelity, and `spec`.

Loop nest (PE compute cycles equal SCALE-Sim's):
  for col fold (N) / row fold (K) / chunk of output pixels: stream.
  Stationary tiles stay in the array for a whole fold. Partial sums of a
  column fold stay in the output buffer across row folds when they fit;
  otherwise `spill` writes them to DRAM at accumulator width and reads them
  back (SCALE-Sim's order), and `tile_outputs` cuts the output pixels into
  blocks whose partial sums fit and runs every row fold per block,
  refilling the array each time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..hw.pe_kind import Fold


@dataclass(frozen=True)
class StationaryPlan:
    weights_stationary: bool
    stat_buf: str           # buffer of the stationary operand
    strm_buf: str           # buffer of the streamed operand
    S: int                  # streamed length (output pixels for ws)
    ncol: int               # columns mapped across the array
    K: int                  # reduction length
    span: int               # reduction elements one row fold covers
    nr: int                 # row folds
    nc: int                 # column folds
    s_chunk: int            # streamed rows per compute chunk (fits the buffers)
    n_s: int                # chunks per fold
    s_per_load: int         # chunks one streamed DMA transfer feeds
    blk_len: int            # streamed rows per transfer
    blocks: tuple           # (first chunk, end chunk) per output block
    spill_psums: bool       # partial sums go to DRAM and back between row folds
    ahead_k: int            # how far a partial-sum read-back may run ahead of the PEs
    strm_resident: bool     # the streamed operand is loaded once and kept
    lim_stat: int           # largest stationary transfer
    loop_order: str


def psum_fits(kind, t, weights_stationary: bool) -> bool:
    """Do a column fold's partial sums stay in the output buffer?"""
    L = t.layer
    span = kind.reduction_span(t) if weights_stationary else kind.rows
    S, ncol = (L.M, L.N) if weights_stationary else (L.N, L.M)
    return math.ceil(L.K / span) == 1 or t.psum_bytes(S * min(kind.cols, ncol)) <= t.capacity["output"]


def plan_stationary(kind, t, weights_stationary: bool, psum_overflow: str) -> StationaryPlan:
    """The geometry of the ws (weights_stationary) or is nest of one layer
    on `kind`'s array: folds, streamed chunks per DMA transfer, output
    blocks, what stays resident. Creates no node; raises when one tile does
    not fit its buffer."""
    L = t.layer
    R, C = kind.rows, kind.cols
    Kred = L.K
    span = kind.reduction_span(t) if weights_stationary else R
    if weights_stationary:
        S, ncol = L.M, L.N
        stat_buf, strm_buf = "weight", "input"
        stat_bytes, strm_bytes = t.w_bytes, t.in_dram_bytes
    else:
        S, ncol = L.N, L.M
        stat_buf, strm_buf = "input", "weight"
        stat_bytes, strm_bytes = t.in_dram_bytes, t.w_bytes
    nr, nc = math.ceil(Kred / span), math.ceil(ncol / C)
    lim_stat, lim_strm, lim_out = t.limit[stat_buf], t.limit[strm_buf], t.limit["output"]

    if stat_bytes(span * C) > lim_stat:
        t.too_small(stat_buf, f"one {R}x{C} stationary tile")
    per_s = max(strm_bytes(span * 64) / 64, 1e-9)  # bytes per streamed element row
    s_chunk = min(S, int(lim_strm // per_s), lim_out // t.psum_bytes(C))
    if s_chunk < 1:
        t.too_small("output" if lim_out < t.psum_bytes(C) else strm_buf, "one streamed row")
    n_s = math.ceil(S / s_chunk)
    s_per_load = max(1, int(lim_strm // max(strm_bytes(s_chunk * span), 1)))
    fits = psum_fits(kind, t, weights_stationary)
    if not fits and psum_overflow == "tile_outputs":
        # blocks of output chunks whose partial sums fit in the output buffer's
        # tile room; every block refills the array, so each stationary tile
        # costs a fill per block instead of a DRAM round trip per row fold
        per_blk = max(1, lim_out // t.psum_bytes(s_chunk * min(C, ncol)))
        s_per_load = min(s_per_load, per_blk)
        per_blk -= per_blk % s_per_load  # a streamed transfer never straddles two blocks
        blocks = [(b0, min(b0 + per_blk, n_s)) for b0 in range(0, n_s, per_blk)]
    else:
        blocks = [(0, n_s)]
    spill_psums = not fits and len(blocks) == 1
    ahead_k = 2 if 2 * t.psum_bytes(s_chunk * min(C, ncol)) <= t.capacity["output"] else 1
    loop_order = (f"{'ws' if weights_stationary else 'is'}, partial sums " +
                  ("on chip" if fits else "spilled" if spill_psums else f"in {len(blocks)} output blocks"))
    blk_len = s_per_load * s_chunk
    # resident if all its transfers (each rounded up to whole bytes) fit at once
    strm_total = sum(strm_bytes(min(blk_len, S - s0) * min(span, Kred - r * span))
                     for r in range(nr) for s0 in range(0, S, blk_len))
    strm_resident = strm_total <= t.capacity[strm_buf]
    return StationaryPlan(weights_stationary, stat_buf, strm_buf, S, ncol, Kred, span, nr, nc, s_chunk, n_s,
                          s_per_load, blk_len, tuple(blocks), spill_psums, ahead_k, strm_resident, lim_stat,
                          loop_order)


def emit_stationary(kind, t, p: StationaryPlan):
    """Walk the plan: create the layer's load / decode / compute / store
    nodes through the tiler `t`. Returns the layer's last store node."""
    L = t.layer
    C = kind.cols
    weights_stationary, stat_buf, strm_buf = p.weights_stationary, p.stat_buf, p.strm_buf
    S, ncol, Kred, span, nr, nc = p.S, p.ncol, p.K, p.span, p.nr, p.nc
    s_chunk, n_s, s_per_load, blk_len, blocks = p.s_chunk, p.n_s, p.s_per_load, p.blk_len, p.blocks
    spill_psums, ahead_k, strm_resident, lim_stat = p.spill_psums, p.ahead_k, p.strm_resident, p.lim_stat
    stat_bytes, strm_bytes = (t.w_bytes, t.in_dram_bytes) if weights_stationary else (t.in_dram_bytes, t.w_bytes)
    last_store = None
    act_is_stat = stat_buf == "input"
    recent: list[int] = []  # the PE's last two compute nodes
    # hoisted out of the inner loop (it runs once per compute node)
    needs_decode, act_bytes, psum_bytes = t.needs_decode, t.act_bytes, t.psum_bytes
    fold_at = kind.fold_at if kind.records_folds else None
    rows_mode = kind.spec.fidelity == "rows"
    # fidelity tile: the folds one weight transfer feeds are one node where nothing else separates
    # them: no decode between transfer and fold, no partial sums spilled, one streamed chunk
    coalesce = kind.spec.fidelity == "tile" and weights_stationary and not needs_decode and not spill_psums \
        and n_s == 1 and len(blocks) == 1 and fold_at is None

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
                    nb = stat_bytes(min(span, Kred - r1 * span) * cu)
                    if tot + nb > lim_stat and r1 > r0:
                        break
                    tot += nb
                    r1 += 1
                groups_r.append((r0, r1))
                r0 = r1
            # with several output blocks, the column fold's stationary tiles stay
            # in SRAM across blocks when they all fit
            stat_resident = len(blocks) > 1 and \
                sum(stat_bytes(min(span, Kred - r * span) * cu) for r in range(nr)) <= t.capacity[stat_buf]
            stat_loads: dict[tuple[int, int], int] = {}
            for bi, (b0, b1) in enumerate(blocks):
                free_stat = bi == len(blocks) - 1 or not stat_resident
                for (r0, r1) in groups_r:
                    nb = sum(stat_bytes(min(span, Kred - r * span) * cu) for r in range(r0, r1))
                    ld = stat_loads.get((r0, r1))
                    if ld is None:
                        # weights are stored output channel by output channel ([N][K], row-major):
                        # a group of row folds is cu rows of its reduction slice, one per channel
                        layout = (nb // cu, stat_bytes(Kred), cu) if weights_stationary and r1 - r0 < nr else None
                        ld = t.load(stat_buf, nb, act_dep=act_is_stat, rows=layout)
                        if stat_resident:
                            stat_loads[(r0, r1)] = ld
                    if coalesce and sum(strm_bytes(min(blk_len, S) * min(span, Kred - r * span))
                                        for r in range(r0, r1)) <= t.limit[strm_buf]:
                        last_store = _emit_group(kind, t, p, cu, r0, r1, ld, nb, recent, resident_loads,
                                                 resident_last_use, load_bytes, last_store)
                        continue
                    for r in range(r0, r1):
                        ru = min(span, Kred - r * span)
                        prows = kind.pe_rows(ru, t)
                        stat_tile = stat_bytes(ru * cu)
                        dec = t.decode((ld,), ru * cu, stat_tile) if needs_decode else None
                        stat_dep = ld if dec is None else dec
                        stat_sram = (stat_buf, stat_tile if weights_stationary else act_bytes(ru * cu), 0)
                        free_stat_here = r == r1 - 1 and dec is None and free_stat
                        for s in range(b0, b1):
                            s0 = s * s_chunk
                            sl = S - s0 if S - s0 < s_chunk else s_chunk
                            # streamed operand: one DMA transfer feeds several chunks
                            key = (r, s // s_per_load)
                            if s % s_per_load == 0 and not (strm_resident and key in resident_loads):
                                snb = strm_bytes(min(blk_len, S - s0) * ru)
                                sld = t.load(strm_buf, snb, act_dep=not act_is_stat)
                                resident_loads[key] = sld
                                load_bytes[sld] = snb
                            sld = resident_loads[key]
                            deps = [stat_dep, sld]
                            # partial sums
                            pnb = psum_bytes(sl * cu)
                            alloc = ()
                            if r == 0:
                                alloc = (("output", pnb),)
                            elif spill_psums:
                                # read back at most one tile ahead of the PEs (none ahead when the
                                # output buffer holds a single tile): a read-back that ran further
                                # ahead could fill the room the PEs' own partial sums need
                                ahead = recent[-ahead_k] if len(recent) >= ahead_k else None
                                deps.append(t.load("output", pnb, deps=(spill[s], ahead), unit="dma.output"))
                            first = s == b0
                            # the PEs read the im2col stream (ws) or the weight stream (is)
                            strm_read = act_bytes(sl * ru) if weights_stationary else strm_bytes(sl * ru)
                            if first and dec is None:
                                sram = ((strm_buf, strm_read, 0), ("output", pnb if r else 0, pnb), stat_sram)
                            else:
                                sram = ((strm_buf, strm_read, 0), ("output", pnb if r else 0, pnb))
                            if fold_at is not None:
                                fold_at(t, g, r, c)
                            cp = t.compute(Fold(prows, cu, sl, first, s == b1 - 1, not recent,
                                                kind.fold_lanes(prows) if rows_mode else ()), deps,
                                           macs=ru * cu * sl, alloc=alloc, sram=sram)
                            recent.append(cp)
                            if len(recent) > 2:
                                recent.pop(0)
                            # stationary room is free once the group's last tile is in the array
                            if free_stat_here and first:
                                t.free_later(cp, stat_buf, nb)
                            if strm_resident:
                                resident_last_use[key] = cp
                            elif s % s_per_load == s_per_load - 1 or s == n_s - 1:
                                t.free_later(cp, strm_buf, load_bytes[sld])
                            # write-back
                            if r == nr - 1:
                                last_store = t.store(act_bytes(sl * cu), cp, free_psum=pnb)
                            elif spill_psums:
                                spill[s] = t.store(pnb, cp, free_psum=pnb, psum=True)
                        if dec is not None and r == r1 - 1 and free_stat:
                            t.free_later(dec, stat_buf, nb)
        for key, cp in resident_last_use.items():
            t.free_later(cp, strm_buf, load_bytes[resident_loads[key]])
    return last_store



def _emit_group(kind, t, p: StationaryPlan, cu, r0, r1, ld, nb, recent, resident_loads, resident_last_use,
                load_bytes, last_store):
    """Fidelity tile: row folds r0..r1 of column fold c, fed by one weight
    transfer `ld` (of nb bytes) and one streamed chunk each, as one compute
    node (emit_stationary's per-fold nodes summed: same transfers, same
    cycles and actions). Returns the layer's last store so far."""
    span, Kred, S, nr = p.span, p.K, p.S, p.nr
    stat_bytes, strm_bytes = t.w_bytes, t.in_dram_bytes
    sl = S if S < p.s_chunk else p.s_chunk
    pnb = t.psum_bytes(sl * cu)
    folds, deps, sram, macs, loads = [], [ld], [], 0, []
    for r in range(r0, r1):
        ru = min(span, Kred - r * span)
        key = (r, 0)
        if not (p.strm_resident and key in resident_loads):
            snb = strm_bytes(min(p.blk_len, S) * ru)
            sld = t.load(p.strm_buf, snb, act_dep=True)
            resident_loads[key] = sld
            load_bytes[sld] = snb
        sld = resident_loads[key]
        deps.append(sld)
        loads.append((key, sld))
        folds.append(Fold(kind.pe_rows(ru, t), cu, sl, True, True, not recent and r == r0))
        macs += ru * cu * sl
        sram += [(p.strm_buf, t.act_bytes(sl * ru), 0), ("output", pnb if r else 0, pnb),
                 (p.stat_buf, stat_bytes(ru * cu), 0)]
    alloc = (("output", pnb),) if r0 == 0 else ()
    cp = t.compute_folds(folds, deps, macs=macs, alloc=alloc, sram=tuple(sram))
    recent.append(cp)
    if len(recent) > 2:
        recent.pop(0)
    t.free_later(cp, p.stat_buf, nb)
    for key, sld in loads:
        if p.strm_resident:
            resident_last_use[key] = cp
        else:
            t.free_later(cp, p.strm_buf, load_bytes[sld])
    if r1 == nr:
        last_store = t.store(t.act_bytes(sl * cu), cp, free_psum=pnb)
    return last_store
