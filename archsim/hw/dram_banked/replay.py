"""Replay a request list on the command-level controller: the check against
DRAMsim3, the timing properties and the calibration of the closed-form
component all go through here."""
from __future__ import annotations

from .controller import ACT, CMD_NAMES, PRE, RD, REF, WR, Channel
from .spec import spec_of
from .timing import Timing

_timings: dict = {}


def timing_of(spec) -> Timing:
    s = spec_of(spec)
    key = s.model_dump_json()
    t = _timings.get(key)
    if t is None:
        t = _timings[key] = Timing(s.resolved)
    return t


def expand(t: Timing, addr, nbytes: int):
    """(key, line) of every burst a request touches. `addr` is an int, or
    (base, row_bytes, stride, rows) for a strided tile (`nbytes` is then the
    tile's bytes and is spread over its rows). The key is the burst's first
    byte address (DRAMsim3 keys transactions by the address the request
    names: two 64-byte requests to one 128-byte burst are two transactions)."""
    if isinstance(addr, (tuple, list)):
        base, row_bytes, stride, rows = addr
        out = []
        for r in range(rows):
            out += expand(t, base + r * stride, row_bytes)
        return out
    first, last = addr >> t.shift, (addr + max(nbytes, 1) - 1) >> t.shift
    return [(max(addr, ln << t.shift), ln) for ln in range(first, last + 1)]


def replay(spec, requests, record: bool = False, refresh: bool = True, accept_per_cycle: int = 1) -> dict:
    """Run `requests` [(address, bytes, is_write, issue_cycle)] on the DRAM
    `spec` (a banked_dram YAML block, a spec or a preset name) and return:
    done_cycles (DRAM clock at which the last read's data has arrived and
    the last write has been taken by the write buffer: writes are posted, as
    in DRAMsim3, and those still buffered at the end are not issued), latencies (per request: done minus issue_cycle), row_hits
    and row_misses (column commands that found their row open / that needed
    an ACT first, as DRAMsim3 counts them), mean_read_latency (per read
    burst, from entering the controller to data back, DRAMsim3's
    `average_read_latency`), commands and energy_pj per command type.

    Requests enter in list order, at most `accept_per_cycle` bursts a cycle
    (1: DRAMsim3's trace front end), not before their issue_cycle, and wait
    while their queue is full. `bus_fraction`: the data buses' busy share in the
    middle half of the column commands (the streaming rate, without the
    first access's latency and the last one's return).
    `record` adds `log`: per channel the (cycle, command, bank or rank)
    issued; `refresh=False` leaves refresh out (the component's calibration)."""
    t = timing_of(spec)
    chans = [Channel(t, i) for i in range(t.channels)]
    if record:
        for ch in chans:
            ch.log = []
    lines = []  # (issue cycle, is_write, key, line, request)
    for i, (addr, nbytes, is_write, c0) in enumerate(requests):
        for key, ln in expand(t, addr, nbytes):
            lines.append((int(c0), bool(is_write), key, ln, i))
    n = len(lines)
    left = [0] * len(requests)
    for ln in lines:
        left[ln[4]] += 1
    done_at = [int(r[3]) for r in requests]
    read_lat = []
    outstanding = n

    def done(tr, cycle):
        nonlocal outstanding
        outstanding -= 1
        i = tr[5]
        if cycle > done_at[i]:
            done_at[i] = cycle
        if not tr[0]:
            read_lat.append(cycle - tr[6])

    clk, head, interval = 0, 0, t.refresh_interval if refresh else 1 << 62
    while outstanding:
        acted = False
        if clk and clk % interval == 0:
            for ch in chans:
                ch.ref_ranks.append(ch.next_ref_rank)
                ch.next_ref_rank = (ch.next_ref_rank + 1) % t.ranks
        for ch in chans:
            first = None
            if ch.ref_ranks:
                r = ch.refresh_command(clk)
                if r is not None:
                    ch.issue(r[1], r[0], clk)
                    first = r[1]
            if first is None:
                nc = ch.next_command(clk)
                if nc is not None:
                    ch.issue(nc[2], nc[0], clk, nc[1], done)
                    first = nc[2]
            if first is not None:
                acted = True
                if t.dual_issue and first != REF:
                    nc = ch.next_command(clk, rw_only=first not in (RD, WR))
                    if nc is not None:
                        ch.issue(nc[2], nc[0], clk, nc[1], done)
            if ch.schedule_transaction():
                acted = True
        for _ in range(accept_per_cycle):
            if head == n or lines[head][0] > clk:
                break
            c0, w, key, ln, i = lines[head]
            chn, bank, row, col = t.decode(ln)
            ch = chans[chn]
            q = ch.wq if w else ch.rq
            if len(q) >= t.trans_queue_size:
                break
            head += 1
            acted = True
            tr = [w, bank, row, col, key, i, clk + 1]
            if w:
                done(tr, clk + 1)  # posted
                if key not in ch.pending_wr:  # else merged with the queued write
                    ch.pending_wr.add(key)
                    q.append(tr)
            elif key in ch.pending_wr:  # served from the write buffer
                done(tr, clk + 1)
            else:
                waiting = ch.pending_rd.setdefault(key, [])
                waiting.append(tr)
                if len(waiting) == 1:
                    q.append(tr)
        if acted:
            clk += 1
            continue
        nxt = (clk // interval + 1) * interval
        for ch in chans:
            x = ch.next_time(clk)
            if x < nxt:
                nxt = x
        if head < n and clk < lines[head][0] < nxt:
            nxt = lines[head][0]
        if nxt == float("inf"):
            raise RuntimeError(f"DRAM controller stuck at cycle {clk} with {outstanding} bursts left")
        clk = nxt
    counts = {name: sum(ch.counts[k] for ch in chans) for k, name in enumerate(CMD_NAMES)}
    hits = sum(ch.row_hits for ch in chans)
    cols = sum(ch.col_cmds for ch in chans)
    done_cycles = max(done_at, default=0)
    e = t.command_energy_pj()
    energy = {name: counts[name] * e[name] for name in CMD_NAMES}
    energy["standby"] = done_cycles * t.ranks * t.channels * e["standby_per_cycle"]
    nbytes = n * t.line_bytes
    out = {"done_cycles": done_cycles, "latencies": [d - int(r[3]) for d, r in zip(done_at, requests)],
           "row_hits": hits, "row_misses": cols - hits, "row_hit_rate": hits / cols if cols else 0.0,
           "mean_read_latency": sum(read_lat) / len(read_lat) if read_lat else 0.0,
           "commands": counts, "energy_pj": energy, "bursts": n, "bytes": nbytes,
           "GBps": nbytes / (done_cycles * t.tCK_ns) if done_cycles else 0.0,
           "bandwidth_fraction": nbytes / (done_cycles * t.peak_bytes_per_cycle()) if done_cycles else 0.0,
           "bus_fraction": _bus_fraction(t, chans)}
    if record:
        out["log"] = [ch.log for ch in chans]
    return out


def _bus_fraction(t, chans) -> float:
    """Data-bus busy share over the middle half of the column commands (the
    steady stream, without its start and its tail)."""
    cyc = sorted(c for ch in chans for c in ch.col_cycles)
    lo, hi = len(cyc) // 4, 3 * len(cyc) // 4
    if hi - lo < 2 or cyc[hi] == cyc[lo]:
        return 0.0
    return (hi - lo) * t.burst / ((cyc[hi] - cyc[lo]) * t.channels)


__all__ = ["replay", "expand", "timing_of", "ACT", "RD", "WR", "PRE", "REF"]
