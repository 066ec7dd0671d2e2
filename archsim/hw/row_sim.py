"""Row-level fidelity (`pe_array.fidelity: rows`): the PE rows of a systolic or
bit-serial array as SimPy processes that talk through `simpy.Store`s.

Slow by design; it exists to hold the kinds' closed-form `fold_cycles` to an
independent simulation (tests/test_row_mode.py) and to show row-level stalls
(one Perfetto track per row). Granularity: one event group per row per
streamed step (a step = one input vector for ws / is and the bit-serial
kinds, one reduction element for os); the weight shift-in is simulated hop by
hop, one hop per cycle.

Structure (R rows, C columns):
  * `acts[r]`: the FIFO at row r's left edge (depth `row_fifo_depth`). The
    feeder puts, per step, this lane's cycles for the step (its work: 1 for
    a MAC row, N_g for a SWIS row, the activation's essential bits for a
    Pragmatic row, 0 for a row that holds no weights);
  * `down[r]`: row r -> row r+1 (depth `row_fifo_depth`): the partial sums
    (ws / is) or the streamed weights (os);
  * `shift[r]`: the stationary operand's shift-in chain into row r.
Every step is lock-step: a row does its own cycles and then waits for the
slowest lane of the step (a barrier all R rows reach); a step lasts at least
one cycle (the partial sums still move).

Clocks. A systolic (or bit-level pipelined) array is R rows doing the same
schedule one cycle apart. Each row process runs on its own skewed clock (row
r's local cycle = global cycle - r), on which the partial sum of a step is
handed down at the step's start and the lock-step barrier is causal; the
simulation clock is row 0's. So the row skew (R-1) and the column skew (C-1)
are the clocks' offsets: the fold's last chunk ends R-1 + C-1 cycles after
row 0's last step, and the trace draws row r's slices r cycles later.

Chunk boundaries. A chunk ends when row 0 has done its last step (the array
takes the next chunk's first vector in the next cycle); the fold's last
chunk ends when the drain is done. Per fold this equals the closed forms
(2*rows + cols + T - 2 for a dense ws / is fold, K + rows + cols - 2 for
os); the closed forms charge the R-1 skew to a fold's first chunk, row mode
to its last, so in a fold of several chunks (ws / is / bit-serial) the first
chunk is R-1 cycles shorter and the last R-1 longer (os: equal per chunk).

Weight register files (`weight_rf_entries` >= 2: EWS, MVQ): the next fold's
weights shift into the spare entry from the moment the current fold latched
its weights, so a fold other than the layer's first waits only for what is
left of that shift (never anything: a fold lasts at least R cycles).

Stores of any depth >= 1 give the same cycles here: in lock-step no row runs
ahead of its neighbour, so the depth only bounds the FIFOs (a put blocks on a
full FIFO and is counted as waiting for room).
"""
from __future__ import annotations

import numpy as np
import simpy


class RowArray:
    """The R PE rows of one array in one SimPy environment; they persist across
    the compute nodes of a simulation (a fold's chunks share the pipeline)."""

    def __init__(self, env: simpy.Environment, rows: int, cols: int, fifo_depth: int,
                 stationary: bool, weight_rf_entries: int = 1, trace=None):
        self.env, self.R, self.C = env, rows, cols
        self.stationary = stationary            # ws / is: a stationary operand shifts in per fold
        self.spare_entry = weight_rf_entries >= 2
        self.trace = trace                      # callable(track, name, start, end) or None
        self.acts = [simpy.Store(env, fifo_depth) for _ in range(rows)]
        self.down = [simpy.Store(env, fifo_depth) for _ in range(rows - 1)]
        self.shift = [simpy.Store(env, fifo_depth) for _ in range(rows)]
        self.busy = [0] * rows                  # MAC / lane cycles per row
        self.blocked = [0] * rows               # cycles a row waited for room in a FIFO
        self._arrived = 0
        self._step_end = env.event()
        self._steps_left = 0
        self._chunk_end = None
        self._latched = None                    # event: every row latched the shifted operand
        self._latched_rows = 0
        self._latched_at = None                 # when the current fold's weights were latched
        self._shift_span = None                 # trace: the last shift-in, [start, end) cycles
        self._open = [None] * rows              # trace: the slice each row is drawing
        for r in range(rows):
            env.process(self._row(r))
            env.process(self._shift_row(r))

    # -- the row processes --------------------------------------------------------
    def _row(self, r: int):
        env, R = self.env, self.R
        acts, up = self.acts[r], (self.down[r - 1] if r else None)
        below = self.down[r] if r < R - 1 else None
        t0 = -r                                 # row r's local clock at global cycle 0
        while True:
            need = yield acts.get()
            if up is not None:
                yield up.get()                  # the step's partial sum (os: streamed weight) from above
            t1 = env.now
            if below is not None:
                yield below.put(need)           # handed down at the step's start (skewed clocks)
            t2 = env.now
            self.blocked[r] += t2 - t1
            yield env.timeout(need if need > 1 else 1)
            self.busy[r] += need
            t3 = env.now
            ev = self._step_end
            self._arrived += 1
            if self._arrived == R:              # the slowest lane of the step: release every row
                self._arrived = 0
                self._step_end = env.event()
                ev.succeed()
                self._steps_left -= 1
                if self._steps_left == 0:
                    self._chunk_end.succeed()
            else:
                yield ev
            if self.trace is not None:                 # row r's local clock is r cycles behind
                self._draw_wait(r, t0 + r, t1 + r)
                self._draw(r, "wait room", t1 + r, t2 + r)
                self._draw(r, "busy" if need else "pass", t2 + r, t2 + r + max(1, need))
                self._draw(r, "lock-step wait", t3 + r, env.now + r)
            t0 = env.now

    def _shift_row(self, r: int):
        """The stationary operand's shift register, one row: a vector meant for
        a lower row moves down after one cycle; the row's own is latched."""
        env, below = self.env, (self.shift[r + 1] if r < self.R - 1 else None)
        while True:
            dest = yield self.shift[r].get()
            yield env.timeout(1)
            if dest == r:
                self._latched_rows += 1
                if self._latched_rows == self.R:
                    self._latched.succeed()
            else:
                yield below.put(dest)

    def _shift_in(self):
        """Shift the stationary operand in: the vector for the last row first,
        one vector per cycle; done when every row has latched its own."""
        env = self.env
        self._latched, self._latched_rows = env.event(), 0
        t0 = env.now
        for dest in range(self.R - 1, -1, -1):
            yield self.shift[0].put(dest)
            if dest:
                yield env.timeout(1)
        yield self._latched
        self._shift_span = (t0, env.now)

    # -- one compute node -----------------------------------------------------------
    def chunk(self, fold, lanes: np.ndarray):
        """Run one fold chunk; `lanes` is each row's cycles per step, [R]
        (the same every step) or [stream_len, R]. Returns the rows' cycles
        {'pe.rows': (busy, waiting: fill, skew, drain and lock-step, blocked
        on a full FIFO)} summed over rows."""
        env, R = self.env, self.R
        start, busy0, blocked0 = env.now, sum(self.busy), sum(self.blocked)
        if fold.first and self.stationary:
            if self.spare_entry and not fold.layer_first and self._latched_at is not None:
                left = self._latched_at + R - env.now   # the spare entry's shift, begun at the last latch
                if left > 0:
                    yield env.timeout(left)
            else:
                yield from self._shift_in()
            self._latched_at = env.now
        T = fold.stream_len
        self._steps_left, self._chunk_end = T, env.event()
        per_step = lanes.ndim == 1
        row = [int(v) for v in lanes] if per_step else None
        for t in range(T):
            if not per_step:
                row = [int(v) for v in lanes[t]]
            for r in range(R):
                yield self.acts[r].put(row[r])
        yield self._chunk_end
        if fold.last:
            yield env.timeout(R - 1 + self.C - 1)  # the last row's and the last column's clock offsets
        if self.trace is not None:
            self._flush()
        busy, blocked = sum(self.busy) - busy0, sum(self.blocked) - blocked0
        return {"pe.rows": (busy, R * (env.now - start) - busy - blocked, blocked)}

    # -- trace ------------------------------------------------------------------------
    def _draw_wait(self, r: int, start: int, end: int):
        """A wait for data, with the stationary operand's shift-in (global
        time, every row at once) cut out of it where it falls inside."""
        span = self._shift_span
        if span is None or span[1] <= start or span[0] >= end:
            self._draw(r, "wait data", start, end)
            return
        s0 = max(span[0], start)
        self._draw(r, "wait data", start, s0)
        self._draw(r, "weight shift-in", s0, span[1])
        self._draw(r, "wait data", span[1], end)

    def _draw(self, r: int, name: str, start: int, end: int):
        """Add [start, end) cycles to row r's track, merged with the slice it continues."""
        if end <= start:
            return
        cur = self._open[r]
        if cur is not None and cur[0] == name and cur[2] == start:
            cur[2] = end
            return
        if cur is not None:
            self.trace(r, *cur)
        self._open[r] = [name, start, end]

    def _flush(self):
        for r, cur in enumerate(self._open):
            if cur is not None:
                self.trace(r, *cur)
                self._open[r] = None


def lanes_of(fold, rows: int) -> np.ndarray:
    """Each row's cycles per step of `fold`: [rows], or [stream_len, rows] where
    a lane's mean is fractional (spread_steps). A row past rows_used holds no
    weights (0); a MAC array's rows take one cycle (Fold.lanes empty)."""
    means = fold.lanes or (1,) * fold.rows_used
    means = tuple(means) + (0,) * (rows - len(means))
    if all(float(m).is_integer() for m in means):
        return np.array(means, np.int64)
    spread = {m: spread_steps(m, fold.stream_len) for m in set(means)}
    return np.stack([spread[m] for m in means], axis=1)


def spread_steps(total_per_step: float, steps: int) -> np.ndarray:
    """Integer cycles of `steps` steps whose mean is `total_per_step`, rounded
    cumulatively (step j ends at ceil((j+1) x mean)): they add up to
    ceil(steps x mean), the closed form's rounding."""
    ends = np.ceil(np.arange(steps + 1) * total_per_step - 1e-6).astype(np.int64)
    return np.diff(ends)


def new_row_array(kind, env, trace=None) -> RowArray:
    """The rows of PE kind `kind` (its rows, columns, dataflow, FIFO depth and weight RF)."""
    s = kind.spec
    return RowArray(env, kind.rows, kind.cols, s.row_fifo_depth, stationary=getattr(kind, "dataflow", "ws") != "os",
                    weight_rf_entries=getattr(s, "weight_rf_entries", 1), trace=trace)


def row_array(kind, env) -> RowArray:
    """The RowArray of PE kind `kind` in `env` (one per simulation)."""
    held = getattr(kind, "_row_array", None)
    if held is not None and held.env is env:
        return held
    trace = None
    tl = getattr(kind, "timeline", None)
    if tl is not None:
        timeline = tl[0]
        for r in range(kind.rows):
            timeline.track(f"pe.row{r:02d}")  # rows listed top to bottom
        trace = lambda r, name, s, e: timeline.span(f"pe.row{r:02d}", name, s, e)
    kind._row_array = new_row_array(kind, env, trace)
    return kind._row_array


def run_folds(kind, folds, lanes=None, env=None, trace=None) -> list[int]:
    """Run fold chunks back to back on the kind's rows, nothing else in the
    way (no memory): each chunk's cycles. `lanes` (one per fold) overrides
    what the folds carry, e.g. real per-step lane data."""
    env = env or simpy.Environment()
    arr = new_row_array(kind, env, trace)
    out: list[int] = []

    def drive():
        for i, f in enumerate(folds):
            t0 = env.now
            yield from arr.chunk(f, lanes_of(f, kind.rows) if lanes is None else lanes[i])
            out.append(env.now - t0)

    env.process(drive())
    env.run()
    return out


def execute_rows(kind, env, node):
    """A compute node at row-level fidelity (PEKind.execute's `rows` branch)."""
    arr = row_array(kind, env)
    tl = getattr(kind, "timeline", None)
    keep = arr.trace
    if tl is not None and not tl[0].wants(tl[1][node["layer"]]):
        arr.trace = None                         # a layer the trace leaves out
    try:
        return (yield from arr.chunk(node["fold"], lanes_of(node["fold"], kind.rows)))
    finally:
        arr.trace = keep
