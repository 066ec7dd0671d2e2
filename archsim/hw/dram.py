"""DRAM channel: one bandwidth shared by every transfer in flight.

A fluid processor-sharing model driven by SimPy timeouts: n concurrent
transfers each progress at bandwidth/n bytes per cycle; on every arrival or
completion the next completion is rescheduled. Completion times are rounded
up to whole cycles. The fixed access latency is pipelined (it delays a
transfer's data, it does not occupy the bus)."""
from __future__ import annotations

import math

import simpy
from simpy.events import NORMAL

from .registry import register

_EPS = 1e-6


def replay(spec, requests, **options) -> dict:
    """Requests [(address, bytes, is_write, issue_cycle)] on a banked DRAM
    (`spec`: a banked_dram YAML block or a preset name), run alone; see
    archsim.hw.dram_banked.replay for the result and the options."""
    from .dram_banked.replay import replay as _replay

    return _replay(spec, requests, **options)


@register("dram", "dram")
class DRAMChannel:
    def __init__(self, env: simpy.Environment, spec):
        self.env = env
        self.bw = float(spec.bandwidth_bytes_per_cycle)
        self.latency_cycles = int(spec.latency_cycles)
        self._active: dict[simpy.Event, float] = {}
        self._delay: dict[simpy.Event, int] = {}  # reads: cycles from bus done to data arrived
        self._t_last = 0
        self._gen = 0
        self.busy_cycles = 0  # cycles with at least one transfer on the bus
        self.bytes_read = 0
        self.bytes_written = 0
        self.on_change = None  # called with the number of transfers in flight when it changes (timelines)

    def read(self, nbytes: int, addr=None, stream=None) -> simpy.Event:
        """Event that fires when a read's data has arrived: the bus transfer,
        then the access latency (one event, not a transfer and a timeout).
        `addr` and `stream` (where the bytes are, which DMA queue asks) do not
        matter to a pipe; the banked kind (dram_banked/) uses them."""
        self.bytes_read += nbytes
        return self._start(nbytes, self.latency_cycles)

    def transfer(self, nbytes: int, write: bool = False, addr=None, stream=None) -> simpy.Event:
        """Event that fires when `nbytes` have crossed the bus."""
        if write:
            self.bytes_written += nbytes
        else:
            self.bytes_read += nbytes
        return self._start(nbytes, 0)

    def _start(self, nbytes: int, delay: int) -> simpy.Event:
        ev = self.env.event()
        if nbytes <= 0:
            self._finish(ev, delay)
            return ev
        self._advance()
        self._active[ev] = float(nbytes)
        if delay:
            self._delay[ev] = delay
        if self.on_change is not None:
            self.on_change(len(self._active))
        self._reschedule()
        return ev

    def _advance(self):
        now = self.env.now
        dt = now - self._t_last
        if dt > 0 and self._active:
            self.busy_cycles += dt
            share = dt * self.bw / len(self._active)
            for ev in self._active:
                self._active[ev] -= share
        self._t_last = now

    def _reschedule(self):
        self._gen += 1
        if not self._active:
            return
        rem = min(self._active.values())
        dt = max(1, math.ceil(rem * len(self._active) / self.bw - _EPS))
        self.env.timeout(dt, self._gen).callbacks.append(self._on_timer)

    def _on_timer(self, timer: simpy.Event):
        if timer.value != self._gen:  # superseded by a later arrival or completion
            return
        self._advance()
        n = len(self._active)
        for ev, rem in list(self._active.items()):
            if rem <= _EPS:
                del self._active[ev]
                self._finish(ev, self._delay.pop(ev, 0))
        if self.on_change is not None and len(self._active) != n:
            self.on_change(len(self._active))
        self._reschedule()

    def _finish(self, ev: simpy.Event, delay: int):
        succeed_after(self.env, ev, delay)


def succeed_after(env: simpy.Environment, ev: simpy.Event, delay: int):
    """ev.succeed() `delay` cycles from now, without a Timeout event of its
    own (SimPy's Timeout sets the same fields): a transfer's data arrives the
    access latency after its bus time. Both DRAM kinds finish transfers so."""
    ev._ok, ev._value = True, None
    env.schedule(ev, NORMAL, delay)
