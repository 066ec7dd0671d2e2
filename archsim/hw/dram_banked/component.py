"""The banked DRAM as a SimPy component of a run (`kind: banked_dram`).

Concurrent transfers (the weight, input, write-back and codebook queues) share
the channels as in the pipe (archsim/hw/dram.py: a fluid processor-sharing
model, one event per transfer plus a timer per arrival or completion), but at
the rate the banked controller achieves for what is in flight right now:

    rate of each of the k transfers in flight = peak * mix / sum_i(1 / eff_i)

eff_i is transfer i's efficiency alone (achieved / peak bandwidth of a stream
with its access pattern: sequential, or rows of R bytes every S bytes), and
mix the efficiency of the streams in flight interleaved (r read and w write
streams, each sequential in its own region, so they conflict in banks and pay
read/write turnaround) over that of one sequential stream of the same
direction. Both come from replaying such streams on the command-level
controller (controller.py) once per DRAM spec and pattern (512 bursts a
stream, the middle half measured). So a stream's rate follows from the
timings: bank groups (tCCD_L), row misses, read/write turnaround, queue
depth, with no burst simulated here. Refresh is left out of the rate: on
the controller, rank-staggered refresh moves a 1 MiB sequential read by
-2.5% (DDR4-3200) to +2.7% (DDR4-2400), as the controller serves the other
rank meanwhile; refresh commands and their energy are counted (stats()).

A read's data arrives `latency_cycles` (a row miss: tRP + tRCD + CL + tBURST)
after its bytes have crossed the bus. Cycles here are accelerator cycles: one
DRAM clock is `spec.ratio` of them."""
from __future__ import annotations

import math

import simpy

from ..dram import _EPS, succeed_after  # the fluid bus's rounding tolerance and event finish
from ..registry import register
from .replay import replay, timing_of
from .spec import BankedDRAMSpec

_CAL_BURSTS = 512  # bursts per calibration stream: rows of several banks
_cal: dict = {}  # (spec json, key) -> (efficiency, row-hit rate, ACTs per burst)


def _region(t, i: int) -> int:
    """Base address of stream i: 1/16 of the memory apart, plus 3 rows, so
    that streams running side by side sit in other banks, bank groups or
    channels (not in lockstep on one)."""
    return (i * (t.capacity_bytes // 16) + i * 3 * t.row_bytes) % t.capacity_bytes


def _stream_lines(t, base: int, pattern, n: int):
    """n burst addresses of a stream from `base`: sequential (pattern None)
    or rows of `row` bytes every `stride` bytes."""
    lb = t.line_bytes
    if pattern is None:
        return [base + k * lb for k in range(n)]
    row, stride = pattern
    per = max(1, -(-row // lb))
    return [base + (k // per) * stride + (k % per) * lb for k in range(n)]


def calibrate(spec, reads: int, writes: int, pattern=None):
    """(efficiency, row-hit rate, ACTs per burst) of `reads` read and
    `writes` write streams with `pattern`, interleaved burst by burst, on the
    controller without refresh, offered as fast as its queues take them;
    efficiency = the data bus's busy share while the stream flows."""
    s = spec if isinstance(spec, BankedDRAMSpec) else BankedDRAMSpec.model_validate(spec)
    key = (s.model_dump_json(exclude={"clock_ratio", "source"}), reads, writes, pattern)
    hit = _cal.get(key)
    if hit is not None:
        return hit
    t = timing_of(s)
    streams = [(_stream_lines(t, _region(t, i), pattern, _CAL_BURSTS), i >= reads) for i in range(reads + writes)]
    reqs = []
    for k in range(_CAL_BURSTS):
        for lines, w in streams:
            reqs.append((lines[k], t.line_bytes, w, 0))
    r = replay(s, reqs, refresh=False, accept_per_cycle=t.channels * (reads + writes))
    c = r["commands"]
    out = _cal[key] = (r["bus_fraction"], r["row_hit_rate"], c["act"] / max(1, c["rd"] + c["wr"]))
    return out


@register("dram", "banked_dram")
class BankedDRAM:
    Spec = BankedDRAMSpec

    def __init__(self, env: simpy.Environment, spec: BankedDRAMSpec):
        self.env = env
        self.spec = spec
        self.t = t = timing_of(spec)
        self.ratio = spec.ratio
        self.peak = t.peak_bytes_per_cycle() / self.ratio  # bytes per accelerator cycle
        self.latency_cycles = spec.latency_cycles
        # event -> [bytes left, is_write, 1/eff, delay, start, bytes, ACTs]
        self._active: dict[simpy.Event, list] = {}
        self._inv = 0.0  # sum of 1/eff over the transfers in flight
        self._writes = 0  # write transfers in flight
        self._mixes: dict = {}  # (reads, writes) in flight -> mix
        self._t_last = 0
        self._gen = 0
        self._rate = 0.0
        self.busy_cycles = 0
        self.bytes_read = 0
        self.bytes_written = 0
        self.acts = 0.0
        self.bursts = [0, 0]  # read, write
        self.done: list[tuple] = []  # per transfer: (end cycle, bytes, is_write, bursts, ACTs, latency)
        self.on_change = None
        self._known: dict = {}  # calibrate() results of this spec

    def _calibrated(self, reads: int, writes: int, pattern=None):
        key = (reads, writes, pattern)
        hit = self._known.get(key)
        if hit is None:
            hit = self._known[key] = calibrate(self.spec, reads, writes, pattern)
        return hit

    # ---- the interface the engine uses (as DRAMChannel) ------------------
    def read(self, nbytes: int, addr=None, stream=None) -> simpy.Event:
        self.bytes_read += nbytes
        return self._start(nbytes, False, addr, self.latency_cycles)

    def transfer(self, nbytes: int, write: bool = False, addr=None, stream=None) -> simpy.Event:
        """`stream` (the DMA queue) needs no state here: without an address,
        each stream's transfers continue one another sequentially in a region
        of its own, which is how calibrate() lays streams out."""
        if write:
            self.bytes_written += nbytes
        else:
            self.bytes_read += nbytes
        return self._start(nbytes, write, addr, 0)

    @staticmethod
    def _pattern(addr):
        """The access pattern of a transfer: None (sequential) or (row
        bytes, stride) for a strided tile (base, row_bytes, stride, rows)."""
        if isinstance(addr, (tuple, list)):
            _, row, stride, rows = addr
            if rows > 1 and stride > row:
                return (int(row), int(stride))
        return None

    def _start(self, nbytes: int, write: bool, addr, delay: int) -> simpy.Event:
        ev = self.env.event()
        if nbytes <= 0:
            self._finish(ev, delay)
            return ev
        eff, _, acts = self._calibrated(int(not write), int(write), None if addr is None else self._pattern(addr))
        bursts = -(-nbytes // self.t.line_bytes)
        self.bursts[write] += bursts
        self.acts += bursts * acts
        self._advance()
        inv = 1.0 / eff
        self._active[ev] = [float(nbytes), write, inv, delay, self.env._now, nbytes, bursts * acts]
        self._inv += inv
        self._writes += write
        if self.on_change is not None:
            self.on_change(len(self._active))
        self._reschedule()
        return ev

    # ---- fluid sharing ---------------------------------------------------
    def _mix(self, n: int) -> float:
        """Efficiency of the streams in flight interleaved over that of one
        stream (1 for a single transfer)."""
        nw = self._writes
        key = (min(n - nw, 2), min(nw, 2))
        m = self._mixes.get(key)
        if m is None:
            nr, nw = key
            both = self._calibrated(nr, nw)[0]
            alone = self._calibrated(int(nr > 0), int(nr == 0))[0]
            # above 1 where streams in other bank groups fill each other's gaps
            m = self._mixes[key] = both / alone if nr + nw > 1 else 1.0
        return m

    def _advance(self):
        now = self.env._now
        dt = now - self._t_last
        if dt > 0 and self._active:
            self.busy_cycles += dt
            share = dt * self._rate
            for a in self._active.values():
                a[0] -= share
        self._t_last = now

    def _reschedule(self):
        self._gen += 1
        n = len(self._active)
        if not n:
            return
        self._rate = rate = self.peak * self._mix(n) / self._inv  # bytes per cycle, each transfer in flight
        rem = min(a[0] for a in self._active.values())
        dt = max(1, math.ceil(rem / rate - _EPS))
        self.env.timeout(dt, self._gen).callbacks.append(self._on_timer)

    def _on_timer(self, timer: simpy.Event):
        if timer.value != self._gen:
            return
        self._advance()
        n = len(self._active)
        tol = _EPS * max(1.0, self._rate)
        now = self.env._now
        for ev, a in list(self._active.items()):
            if a[0] <= tol:
                del self._active[ev]
                self._inv -= a[2]
                self._writes -= a[1]
                end = now + a[3]
                self.done.append((end, a[5], a[1], -(-a[5] // self.t.line_bytes), a[6], end - a[4]))
                self._finish(ev, a[3])
        if not self._active:
            self._inv = 0.0  # no drift from the float sums
        if self.on_change is not None and len(self._active) != n:
            self.on_change(len(self._active))
        self._reschedule()

    def _finish(self, ev: simpy.Event, delay: int):
        succeed_after(self.env, ev, delay)

    # ---- counters --------------------------------------------------------
    def stats(self, start: float = 0, end: float | None = None) -> dict:
        """Of the transfers done in [start, end) (accelerator cycles; default
        the whole run), e.g. a layer's window: row-hit rate, bytes per cycle
        and their share of the peak, mean read latency (issue to data),
        command counts and their energy (refresh and standby over the window)."""
        t = self.t
        end = self.env.now if end is None else end
        rd = wr = moved = 0
        acts = lat = reads = 0.0
        for e_, nb, w, bursts, a, latency in self.done:
            if start <= e_ < end or (e_ == end == self.env.now):
                moved += nb
                acts += a
                if w:
                    wr += bursts
                else:
                    rd += bursts
                    lat += latency
                    reads += 1
        span = max(0.0, end - start)
        dram_clocks = span / self.ratio
        refs = int(dram_clocks // t.refresh_interval) * t.channels
        cmds = {"act": round(acts), "pre": round(acts), "rd": rd, "wr": wr, "ref": refs}
        e = t.command_energy_pj()
        energy = {k: cmds[k] * e[k] for k in cmds}
        energy["standby"] = dram_clocks * t.ranks * t.channels * e["standby_per_cycle"]
        peak = t.peak_bytes_per_cycle() / self.ratio
        bw = moved / span if span else 0.0
        return {"row_hit_rate": 1 - acts / (rd + wr) if rd + wr else 0.0,
                "bytes_per_cycle": bw, "peak_bytes_per_cycle": peak, "bandwidth_fraction": bw / peak,
                "busy_bandwidth_fraction": (self.bytes_read + self.bytes_written) / (self.busy_cycles * peak)
                if self.busy_cycles else 0.0,
                "mean_read_latency_cycles": lat / reads if reads else 0.0,
                "commands": cmds, "energy_pj": energy}
