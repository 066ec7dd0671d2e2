"""Shared memory levels (`memory.levels`), the static allocator and the
router: a global buffer between DRAM and the private buffers keeps whole
tensors, and the traffic that it saves, or does not, shows in the counters."""
from __future__ import annotations

import pytest

from archsim.allocator import TensorPlan, allocate
from archsim.api import simulate
from archsim.config import load_arch
from archsim.energy import EnergyModel
from archsim.engine import run
from archsim.ir.errors import ArchsimError
from archsim.stats import LayerStats
from workloads import zoo
from workloads.compile import trace
from archsim.tiling import tile


def global_level(capacity: int, serves=("weights", "activations", "psums"), **extra) -> list[str]:
    level = {"name": "global", "capacity_bytes": capacity, "word_bits": 128, "bytes_per_cycle": 64,
             "serves": list(serves), **extra}
    return [f"memory.levels=[{level}]".replace("'", "")]


@pytest.fixture(scope="module")
def resnet18():
    return trace(zoo.build("resnet18"), zoo.default_input("resnet18"))


def _dram(r) -> tuple[int, int]:
    return r.totals["dram_read_bytes"], r.totals["dram_write_bytes"]


def _moved(r) -> dict:
    out: dict = {}
    for lc in r.layer_counters:
        for k, v in lc["transfer_bytes"].items():
            out[k] = out.get(k, 0) + v
    return out


def test_a_level_that_holds_everything_leaves_only_weights_input_and_output_in_dram(resnet18):
    r = simulate(resnet18, "sa32_ws", overrides=global_level(1 << 30) + ["memory.retain_activations=true"])
    weights = sum(L.fmt.tile_bytes(L.n_weights) for L in resnet18)
    side = sum(L.fmt.side_bytes(L.n_weights) for L in resnet18)
    network_input = 3 * 224 * 224
    assert _dram(r) == (weights + side + network_input, 1000)  # fc's 1000 logits
    moved = _moved(r)
    # each weight is read once by its layer's nest: it bypasses the level (staging it would save nothing)
    assert moved["dram->global"] == network_input and moved["dram->weight"] == weights
    assert moved["output->dram"] == 1000
    assert all(t["level"] == "dram" and "read once" in t["reason"] for t in r.tensors if t["role"] == "weights")


def test_weights_a_nest_reads_again_are_kept_and_read_from_chip(resnet18):
    small = ["buffers.weight.capacity_bytes=8192", "buffers.input.capacity_bytes=8192",
             "buffers.output.capacity_bytes=4096"]
    base = simulate(resnet18, "sa32_ws", overrides=small)
    r = simulate(resnet18, "sa32_ws", overrides=small + global_level(1 << 30) + ["memory.retain_activations=true"])
    weights = sum(L.fmt.tile_bytes(L.n_weights) for L in resnet18)
    base_weight_reads = sum(lc["dram_read_by_buffer"].get("weight", 0) for lc in base.layer_counters)
    assert base_weight_reads > weights  # the small buffers make nests re-read weights
    assert _dram(r) == (weights + 3 * 224 * 224, 1000)
    assert any(t["role"] == "weights" and t["level"] == "global" for t in r.tensors)


def test_without_retention_the_traffic_is_todays(resnet18):
    base = simulate(resnet18, "sa32_ws")
    r = simulate(resnet18, "sa32_ws", overrides=global_level(1 << 20, serves=("activations",)))
    assert _dram(r) == _dram(base)
    assert r.totals["total_cycles"] == base.totals["total_cycles"]
    # the level is declared, so it is priced, and holds nothing
    assert r.totals["energy_sram_global_pj"] == 0
    assert r.area_um2["sram_global"] > 0


@pytest.mark.parametrize("capacity", [64 << 10, 256 << 10, 1 << 20])
def test_keeping_activations_never_reads_more_from_dram_in_any_layer(resnet18, capacity):
    """The layer4.0.conv1 regression: a heuristic that kept activations in the
    input buffer made that layer read 16x more. A shared level keeps whole
    tensors beside the private buffers, so no loop nest changes."""
    base = simulate(resnet18, "sa32_ws")
    kept = simulate(resnet18, "sa32_ws", overrides=global_level(capacity) + ["memory.retain_activations=true"])
    for b, k in zip(base.layers, kept.layers):
        assert k["dram_read_bytes"] <= b["dram_read_bytes"], b["name"]
        assert k["loop_order"] == b["loop_order"], b["name"]
    by_name = {row["name"]: row for row in kept.layers}
    assert by_name["layer4.0.conv1"]["dram_read_bytes"] <= \
        next(row for row in base.layers if row["name"] == "layer4.0.conv1")["dram_read_bytes"]


def test_more_capacity_never_raises_dram_traffic(resnet18):
    traffic = []
    for capacity in (16 << 10, 128 << 10, 512 << 10, 1 << 20, 4 << 20, 16 << 20):
        r = simulate(resnet18, "sa32_ws", overrides=global_level(capacity) + ["memory.retain_activations=true"])
        traffic.append(sum(_dram(r)))
    assert traffic == sorted(traffic, reverse=True)
    assert traffic[-1] < traffic[0]


def test_transfers_into_the_private_buffers_are_the_nest_s_own(resnet18):
    """Conservation across levels: every byte a private buffer received came
    from DRAM or from the shared level, and their sum is what it received
    without the level; every stored byte went to one of them."""
    base = simulate(resnet18, "sa32_ws")
    r = simulate(resnet18, "sa32_ws", overrides=global_level(512 << 10) + ["memory.retain_activations=true"])
    moved = _moved(r)
    for buf in ("weight", "input", "output"):
        got = moved.get(f"dram->{buf}", 0) + moved.get(f"global->{buf}", 0)
        want = sum(lc["dram_read_by_buffer"].get(buf, 0) for lc in base.layer_counters)
        assert got == want, buf
    assert moved.get("output->dram", 0) + moved.get("output->global", 0) == base.totals["dram_write_bytes"]
    g = tile(resnet18, load_arch("sa32_ws", global_level(512 << 10) + ["memory.retain_activations=true"]))
    g.graph["allocation"].check()
    stats = run(g, load_arch("sa32_ws", global_level(512 << 10) + ["memory.retain_activations=true"]))
    assert all(v == 0 for v in stats.buffer_end_bytes.values())  # every reservation released


def test_allocator_keeps_a_tensor_only_where_it_fits_its_whole_lifetime():
    arch = load_arch("sa32_ws", global_level(1000) + ["memory.retain_activations=true"])
    a = TensorPlan("a", "activations", 600, 0, 2)
    b = TensorPlan("b", "activations", 600, 1, 1)   # overlaps a: no room
    c = TensorPlan("c", "activations", 400, 1, 3)   # fits beside a
    out = TensorPlan("y", "activations", 10, 3, 3, keep=False, reason="network output")
    alloc = allocate([a, b, c, out], 4, arch)
    assert [alloc.level_of(n) for n in "abcy"] == ["global", "dram", "global", "dram"]
    assert "600 B" in b.reason or "needs 600" in b.reason
    assert alloc.peak_bytes() == {"global": 1000}
    alloc.check()


def test_quotas_bound_each_role():
    arch = load_arch("sa32_ws", global_level(1000, quotas={"weights": 0.25}) + ["memory.retain_activations=true"])
    w = TensorPlan("w", "weights", 300, 0, 0, from_dram=True)
    x = TensorPlan("x", "activations", 700, 0, 1)
    alloc = allocate([w, x], 2, arch)
    assert alloc.level_of("w") == "dram" and alloc.level_of("x") == "global"


@pytest.mark.parametrize("overrides, field", [
    (global_level(4096, parent="l2"), "memory.levels.0.parent"),
    (["memory.levels=[{name: a, capacity_bytes: 8, bytes_per_cycle: 1, serves: [weights], parent: b},"
      "{name: b, capacity_bytes: 8, bytes_per_cycle: 1, serves: [weights], parent: a}]"], "memory.levels.0.parent"),
    (global_level(4096, quotas={"weights": 0.7, "activations": 0.6}), "memory.levels.0.quotas"),
    (global_level(4096, quotas={"weights": 1.5}), "memory.levels.0.quotas.weights"),
    (global_level(4096, serves=("weights",)) + ["memory.retain_activations=true"], "memory.retain_activations"),
    (["memory.levels=[{name: input, capacity_bytes: 8, bytes_per_cycle: 1, serves: [weights]}]"],
     "memory.levels.0.name"),
    (["memory.levels=[{name: g, capacity_bytes: 8, bytes_per_cycle: 1, serves: [everything]}]"],
     "memory.levels.0.serves.0"),
])
def test_a_bad_memory_block_is_one_line_naming_the_field(overrides, field):
    with pytest.raises(ArchsimError) as e:
        load_arch("sa32_ws", overrides)
    assert e.value.field == field
    assert "\n" not in str(e.value)


def test_a_byte_counted_at_a_level_nobody_prices_is_an_error():
    em = EnergyModel(load_arch("sa32_ws", global_level(4096)))
    ls = LayerStats(name="x", op="conv", macs=1)
    ls.sram_read_bytes["global"] = 64
    assert em.layer_energy_pj(ls)["sram_global"] > 0
    ls.sram_read_bytes["l3"] = 64
    with pytest.raises(ArchsimError, match="no level"):
        em.layer_energy_pj(ls)


# ------------------------------------------------------------ vector unit
VECTOR = ["vector_unit={lanes: 32, fused: [relu, batchnorm]}"]


def _rows(r, ops):
    return [row for row in r.layers if row["op"] in ops]


def test_without_a_vector_unit_the_report_says_what_was_not_simulated(resnet18):
    r = simulate(resnet18, "sa32_ws")
    assert any("47 non-GEMM operators not simulated" in n and "add x8" in n for n in r.notes)
    assert len(r.layers) == 21


def test_non_gemm_operators_run_on_the_vector_unit(resnet18):
    base = simulate(resnet18, "sa32_ws")
    r = simulate(resnet18, "sa32_ws", overrides=VECTOR)
    assert not r.notes
    adds = _rows(r, ("add",))
    assert len(adds) == 8 and all(row["compute_cycles"] > 0 for row in adds)
    # fused ReLU / BN: no cycle, but their lane-ops are priced
    fused = [row for row in r.layers if row["loop_order"] == "fused into the write-back"]
    assert {row["op"] for row in fused} == {"relu", "batchnorm"}
    assert len(fused) == 20 + 9  # every BN, and each ReLU that follows one (not those after a residual add)
    assert all(row["total_cycles"] == 0 and row["energy_vector_unit_pj"] > 0 for row in fused)
    assert r.totals["total_cycles"] > base.totals["total_cycles"]
    assert r.area_um2["vector_unit"] > 0


def _norm_model(width: int, tokens: int):
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(width, width)
            self.norm = nn.LayerNorm(width)

        def forward(self, x):
            return torch.softmax(self.norm(self.fc(x)), dim=-1)

    return trace(Block(), torch.zeros(1, tokens, width))


@pytest.mark.parametrize("op", ["layernorm", "softmax"])
def test_a_norm_or_softmax_costs_cycles_in_proportion_to_its_elements(op):
    cycles = []
    for tokens in (64, 256):
        r = simulate(_norm_model(128, tokens), "sa32_ws", overrides=VECTOR)
        (row,) = _rows(r, (op,))
        cycles.append(row["compute_cycles"])
    assert cycles[1] == pytest.approx(4 * cycles[0], rel=0.02)


def test_a_transformer_s_non_gemm_share_is_in_the_report():
    L = trace(zoo.build("deit_tiny"), zoo.default_input("deit_tiny"))
    r = simulate(L, "sa32_ws", overrides=VECTOR)
    vector = sum(row["compute_cycles"] for row in r.layers if row["macs"] == 0)
    share = vector / r.totals["compute_cycles"]
    assert 0.05 < share < 0.9
    assert {"layernorm", "softmax", "gelu", "add"} <= {row["op"] for row in r.layers}


def test_a_skip_tensor_that_does_not_fit_is_read_back_from_dram():
    L = trace(zoo.build("resnet20"), zoo.default_input("resnet20"))
    kept = simulate(L, "sa32_ws", overrides=VECTOR + global_level(1 << 20) + ["memory.retain_activations=true"])
    tiny = simulate(L, "sa32_ws", overrides=VECTOR + global_level(20 << 10) + ["memory.retain_activations=true"])
    add_kept = next(lc for lc in kept.layer_counters if lc["name"] == "add")
    add_tiny = next(lc for lc in tiny.layer_counters if lc["name"] == "add")
    assert add_kept["transfer_bytes"].get("dram->vector", 0) == 0
    assert add_tiny["transfer_bytes"].get("dram->vector", 0) > 0
    assert sum(_dram(tiny)) > sum(_dram(kept))
    weights = sum(l.fmt.tile_bytes(l.n_weights) for l in L)
    assert _dram(kept) == (weights + 3 * 32 * 32, 10)


def test_a_deadlock_names_what_each_queue_waits_for():
    from archsim.tiling import _Builder

    b = _Builder()
    b.add("load", "dma.weight", 0, bytes=40000, buf="weight", alloc=(("weight", 40000),))
    b.add("load", "dma.weight", 0, bytes=40000, buf="weight", alloc=(("weight", 40000),))  # never fits
    g = b.graph()
    g.graph["layers"] = [{"name": "l0", "op": "conv", "macs": 0}]
    with pytest.raises(RuntimeError, match=r"node 1 \(load on dma.weight, layer l0\) waits for room: "
                                           r"40000 B in buffer weight \(40000 of 65536 B held\)"):
        run(g, load_arch("sa32_ws"))


def test_the_trace_has_an_occupancy_counter_per_shared_level(tmp_path):
    import json

    L = trace(zoo.build("resnet20"), zoo.default_input("resnet20"))
    simulate(L, "sa32_ws", overrides=global_level(1 << 20) + ["memory.retain_activations=true"],
             trace=tmp_path / "t.json")
    events = json.loads((tmp_path / "t.json").read_text())["traceEvents"]
    levels = [e["args"]["bytes"] for e in events if e.get("name") == "buffer global (bytes)"]
    assert len(levels) == len(L) and max(levels) > 0


def test_a_workload_with_other_layers_keeps_its_dag(resnet18):
    import copy

    layers = [copy.copy(L) for L in resnet18]
    w = resnet18.with_layers(layers)
    assert list(w) == layers and w.tensors == resnet18.tensors
    assert [o.name for o in w.ops] == [o.name for o in resnet18.ops]
    assert all(a is b for a, b in zip(w.vector_ops, resnet18.vector_ops))


def test_the_global_buffer_study_validates_and_its_base_runs_the_dag():
    from archsim.study import load_study

    study = load_study("global_buffer")
    assert study.archs == ["sa32_gb"]
    r = simulate(trace(zoo.build("resnet20"), zoo.default_input("resnet20")), "sa32_gb")
    assert any(row["op"] == "add" for row in r.layers)
