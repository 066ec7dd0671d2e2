"""Progress on stderr (tqdm): a bar over layers while tiling and while
compressing, a bar over design points in a sweep, and a spinner with the
elapsed time around steps that cannot report their own progress (tracing,
the SimPy run).

Shown only when stderr is a terminal and the user did not ask for quiet
(`--quiet`, or `set_quiet(True)` from Python). Nothing here touches stdout,
the results or their files, so progress never changes what a run produces.
"""
from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from typing import Iterable, Iterator

_quiet = False


def set_quiet(quiet: bool = True) -> None:
    """Turn every progress bar of this process off (or back on)."""
    global _quiet
    _quiet = quiet


def enabled() -> bool:
    if _quiet:
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def bar(iterable: Iterable | None = None, **kw):
    """tqdm on stderr, disabled when progress is off. Bars of inner steps
    vanish when done (leave=False) so only results stay on the screen."""
    from tqdm import tqdm

    kw.setdefault("leave", False)
    kw.setdefault("dynamic_ncols", True)
    return tqdm(iterable, file=sys.stderr, disable=not enabled(), **kw)


def write(line: str) -> None:
    """Print a line on stdout without tearing a bar drawn on stderr."""
    from tqdm import tqdm

    if enabled():
        tqdm.write(line, file=sys.stdout)
    else:
        print(line, flush=True)


class _CountingList(list):
    """A list that advances a bar as it is walked the first time: lets a
    bar follow a function that loops over the list (e.g. the tiler over
    layers) without the function knowing about progress."""

    def __init__(self, items, pbar):
        super().__init__(items)
        self._pbar = pbar
        self._walked = False

    def __iter__(self) -> Iterator:
        if self._walked:
            yield from super().__iter__()
            return
        self._walked = True
        for item in super().__iter__():
            yield item
            self._pbar.update(1)


@contextmanager
def over(items: list, desc: str, unit: str = "layer"):
    """`with over(layers, "tiling") as layers: tile(layers, arch)`: a bar over
    the items, advanced as the callee walks them."""
    with bar(total=len(items), desc=desc, unit=unit) as pbar:
        yield _CountingList(items, pbar) if enabled() else items


@contextmanager
def spinner(desc: str):
    """A bar without a total that keeps ticking (elapsed time) while the
    body runs, for a step that has no progress of its own to report."""
    if not enabled():
        yield
        return
    pbar = bar(total=None, desc=desc, bar_format="{desc}: {elapsed}")
    stop = threading.Event()

    def tick():
        while not stop.wait(0.25):
            pbar.refresh()

    t = threading.Thread(target=tick, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()
        pbar.close()
