"""`kind: systolic`: the dense INT systolic array, weight-, input- or
output-stationary. Its timing equals SCALE-Sim's (tests/test_fidelity.py):
  ws / is : fold = 2*rows + cols + T - 2   (T = streamed length)
  os      : fold = K + rows + cols - 2     (K = reduction length)
always with the full array dimensions, whatever part of the array a fold
uses. A fold may be split into chunks along its streamed dimension (to fit
the buffers); the fill is charged to the first chunk and the drain to the
last, so the chunks of a fold add up to exactly the formula.

Loop nests (chosen so that PE compute cycles equal SCALE-Sim's):
  ws: for col fold (N) / row fold (K) / chunk of output pixels: stream.
      Weights stay in the array for a whole fold. Partial sums of a column
      fold stay in the output buffer across row folds when they fit. When
      they do not, psum_overflow decides: `spill` (SCALE-Sim's loop order)
      writes them to DRAM at acc_bits and reads them back; `tile_outputs`
      cuts the output pixels into blocks whose partial sums fit and runs every
      row fold per block, refilling the array each time; `auto` picks, per
      layer, the order the roofline estimate of a dry run says is faster
      (LayerTiler.choose_by_estimate).
  is: as ws with inputs stationary and weights streamed.
  os: for pixel fold (M) / col fold (N) / chunk of K: stream K; outputs
      accumulate in the PEs and leave once per fold.
Subclasses (e.g. the N:M sparse array) reuse the ws nest and change how many
reduction elements one row fold covers (`reduction_span`) and how many PE
rows that takes (`pe_rows`).
"""
from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, PositiveInt

from .pe_kind import Fold, PEKind, PESpec, register_pe_kind


class SystolicSpec(PESpec):
    kind: Literal["systolic"] = "systolic"
    dataflow: Literal["ws", "os", "is"] = "ws"
    weight_bits: PositiveInt = 8
    acc_bits: PositiveInt = 32
    psum_overflow: Literal["spill", "tile_outputs", "auto"] = Field(
        "auto", description="ws/is, when a column fold's partial sums exceed the output buffer: "
        "spill them to DRAM (SCALE-Sim's loop order), tile the outputs and refill the array per block, "
        "or auto: per layer, whichever the cost estimate says is faster")


@register_pe_kind("systolic")
class SystolicArray(PEKind):
    Spec = SystolicSpec

    weight_formats = {
        "dense": "INT MACs on the stored weights",
        "trunc": "the kept bits are a narrower INT weight: dense INT MACs",
        "vq": "the decoder rebuilds INT weights from the codebook, then dense INT MACs",
        "ssvq": "the decoder rebuilds signed weights (magnitude lookup + sign), then dense INT MACs",
        "mvq": "the loader rebuilds the weights with the pruned ones as zeros, then dense INT MACs",
        "aqlm": "the decoder rebuilds weights as sums of M codewords, then dense INT MACs",
        "lcvq": "the decoder rebuilds weights from the large (and residual) codebook, then dense INT MACs",
    }

    def __init__(self, spec, arch):
        super().__init__(spec, arch)
        self.dataflow = spec.dataflow
        self.acc_bits = spec.acc_bits

    def format_problem(self, fmt):
        if self.dataflow == "is" and fmt.decode_lookups(1) > 0:
            return "decoding compressed weights on an input-stationary array is not modelled", "pe_array.dataflow"
        return None

    # -- timing ---------------------------------------------------------------
    def fill_cycles(self) -> int:
        if self.dataflow == "os":
            return 0
        # stationary operand shifted in (rows) + input skew (rows - 1)
        return 2 * self.rows - 1

    def drain_cycles(self) -> int:
        if self.dataflow == "os":
            return self.rows + self.cols - 2
        return self.cols - 1

    def chunk_cycles(self, stream_len: int, first: bool, last: bool) -> int:
        return stream_len + (self.fill_cycles() if first else 0) + (self.drain_cycles() if last else 0)

    def fold_cycles(self, fold: Fold, fmt) -> int:
        return self.chunk_cycles(fold.stream_len, fold.first, fold.last)

    def fold_actions(self, fold: Fold, fmt) -> dict[str, int]:
        macs = fold.rows_used * fold.cols_used * fold.stream_len
        return {"pe_arith.mac": macs, "registers.mac": macs}

    # -- cost -----------------------------------------------------------------
    def _mac_pj(self, em, weight_bits=None) -> tuple[float, str]:
        # An array multiplier's energy grows with the product of its operand
        # widths (w x a full adders), an adder's with its width (Horowitz 45 nm).
        s, t = self.spec, em.table
        w = weight_bits or s.weight_bits
        mult = t.value("int8_mult", "pJ/op") * w * s.act_bits / 64
        add = t.value("int32_add", "pJ/op") * s.acc_bits / 32
        return mult + add, (f"int8_mult x{w}*{s.act_bits}/64 + int32_add x{s.acc_bits}/32 "
                            f"({em.src('int8_mult')}; {em.src('int32_add')})")

    def action_costs(self, em) -> dict[str, tuple[float, str]]:
        # Registers: every MAC moves an activation into the next PE and a
        # partial sum into an accumulator (act_bits + acc_bits flip-flops);
        # stationary weights are latched once per fold and not counted.
        s = self.spec
        reg = em.table.value("register_1b", "pJ/access")
        return {"pe_arith.mac": self._mac_pj(em),
                "registers.mac": (reg * (s.act_bits + s.acc_bits),
                                  f"register_1b x (act_bits + acc_bits) = x{s.act_bits + s.acc_bits} "
                                  f"({em.src('register_1b')})")}

    def register_bits(self) -> int:
        """Flip-flops per PE: its weight, activation and partial-sum registers."""
        s = self.spec
        return s.weight_bits + s.act_bits + s.acc_bits

    def pe_area_um2(self, em) -> float:
        s, t = self.spec, em.table
        return (t.area("int8_mult") * s.weight_bits * s.act_bits / 64 + t.area("int32_add") * s.acc_bits / 32
                + self.register_bits() * t.area("register_1b"))

    def area_um2(self, em) -> dict[str, tuple[float, str]]:
        return {"pe_array": (self.rows * self.cols * self.pe_area_um2(em), "logic")}

    # -- mapping --------------------------------------------------------------
    def reduction_span(self, t) -> int:
        """Reduction elements of the layer one row fold covers."""
        return self.rows

    def pe_rows(self, span_used: int, t) -> int:
        """PE rows that `span_used` reduction elements occupy."""
        return span_used

    def fold_at(self, t, g: int, r: int, c: int) -> None:
        """Called by the ws/is nest just before each compute node: the fold
        about to run is GEMM group g, row fold r (reduction elements
        [r*span, r*span + span)), column fold c (columns [c*cols, ...)).
        A no-op here; kinds whose fold timing depends on which weights the
        fold holds (e.g. SWIS's per-group shared bits) record it."""

    def fold_lanes(self, rows_used: int) -> tuple:
        """fidelity rows: the mean cycles per streamed step of each PE row of
        the fold about to run (after fold_at); () for one cycle per MAC row."""
        return ()

    def loop_order(self, t) -> str:
        return getattr(t, "loop_order", self.dataflow)

    def fold_estimate(self, layer) -> int:
        if self.dataflow == "os":
            return layer.groups * -(-layer.M // self.rows) * -(-layer.N // self.cols)
        if self.dataflow == "is":
            return self._stationary_fold_estimate(layer, layer.M, layer.N)
        return super().fold_estimate(layer)

    def map_layer(self, t):
        if self.dataflow == "os":
            return self._map_output_stationary(t)
        ws = self.dataflow == "ws"
        mode = self.spec.psum_overflow
        if mode == "auto":
            # the two orders differ only when a column fold's partial sums overflow
            mode = "spill" if self._psum_fits(t, ws) else t.choose_by_estimate(
                {m: (lambda dry, m=m: self._map_stationary(dry, ws, m)) for m in ("spill", "tile_outputs")})
        return self._map_stationary(t, ws, mode)

    def _psum_fits(self, t, weights_stationary: bool) -> bool:
        """Do a column fold's partial sums stay in the output buffer?"""
        L = t.layer
        span = self.reduction_span(t) if weights_stationary else self.rows
        S, ncol = (L.M, L.N) if weights_stationary else (L.N, L.M)
        return math.ceil(L.K / span) == 1 or t.psum_bytes(S * min(self.cols, ncol)) <= t.capacity["output"]

    def _map_stationary(self, t, weights_stationary: bool, psum_overflow: str):
        """ws (weights_stationary) and is. Returns the layer's last store node."""
        L = t.layer
        R, C = self.rows, self.cols
        Kred = L.K
        span = self.reduction_span(t) if weights_stationary else R
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
        psum_fits = self._psum_fits(t, weights_stationary)
        if not psum_fits and psum_overflow == "tile_outputs":
            # blocks of output chunks whose partial sums fit in the output buffer's
            # tile room; every block refills the array, so each stationary tile
            # costs a fill per block instead of a DRAM round trip per row fold
            per_blk = max(1, lim_out // t.psum_bytes(s_chunk * min(C, ncol)))
            s_per_load = min(s_per_load, per_blk)
            per_blk -= per_blk % s_per_load  # a streamed transfer never straddles two blocks
            blocks = [(b0, min(b0 + per_blk, n_s)) for b0 in range(0, n_s, per_blk)]
        else:
            blocks = [(0, n_s)]
        spill_psums = not psum_fits and len(blocks) == 1
        ahead_k = 2 if 2 * t.psum_bytes(s_chunk * min(C, ncol)) <= t.capacity["output"] else 1
        t.loop_order = (f"{self.dataflow}, partial sums " +
                        ("on chip" if psum_fits else "spilled" if spill_psums else f"in {len(blocks)} output blocks"))
        blk_len = s_per_load * s_chunk
        # resident if all its transfers (each rounded up to whole bytes) fit at once
        strm_total = sum(strm_bytes(min(blk_len, S - s0) * min(span, Kred - r * span))
                         for r in range(nr) for s0 in range(0, S, blk_len))
        strm_resident = strm_total <= t.capacity[strm_buf]
        last_store = None
        act_is_stat = stat_buf == "input"
        recent: list[int] = []  # the PE's last two compute nodes
        # hoisted out of the inner loop (it runs once per compute node)
        needs_decode, act_bytes, psum_bytes = t.needs_decode, t.act_bytes, t.psum_bytes
        fold_at = None if type(self).fold_at is SystolicArray.fold_at else self.fold_at
        rows_mode = self.spec.fidelity == "rows"

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
                            ld = t.load(stat_buf, nb, act_dep=act_is_stat)
                            if stat_resident:
                                stat_loads[(r0, r1)] = ld
                        for r in range(r0, r1):
                            ru = min(span, Kred - r * span)
                            prows = self.pe_rows(ru, t)
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
                                                    self.fold_lanes(prows) if rows_mode else ()), deps,
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

    def _map_output_stationary(self, t):
        L = t.layer
        R, C = self.rows, self.cols
        Kred, T, N = L.K, L.M, L.N
        nt, nc = math.ceil(T / R), math.ceil(N / C)
        lim_in, lim_w = t.limit["input"], t.limit["weight"]
        per_k = max(t.in_dram_bytes(R * 64) / 64, 1e-9), max(t.w_bytes(C * 64) / 64, 1e-9)
        k_chunk = min(Kred, int(lim_in // per_k[0]), int(lim_w // per_k[1]))
        if k_chunk < 1:
            t.too_small("input" if lim_in < per_k[0] else "weight", "one reduction step")
        if t.act_bytes(R * C) > t.limit["output"]:
            t.too_small("output", f"one {R}x{C} output tile")
        t.loop_order = "os"
        n_k = math.ceil(Kred / k_chunk)
        k_lens = [min(k_chunk, Kred - k * k_chunk) for k in range(n_k)]
        # resident if all its transfers (each rounded up to whole bytes) fit at once
        w_resident = sum(t.w_bytes(kl * min(C, N - c * C)) for c in range(nc) for kl in k_lens) \
            <= t.capacity["weight"]
        in_resident = sum(t.in_dram_bytes(R * kl) for kl in k_lens) <= t.capacity["input"]
        last_store = None
        recent: list[int] = []
        for g in range(L.groups):
            w_loads: dict[tuple[int, int], int] = {}
            w_last: dict[tuple[int, int], tuple[int, int]] = {}
            for ti in range(nt):
                tu = min(R, T - ti * R)
                in_loads: dict[int, int] = {}
                in_last: dict[int, tuple[int, int]] = {}
                for c in range(nc):
                    cu = min(C, N - c * C)
                    for k in range(n_k):
                        kl = k_lens[k]
                        # inputs
                        if in_resident and k in in_loads:
                            ild = in_loads[k]
                        else:
                            ild = t.load("input", t.in_dram_bytes(tu * kl), act_dep=True)
                            in_loads[k] = ild
                        # weights (a matmul's second operand is the previous layer's output)
                        wnb = t.w_bytes(kl * cu)
                        if w_resident and (c, k) in w_loads:
                            wld = w_loads[(c, k)]
                        else:
                            wld = t.load("weight", wnb, deps=(t.prev_store if L.op == "matmul" else None,))
                            w_loads[(c, k)] = wld
                        deps = [ild]
                        sram = [("input", t.act_bytes(tu * kl), 0)]
                        if t.needs_decode:
                            # decoded weights go straight to the array through a two-tile FIFO
                            deps.append(t.decode((wld, recent[-2] if len(recent) >= 2 else None), kl * cu, wnb))
                        else:
                            deps.append(wld)
                            sram.append(("weight", wnb, 0))
                        last = k == n_k - 1
                        alloc = (("output", t.act_bytes(tu * cu)),) if last else ()
                        cp = t.compute(Fold(tu, cu, kl, k == 0, last), deps, macs=tu * cu * kl,
                                       alloc=alloc, sram=tuple(sram))
                        recent.append(cp)
                        if len(recent) > 2:
                            recent.pop(0)
                        if in_resident:
                            in_last[k] = (cp, t.in_dram_bytes(tu * kl))
                        else:
                            t.free_later(cp, "input", t.in_dram_bytes(tu * kl))
                        if w_resident:
                            w_last[(c, k)] = (cp, wnb)
                        else:
                            t.free_later(cp, "weight", wnb)
                        if last:
                            onb = t.act_bytes(tu * cu)
                            last_store = t.store(onb, cp, free_psum=onb, sram_write=onb)
                for cp, nb in in_last.values():
                    t.free_later(cp, "input", nb)
            for cp, nb in w_last.values():
                t.free_later(cp, "weight", nb)
        return last_store
