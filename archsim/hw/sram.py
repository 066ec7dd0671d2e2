"""On-chip SRAM buffer with finite capacity, modelled like SimPy's Container:
the level is the number of bytes held. A producer reserves room before it
writes (`put`, blocks while the buffer is full); the last consumer of a tile
frees it (`get`). Double buffering is two tiles' room, so the next tile's
load overlaps the current tile's use."""
from __future__ import annotations

import simpy

from .registry import register


@register("buffer", "sram")
class SRAMBuffer(simpy.Container):
    def __init__(self, env: simpy.Environment, spec, name: str):
        super().__init__(env, capacity=spec.capacity_bytes, init=0)
        self.name = name
        self.spec = spec
        self.word_bytes = max(1, spec.word_bits // 8)
        self.peak_bytes = 0

    # The engine's fast paths. They keep SimPy's order of events exactly: a
    # reservation that fits (nobody queued ahead) still resumes its process
    # through the event queue, like a Put that succeeds at once, but without
    # building the Put; a free needs no Get event at all (nobody waits on it).
    def reserve(self, nbytes: int) -> simpy.Event:
        """The event to wait on for `nbytes` of room."""
        if self.put_queue or self._capacity - self._level < nbytes:
            return self.put(nbytes)
        self._level += nbytes
        if self._level > self.peak_bytes:
            self.peak_bytes = self._level
        ev = self._env.event()
        ev.succeed()  # scheduled now, as Put's own _do_put would
        return ev

    def release(self, nbytes: int):
        """Give `nbytes` back, waking reservations that now fit."""
        self._level -= nbytes
        if self.put_queue:
            self._trigger_put(None)

    def _do_put(self, event):
        ok = super()._do_put(event)
        if self._level > self.peak_bytes:
            self.peak_bytes = self._level
        return ok
