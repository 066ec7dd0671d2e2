"""Pause Python's cyclic garbage collector around allocation-heavy work.

Tiling builds tens of thousands of small dicts and the engine makes an event
object per wait, none of them in reference cycles: the cyclic collector would
only rescan them again and again (about a third of the time on ResNet-18)."""
from __future__ import annotations

import contextlib
import gc


@contextlib.contextmanager
def gc_paused():
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
