"""A banked DRAM's geometry, command-to-command delays and address mapping,
derived from its spec the way DRAMsim3 derives them (configuration.cc,
timing.cc at commit 29817593). All delays are DRAM clocks."""
from __future__ import annotations

from .controller import ACT, PRE, RD, REF, WR

FIELDS = ("ch", "ra", "bg", "ba", "ro", "co")


def log2(n: int) -> int:
    return n.bit_length() - 1


class Timing:
    def __init__(self, s):
        p = dict(s.timing)
        self.protocol = s.protocol
        self.channels, self.ranks = s.channels, s.ranks
        self.bankgroups, self.banks_per_group = s.bankgroups, s.banks_per_group
        self.banks = s.bankgroups * s.banks_per_group  # per rank
        self.devices = s.bus_width // s.device_width
        self.line_bytes = s.bus_width // 8 * s.BL  # one burst = one request
        self.burst = s.BL // 2  # data cycles of a burst (DDR)
        self.tCK_ns = s.tCK_ns
        self.cmd_queue_size, self.trans_queue_size = s.cmd_queue_size, s.trans_queue_size
        self.closed_page = s.row_buffer_policy == "closed_page"
        self.dual_issue = bool(s.dual_command_issue)
        self.p = p
        self.energy = dict(s.power)
        for k, v in p.items():
            setattr(self, k, v)
        b = self.burst
        RL, WL = p["CL"], p["CWL"]
        self.read_delay, self.write_delay = RL + b, WL + b
        self.tRC = p["tRAS"] + p["tRP"]
        self.refresh_interval = p["tREFI"] // s.ranks  # rank-staggered
        r2r_l, r2r_s, r2r_o = max(b, p["tCCD_L"]), max(b, p["tCCD_S"]), b + p["tRTRS"]
        r2w = p["tRTW"] if p.get("tRTW") else RL + b - WL + p["tRTRS"]
        r2w_o = self.read_delay + b + p["tRTRS"] - self.write_delay
        w2r_l, w2r_s = self.write_delay + p["tWTR_L"], self.write_delay + p["tWTR_S"]
        w2r_o = self.write_delay + b + p["tRTRS"] - self.read_delay
        w2w_l, w2w_s, w2w_o = max(b, p["tCCD_L"]), max(b, p["tCCD_S"]), b
        r2p, w2p = p["tRTP"], WL + b + p["tWR"]
        self.r2w, self.w2r_s = r2w, w2r_s
        if self.bankgroups == 1:
            r2r_l, w2r_l, w2w_l = r2r_s, w2r_s, w2w_s
        rrd_l = p["tRRD_S"] if self.bankgroups == 1 else p["tRRD_L"]
        # (same bank, other banks of the group, other groups of the rank, other ranks)
        rules = {
            ACT: ([(ACT, self.tRC), (RD, p["tRCD"]), (WR, p["tRCD"]), (PRE, p["tRAS"])],
                  [(ACT, rrd_l)], [(ACT, p["tRRD_S"])], []),
            RD: ([(RD, r2r_l), (WR, r2w), (PRE, r2p)], [(RD, r2r_l), (WR, r2w)],
                 [(RD, r2r_s), (WR, r2w)], [(RD, r2r_o), (WR, r2w_o)]),
            WR: ([(RD, w2r_l), (WR, w2w_l), (PRE, w2p)], [(RD, w2r_l), (WR, w2w_l)],
                 [(RD, w2r_s), (WR, w2w_s)], [(RD, w2r_o), (WR, w2w_o)]),
            PRE: ([(ACT, p["tRP"]), (REF, p["tRP"])],
                  [(PRE, p["tPPD"])] if p.get("tPPD") else [],
                  [(PRE, p["tPPD"])] if p.get("tPPD") else [], []),
        }
        # closed page: read/write with auto-precharge (same bank: to ACT and REF)
        self.RDA, self.WRA = 5, 6
        rules[self.RDA] = ([(ACT, b + r2p + p["tRP"]), (REF, r2p + p["tRP"])],) + rules[RD][1:]
        rules[self.WRA] = ([(ACT, w2p + p["tRP"]), (REF, w2p + p["tRP"])],) + rules[WR][1:]
        self.same_rank_ref = [(ACT, p["tRFC"]), (REF, p["tRFC"])]
        # per command and issuing bank: every (bank, command type, delay) it constrains
        nb = self.ranks * self.banks
        self.scope = {}
        for cmd, (same, group, rank, other) in rules.items():
            per_bank = []
            for src in range(nb):
                sr, sg, _ = src // self.banks, (src % self.banks) // self.banks_per_group, src
                out = []
                for dst in range(nb):
                    dr, dg = dst // self.banks, (dst % self.banks) // self.banks_per_group
                    lst = same if dst == src else group if (dr == sr and dg == sg) else rank if dr == sr else other
                    out += [(dst, typ, d) for typ, d in lst]
                per_bank.append(out)
            self.scope[cmd] = per_bank
        # address mapping: fields listed most significant first
        widths = {"ch": log2(s.channels), "ra": log2(s.ranks), "bg": log2(s.bankgroups),
                  "ba": log2(s.banks_per_group), "ro": log2(s.rows), "co": log2(s.columns) - log2(s.BL)}
        self.shift = log2(self.line_bytes)
        pos, self.field = 0, {}
        m = s.address_mapping
        for tok in reversed([m[i:i + 2] for i in range(0, len(m), 2)]):
            self.field[tok] = (pos, (1 << widths[tok]) - 1)
            pos += widths[tok]
        self.row_bytes = (1 << widths["co"]) * self.line_bytes  # one bank's row (page) across the rank
        self.capacity_bytes = 1 << (pos + self.shift)

    def decode(self, line: int):
        """(channel, bank index in the channel, row, column) of a line number."""
        f = self.field
        g = lambda k: (line >> f[k][0]) & f[k][1]  # noqa: E731
        bank = (g("ra") * self.bankgroups + g("bg")) * self.banks_per_group + g("ba")
        return g("ch"), bank, g("ro"), g("co")

    def peak_bytes_per_cycle(self) -> float:
        """All channels' data buses busy: bytes per DRAM clock."""
        return self.channels * self.line_bytes / self.burst

    def command_energy_pj(self) -> dict:
        """Energy per command (pJ), IDD-based as DRAMsim3 InitPowerParams:
        VDD x (IDD above standby) x cycles x devices per rank, mW x ns = pJ."""
        e = self.energy
        n, ck = self.devices, self.tCK_ns
        return {
            "act": e["VDD"] * (e["IDD0"] * self.tRC - (e["IDD3N"] * self.tRAS + e["IDD2N"] * self.tRP)) * n * ck,
            "rd": e["VDD"] * (e["IDD4R"] - e["IDD3N"]) * self.burst * n * ck,
            "wr": e["VDD"] * (e["IDD4W"] - e["IDD3N"]) * self.burst * n * ck,
            "ref": e["VDD"] * (e["IDD5AB"] - e["IDD3N"]) * self.tRFC * n * ck,
            "pre": 0.0,  # in DRAMsim3's ACT energy (IDD0 over a whole tRC)
            "standby_per_cycle": e["VDD"] * e["IDD2N"] * n * ck,  # one rank, banks precharged
        }
