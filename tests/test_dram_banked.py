"""The banked DRAM (archsim/hw/dram_banked/): against DRAMsim3, timing
invariants as properties, the YAML block, the closed loop and its energy."""
import csv
import sys
from pathlib import Path

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from archsim.config import load_arch
from archsim.energy import EnergyModel
from archsim.ir.errors import ArchsimError
from archsim.hw.dram import replay
from archsim.hw.dram_banked import BankedDRAM, BankedDRAMSpec
from archsim.hw.dram_banked.controller import ACT, PRE, RD, REF, WR
from archsim.hw.dram_banked.replay import timing_of

DATA = Path(__file__).parent / "data" / "dramsim3"
sys.path.insert(0, str(DATA))
from patterns import pattern  # noqa: E402

PRESET_OF = {"DDR4_8Gb_x16_3200.ini": "ddr4_3200", "DDR4_8Gb_x16_2400.ini": "ddr4_2400",
             "LPDDR4_8Gb_x16_2400.ini": "lpddr4_2400", "HBM2_8Gb_x128.ini": "hbm2"}
ROWS = [r for f in ("dramsim3_reference.csv", "dramsim3_patterns.csv") for r in csv.DictReader(open(DATA / f))]


@pytest.mark.parametrize("row", ROWS, ids=[f"{PRESET_OF[r['config']]}-{r['pattern']}" for r in ROWS])
def test_matches_dramsim3(row):
    """Completion within 10% and mean read latency within 20% of DRAMsim3."""
    r = replay(PRESET_OF[row["config"]], pattern(row["pattern"], int(row["bytes"])))
    ref = int(row["done_cycles"])
    assert abs(r["done_cycles"] / ref - 1) <= 0.10, (r["done_cycles"], ref)
    if row["mean_read_latency_cycles"]:
        lat = float(row["mean_read_latency_cycles"])
        assert abs(r["mean_read_latency"] / lat - 1) <= 0.20, (r["mean_read_latency"], lat)
    assert abs(r["row_hit_rate"] - float(row["row_hit_rate"])) <= 0.02


PRESETS = ["ddr4_3200", "ddr4_2400", "lpddr4_2400", "hbm2"]


@settings(max_examples=25, deadline=None)
@given(preset=st.sampled_from(PRESETS), policy=st.sampled_from(["open_page", "closed_page"]),
       line=st.integers(0, 1 << 20), gap=st.integers(0, 400))
def test_row_hit_never_slower_than_miss(preset, policy, line, gap):
    spec = {"preset": preset, "row_buffer_policy": policy}
    t = timing_of(spec)
    a = (line * t.line_bytes) % (t.capacity_bytes // 2)
    ch, bank, row, col = t.decode(a >> t.shift)
    # the same bank: another column of the open row, or the same column of the next row
    hit = next(x for x in range(a, a + t.row_bytes * 64, t.line_bytes)
               if x != a and t.decode(x >> t.shift)[:3] == (ch, bank, row))
    miss = next(x for x in range(a, t.capacity_bytes, t.line_bytes)
                if t.decode(x >> t.shift)[:2] == (ch, bank) and t.decode(x >> t.shift)[2] != row)
    lat = {}
    for name, b in (("hit", hit), ("miss", miss)):
        r = replay(spec, [(a, t.line_bytes, False, 0), (b, t.line_bytes, False, gap)])
        lat[name] = r["latencies"][1]
    assert lat["hit"] <= lat["miss"]


@settings(max_examples=10, deadline=None)
@given(preset=st.sampled_from(["ddr4_3200", "lpddr4_2400"]),
       lines=st.lists(st.integers(0, 1 << 16), min_size=1, max_size=60), seed=st.integers(0, 3))
def test_more_channels_or_banks_never_slower(preset, lines, seed):
    """The same requests on 2 channels finish no later than on 1; a sequential
    stream on 4 banks a group no later than on 2. Not for any requests on
    more banks: the added bank bit comes out of the row, so two requests that
    sat in different banks can land in one bank on different rows (two reads
    at 64 KiB and 96 KiB on DDR4-3200: 55 cycles on 2 banks a group, 61 on 4).
    Not ranks: a rank switch costs tRTRS, so two ranks can be a cycle slower
    than one bank group of the same rank."""
    reqs = [((ln * 64) % (1 << 28), 64, (ln + seed) % 5 == 0, 0) for ln in lines]
    few = replay({"preset": preset, "banks_per_group": 2}, reqs)["done_cycles"]
    more_channels = replay({"preset": preset, "banks_per_group": 2, "channels": 2}, reqs)["done_cycles"]
    assert more_channels <= few
    first = min(lines)
    seq = [((first + i) * 64, 64, False, 0) for i in range(len(lines))]
    assert replay({"preset": preset, "banks_per_group": 4}, seq)["done_cycles"] <= \
        replay({"preset": preset, "banks_per_group": 2}, seq)["done_cycles"]


@settings(max_examples=15, deadline=None)
@given(preset=st.sampled_from(PRESETS), lines=st.lists(st.integers(0, 1 << 18), min_size=5, max_size=150),
       wmask=st.integers(0, 2**16), stride=st.sampled_from([1, 7, 128, 1024]))
def test_commands_respect_bank_timing_and_bus(preset, lines, wmask, stride):
    t = timing_of(preset)
    reqs = [((ln * stride * t.line_bytes) % t.capacity_bytes, t.line_bytes, bool(wmask >> (i % 16) & 1), i // 4)
            for i, ln in enumerate(lines)]
    r = replay(preset, reqs, record=True)
    for log in r["log"]:
        last = {}  # bank -> {cmd: cycle}
        bursts = []
        for clk, cmd, where in log:
            if cmd == REF:
                continue
            b = last.setdefault(where, {})
            if cmd in (RD, WR):
                assert clk - b[ACT] >= t.tRCD
                start = clk + (t.CL if cmd == RD else t.CWL)
                bursts.append((start, start + t.burst))
            elif cmd == PRE:
                assert clk - b[ACT] >= t.tRAS
            elif cmd == ACT and PRE in b:
                assert clk - b[PRE] >= t.tRP
            b[cmd] = clk
        bursts.sort()
        for (s0, e0), (s1, _) in zip(bursts, bursts[1:]):
            assert s1 >= e0, "two bursts on the data bus at once"


def test_refresh_every_trefi():
    t = timing_of("ddr4_3200")
    reqs = [(i * 64, 64, i % 4 == 3, i * 6) for i in range(12000)]  # a stream over about 6 tREFI
    r = replay("ddr4_3200", reqs, record=True)
    refs = [(clk, rank) for clk, cmd, rank in r["log"][0] if cmd == REF]
    slack = t.tRC + t.CWL + t.burst + t.tWR + t.tRP  # the longest wait to precharge a bank
    assert len(refs) == r["done_cycles"] // t.refresh_interval
    for k, (clk, rank) in enumerate(refs):  # the k-th falls due at (k+1) tREFI/ranks, ranks in turn
        due = (k + 1) * t.refresh_interval
        assert rank == k % t.ranks and due <= clk <= due + slack
    for rank in range(t.ranks):
        times = [c for c, r_ in refs if r_ == rank]
        assert all(abs((b - a) - t.tREFI) <= slack for a, b in zip(times, times[1:]))


@pytest.mark.parametrize("override,field", [
    ("dram.timing.tRCD=0", "dram.timing.tRCD"),
    ("dram.timing.tRP=-2", "dram.timing.tRP"),
    ("dram.timing.tFAW=1.5", "dram.timing.tFAW"),
    ("dram.address_mapping=rochrababg", "dram.address_mapping"),
    ("dram.address_mapping=rochrababgxx", "dram.address_mapping"),
    ("dram.banks_per_group=3", "dram.banks_per_group"),
    ("dram.preset=ddr9", "dram.preset"),
    ("dram.clock_ratio=0", "dram.clock_ratio"),
    ("dram.timing.tREFI=100", "dram.timing.tREFI"),
])
def test_bad_parameters_name_the_field(override, field):
    arch = load_arch("sa32_ws", ["dram={kind: banked_dram, preset: ddr4_3200}"])
    with pytest.raises(ArchsimError) as e:
        arch.with_overrides([override])
    msg = str(e.value)
    assert field in msg and "\n" not in msg


def test_yaml_block_and_clock():
    arch = load_arch("sa32_ws", ["dram={kind: banked_dram, preset: ddr4_3200, timing: {CL: 24}}"])
    assert isinstance(arch.dram, BankedDRAMSpec) and arch.dram.resolved.timing["CL"] == 24
    assert arch.dram.ratio == pytest.approx(0.63)  # 1 GHz accelerator, tCK 0.63 ns
    assert arch.with_overrides(["clock_mhz=500"]).dram.ratio == pytest.approx(0.315)
    assert arch.with_overrides(["dram.clock_ratio=2"]).dram.ratio == 2
    # the mapper's roofline: 25.6 GB/s = 25.4 bytes per 1 GHz cycle (tCK rounded to 0.63 ns)
    assert arch.dram.bandwidth_bytes_per_cycle == pytest.approx(64 / 4 / 0.63)
    assert load_arch("sa32_ws").dram.kind == "dram"  # the pipe stays the default


def test_replay_expands_strided_tiles():
    t = timing_of("ddr4_3200")
    strided = replay("ddr4_3200", [((0, 256, 4096, 16), 4096, False, 0)])
    rows = replay("ddr4_3200", [(r * 4096, 256, False, 0) for r in range(16)])
    assert strided["bursts"] == rows["bursts"] == 16 * 256 // t.line_bytes
    assert strided["done_cycles"] == rows["done_cycles"]


def _run(spec, transfers):
    """Finish cycles of [(nbytes, write, start, addr)] on the component."""
    env = simpy.Environment()
    d = BankedDRAM(env, spec)
    done = {}

    def go(i, nb, w, t0, addr):
        yield env.timeout(t0)
        yield (d.transfer(nb, write=True, addr=addr, stream="writeback") if w
               else d.read(nb, addr=addr, stream=f"dma.{i}"))
        done[i] = env.now

    for i, (nb, w, t0, addr) in enumerate(transfers):
        env.process(go(i, nb, w, t0, addr))
    env.run()
    return done, d


def test_closed_loop_contention():
    spec = BankedDRAMSpec(preset="ddr4_3200")
    alone = _run(spec, [(1 << 16, False, 0, None)])[0][0]
    two = _run(spec, [(1 << 16, False, 0, None), (1 << 16, False, 0, None)])[0]
    rw = _run(spec, [(1 << 16, False, 0, None), (1 << 16, True, 0, None)])[0]
    assert min(two.values()) > alone  # two reads share the channel
    assert max(rw.values()) > max(two.values())  # a write among reads pays turnaround
    # a 1 MiB stream alone takes what the controller takes for it (within 5%)
    one_mib, d = _run(spec, [(1 << 20, False, 0, None)])
    r = replay("ddr4_3200", [(i * 64, 64, False, 0) for i in range(1 << 14)])
    assert abs(one_mib[0] / d.ratio / r["done_cycles"] - 1) < 0.05
    s = d.stats()
    assert 0.6 < s["busy_bandwidth_fraction"] < 0.8 and s["row_hit_rate"] > 0.98
    assert s["commands"]["rd"] == 1 << 14 and s["energy_pj"]["rd"] > 0
    assert s["mean_read_latency_cycles"] == one_mib[0]  # one read, issued at 0
    assert d.stats(0, one_mib[0] - 1)["commands"]["rd"] == 0  # not done before its end
    # short rows of a strided tile are slower than the same bytes in sequence
    strided = _run(spec, [(1 << 16, False, 0, (0, 128, 1 << 16, 512))])[0][0]
    assert strided > alone


@pytest.mark.parametrize("preset", ["ddr4_3200", "lpddr4_2400"])
def test_closed_form_follows_the_controller(preset):
    """Concurrent transfers (two loads and a store, each sequential in its own
    region) finish on the closed-form component within 15% of the
    command-level controller serving the same bursts interleaved."""
    from archsim.hw.dram_banked.component import _region

    spec = BankedDRAMSpec(preset=preset)
    t = timing_of(preset)
    mix = [(1 << 16, False), (1 << 16, False), (1 << 15, True)]
    done, d = _run(spec, [(nb, w, 0, None) for nb, w in mix])
    streams = [[(_region(t, i) + k * t.line_bytes, t.line_bytes, w, 0) for k in range(nb // t.line_bytes)]
               for i, (nb, w) in enumerate(mix)]
    reqs = [s[k] for k in range(max(map(len, streams))) for s in streams if k < len(s)]
    ref = replay(preset, reqs, accept_per_cycle=len(mix))["done_cycles"]
    assert abs(max(done.values()) / d.ratio / ref - 1) < 0.15


def test_network_runs_on_banked_dram():
    from archsim.engine import run
    from workloads.scalesim_import import read_topology
    from archsim.tiling import tile

    layers = read_topology(Path(__file__).parent / "data" / "scalesim" / "inputs" / "resnet18_sympad.csv")[:3]
    pipe = load_arch("sa32_ws")
    out = {}
    for name, ov in (("pipe", []), ("ddr4", ["dram={kind: banked_dram, preset: ddr4_3200}"]),
                     ("lpddr4", ["dram={kind: banked_dram, preset: lpddr4_2400}"])):
        arch = pipe.with_overrides(ov)
        out[name] = run(tile(layers, arch), arch).total_cycles
    assert all(v > 0 for v in out.values())
    assert out["lpddr4"] >= out["pipe"]  # 19.2 GB/s banked vs a 25.6 GB/s pipe


def test_energy_priced_from_commands():
    arch = load_arch("sa32_ws", ["dram={kind: banked_dram, preset: ddr4_3200}"])
    cost = next(c for c in EnergyModel(arch).unit_costs() if c["name"] == "dram_pj_per_bit")
    t = timing_of("ddr4_3200")
    e = t.command_energy_pj()
    # DRAMsim3: VDD (IDD4R - IDD3N) x tBURST x devices x tCK = 1.2 x 246 mA x 4 x 4 x 0.63 ns
    assert e["rd"] == pytest.approx(1.2 * 246 * 4 * 4 * 0.63)
    bits = t.line_bytes * 8  # a burst moves 512 bits; a sequential stream adds an ACT every 128 bursts
    assert min(e["rd"], e["wr"]) / bits < cost["value"] < (max(e["rd"], e["wr"]) + e["act"] / 64) / bits
    assert "DDR4_8Gb_x16_3200.ini" in cost["source"]


def test_the_report_gives_each_layer_its_row_hits_bandwidth_and_read_latency():
    from archsim.api import simulate

    r = simulate("resnet20", "sa32_ws", overrides=["dram={kind: banked_dram, preset: ddr4_3200}"])
    for lc in r.layer_counters:
        d = lc["dram"]
        assert 0 <= d["row_hit_rate"] <= 1 and 0 < d["bandwidth_fraction"] <= 1
        assert d["mean_read_latency_cycles"] > 0
    assert "dram" not in simulate("resnet20", "sa32_ws").layer_counters[0]  # the pipe has no banks to report


def test_every_dram_transfer_of_a_run_has_an_address_in_its_tensor():
    from archsim.config import load_arch
    from archsim.tiling import tile
    from workloads import zoo
    from workloads.compile import trace

    layers = trace(zoo.build("resnet20"), zoo.default_input("resnet20"))
    # a small weight buffer: fold groups cover part of a layer's reduction
    g = tile(layers, load_arch("sa32_ws", ["dram={kind: banked_dram, preset: ddr4_3200}",
                                           "buffers.weight.capacity_bytes=4096"]))
    spans: dict = {}  # tensor -> (lowest, highest address)
    for _, a in g.nodes(data=True):
        if a["kind"] in ("load", "store") and a["bytes"] and a["unit"] != "dma.side":
            addr = a["addr"][0] if isinstance(a["addr"], tuple) else a["addr"]
            lo, hi = spans.get(a["tensor"], (addr, addr))
            spans[a["tensor"]] = (min(lo, addr), max(hi, addr))
    # tensors do not overlap in the address space, and every layer's weights have one
    ranges = sorted(spans.values())
    assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:]))
    assert {f"{L.name}:weights" for L in layers} <= set(spans)
    # a ws fold group that covers part of K is strided: one row of the group per output channel
    strided = [a["addr"] for _, a in g.nodes(data=True) if isinstance(a.get("addr"), tuple)]
    assert strided and all(row < stride for _, row, stride, _ in strided)
    # the pipe's graph carries no addresses (its fingerprints are the golden ones)
    plain = tile(layers, load_arch("sa32_ws"))
    assert not any("addr" in a for _, a in plain.nodes(data=True))
