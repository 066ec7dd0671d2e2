"""Command-level DRAM controller, structured as DRAMsim3's (umd-memsys/DRAMsim3
commit 29817593: controller.cc, command_queue.cc, channel_state.cc, timing.cc,
refresh.cc), so that the same requests meet the same queues and timing rules:

- per channel a read queue and a write buffer (`trans_queue_size` each); one
  transaction a cycle moves into a per-bank command queue (`cmd_queue_size`);
  writes drain in batches (when the buffer is full, or holds more than 8 and
  the command queues are empty), reads otherwise;
- FR-FCFS: the command queues are visited round-robin; in a queue the first
  command whose timing is met issues; a precharge that would close a row that
  later queued commands still hit waits, unless the row has served 4 hits;
- one command a cycle per channel (HBM: a row and a column command);
- JEDEC timing as command-to-command delays between the same bank, other banks
  of the bank group, other bank groups and other ranks, plus tFAW;
- rank-staggered all-bank refresh every tREFI/ranks cycles, which precharges
  the rank's open banks first and blocks its queues until REF issues.

Time advances cycle by cycle only while something can happen; idle stretches
are skipped to the next cycle at which a command's timing is met, a refresh
falls due or a request arrives (the result is the same as ticking every cycle).
All times are DRAM clocks (tCK)."""
from __future__ import annotations

ACT, RD, WR, PRE, REF = range(5)
CMD_NAMES = ("act", "rd", "wr", "pre", "ref")


class Channel:
    """One channel's queues, bank states and command counters."""

    def __init__(self, t, index: int):
        self.t = t
        self.index = index
        nb = t.ranks * t.banks
        self.nt = [[0, 0, 0, 0, 0] for _ in range(nb)]  # earliest cycle for ACT, RD, WR, PRE, REF
        self.open_row = [-1] * nb
        self.hits = [0] * nb
        self.cmdq = [[] for _ in range(nb)]
        self.rq: list = []  # transactions: [is_write, bank, row, col, line, req]
        self.wq: list = []
        self.pending_rd: dict[int, list] = {}
        self.pending_wr: set[int] = set()
        self.faw = [[] for _ in range(t.ranks)]
        self.q_idx = 0
        self.draining = 0
        self.ref_ranks: list[int] = []
        self.next_ref_rank = 0
        self.counts = [0, 0, 0, 0, 0]
        self.row_hits = 0
        self.col_cmds = 0
        self.queued = 0  # commands in the per-bank queues
        self.col_cycles: list[int] = []  # when each column command issued
        self.log = None  # list of (cycle, cmd, bank) when recording

    # ---- timing ------------------------------------------------------
    def _update(self, cmd: int, bank: int, clk: int):
        t = self.t
        nt = self.nt
        if cmd == REF:
            r0 = bank * t.banks
            for b in range(r0, r0 + t.banks):
                x = nt[b]
                for typ, d in t.same_rank_ref:
                    if clk + d > x[typ]:
                        x[typ] = clk + d
            return
        for b, typ, d in t.scope[cmd][bank]:
            if clk + d > nt[b][typ]:
                nt[b][typ] = clk + d

    def _faw_ok(self, rank: int, clk: int) -> bool:
        w = self.faw[rank]
        return not (len(w) >= 4 and clk < w[0])

    def _required(self, c) -> int:
        """The command a queued read/write needs next: ACT, PRE or itself."""
        row = self.open_row[c[1]]
        if row == -1:
            return ACT
        return (WR if c[0] else RD) if row == c[2] else PRE

    # ---- issue -------------------------------------------------------
    def _ready_in_queue(self, q: list, clk: int):
        """DRAMsim3 GetFirstReadyInQueue: (position, command) or None."""
        for i, c in enumerate(q):
            bank = c[1]
            need = self._required(c)
            if clk < self.nt[bank][need]:
                continue
            if need == ACT:
                if not self._faw_ok(bank // self.t.banks, clk):
                    continue
            elif need == PRE:
                if i > 0:  # an earlier command of this (per-bank) queue goes first
                    continue
                row = self.open_row[bank]
                if self.hits[bank] < 4 and any(x[2] == row for x in q):
                    continue
            elif need == WR and any(not x[0] and x[2] == c[2] and x[3] == c[3] for x in q[:i]):
                continue  # a read of the same column queued before this write
            return i, need
        return None

    def next_command(self, clk: int, rw_only=None):
        """DRAMsim3 GetCommandToIssue, round-robin over the bank queues.
        `rw_only` (HBM's second command): True for a column command only,
        False for a row command only."""
        n = len(self.cmdq)
        blocked = self.ref_ranks[0] if self.ref_ranks else -1
        per_rank = self.t.banks
        for _ in range(n):
            self.q_idx = (self.q_idx + 1) % n
            if self.q_idx // per_rank == blocked:
                continue
            q = self.cmdq[self.q_idx]
            if not q:
                continue
            found = self._ready_in_queue(q, clk)
            if found is None:
                continue
            i, need = found
            if rw_only is not None and (need in (RD, WR)) != rw_only:
                continue
            return self.q_idx, i, need
        return None

    def refresh_command(self, clk: int):
        """DRAMsim3 FinishRefresh: precharge an open bank of the rank that
        can be, or REF once every bank of it is ready."""
        rank = self.ref_ranks[0]
        per = self.t.banks
        ready = 0
        for b in range(rank * per, rank * per + per):
            need = PRE if self.open_row[b] != -1 else REF
            if clk < self.nt[b][need]:
                continue
            if need == PRE:
                return b, PRE
            ready += 1
        return (rank, REF) if ready == per else None

    def issue(self, cmd: int, where: int, clk: int, qpos: int = -1, done=None):
        """Apply a command: bank state, timing, counters; a column command
        leaves its queue, and a read reports its transactions to
        `done(tr, cycle of data back)`."""
        t = self.t
        self.counts[cmd] += 1
        if self.log is not None:
            self.log.append((clk, cmd, where))
        if cmd == REF:
            self.ref_ranks.pop(0)
            self._update(REF, where, clk)
            return
        bank = where
        if cmd == ACT:
            c = self.cmdq[bank][qpos]
            self.open_row[bank] = c[2]
            w = self.faw[bank // t.banks]
            if w and clk >= w[0]:
                w.pop(0)
            w.append(clk + t.tFAW)
        elif cmd == PRE:
            self.open_row[bank] = -1
            self.hits[bank] = 0
        else:
            c = self.cmdq[bank].pop(qpos)
            self.queued -= 1
            self.col_cmds += 1
            self.col_cycles.append(clk)
            if self.hits[bank]:
                self.row_hits += 1
            self.hits[bank] += 1
            if t.closed_page:
                cmd_t = t.RDA if cmd == RD else t.WRA
                self.open_row[bank] = -1
                self.hits[bank] = 0
                self.counts[PRE] += 1  # the auto-precharge
                self._update(cmd_t, bank, clk)
            else:
                self._update(cmd, bank, clk)
            if cmd == RD:
                for tr in self.pending_rd.pop(c[4], ()):
                    done(tr, clk + t.read_delay)
            else:  # writes are posted: done when the write buffer took them
                self.pending_wr.discard(c[4])
            return
        self._update(cmd, bank, clk)

    def schedule_transaction(self) -> bool:
        """DRAMsim3 ScheduleTransaction: move one transaction into its bank's
        command queue."""
        t = self.t
        if self.draining == 0 and (len(self.wq) >= t.trans_queue_size
                                   or (len(self.wq) > 8 and self.queued == 0)):
            self.draining = len(self.wq)
        q = self.wq if self.draining > 0 else self.rq
        for i, tr in enumerate(q):
            cq = self.cmdq[tr[1]]
            if len(cq) < t.cmd_queue_size:
                if tr[0]:
                    if tr[4] in self.pending_rd:  # read before write to the same line
                        self.draining = 0
                        return False
                    self.draining -= 1
                cq.append(tr)
                self.queued += 1
                del q[i]
                return True
        return False

    def next_time(self, clk: int) -> float:
        """Earliest cycle after `clk` at which a queued or refresh command's
        timing is met (inf when none is waiting)."""
        best = float("inf")
        nt = self.nt
        if self.ref_ranks:
            per = self.t.banks
            r = self.ref_ranks[0]
            for b in range(r * per, r * per + per):
                x = nt[b][PRE if self.open_row[b] != -1 else REF]
                if clk < x < best:
                    best = x
        for q in self.cmdq:
            for c in q:
                need = self._required(c)
                x = nt[c[1]][need]
                if need == ACT:
                    w = self.faw[c[1] // self.t.banks]
                    if len(w) >= 4 and w[0] > x:
                        x = w[0]
                if clk < x < best:
                    best = x
        return best
