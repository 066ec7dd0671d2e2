"""`archsim run --trace`: the simulation as a Chrome/Perfetto trace-event file."""
import json
from collections import defaultdict

import pytest

from archsim.api import simulate
from archsim.cli import main
from archsim.config import load_arch
from archsim.ir.formats import VQFormat
from archsim.ir.layer_spec import LayerSpec


def layers(fmt=None):
    kw = {"fmt": fmt} if fmt else {}
    return [LayerSpec("conv1", "conv", M=196, N=64, K=576, in_elems=16 * 16 * 64, **kw),
            LayerSpec("conv2", "conv", M=196, N=32, K=576, in_elems=16 * 16 * 64, **kw)]


@pytest.mark.parametrize("arch,fmt", [("sa32_ws", None), ("sa32_os", None), ("vq32_ws", VQFormat(k=256, d=16))])
def test_trace_follows_the_trace_event_format_and_adds_up(tmp_path, arch, fmt):
    path = tmp_path / "t.json"
    rep = simulate(layers(fmt), arch, trace=path)
    data = json.loads(path.read_text())
    events = data["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert "pe" in names.values() and "writeback" in names.values()
    slices = [e for e in events if e["ph"] == "X"]
    for e in slices:
        assert {"name", "ts", "dur", "pid", "tid", "args"} <= set(e) and e["dur"] >= 0
    # slices on one unit never overlap (each unit is an in-order queue)
    by_tid = defaultdict(list)
    for e in slices:
        by_tid[e["tid"]].append((e["args"]["start_cycle"], e["args"]["start_cycle"] + e["args"]["cycles"]))
    for spans in by_tid.values():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    # PE slices add up to each layer's compute cycles
    pe_tid = next(t for t, n in names.items() if n == "pe")
    for row in rep.layers:
        pe = sum(e["args"]["cycles"] for e in slices if e["tid"] == pe_tid and e["args"]["layer"] == row["name"])
        assert pe == row["compute_cycles"]
    counters = {e["name"] for e in events if e["ph"] == "C"}
    assert "DRAM bandwidth in use (B/cycle)" in counters and "buffer weight (bytes)" in counters
    bw = load_arch(arch).dram.bandwidth_bytes_per_cycle
    assert {e["args"]["B/cycle"] for e in events if e["name"].startswith("DRAM")} <= {0, bw}


def test_trace_layers_limits_the_slices_and_an_unknown_layer_is_an_error(tmp_path, capsys):
    path = tmp_path / "t.json"
    simulate(layers(), "sa32_ws", trace=path, trace_layers=["conv2"])
    slices = [e for e in json.loads(path.read_text())["traceEvents"] if e["ph"] == "X"]
    assert slices and {e["args"]["layer"] for e in slices} == {"conv2"}
    topo = tmp_path / "topo.csv"
    topo.write_text("Layer name, M, N, K,\nfc1, 64, 32, 128,\n")
    assert main(["run", "--topology", str(topo), "--no-plot", "--out", str(tmp_path / "o"),
                 "--trace", str(path), "--trace-layers", "nope"]) == 2
    assert "--trace-layers" in capsys.readouterr().err


def test_no_trace_by_default(tmp_path):
    topo = tmp_path / "topo.csv"
    topo.write_text("Layer name, M, N, K,\nfc1, 64, 32, 128,\n")
    assert main(["run", "--topology", str(topo), "--no-plot", "--out", str(tmp_path / "o")]) == 0
    assert not list(tmp_path.rglob("*trace*"))
