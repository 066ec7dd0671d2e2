"""Tiling + engine end to end on small layers: what the simulation must show
(overlap, stalls, traffic) and what it must refuse."""
import math

import networkx as nx
import pytest

from archsim.config import load_arch
from archsim.engine import run
from archsim.ir.errors import ArchsimError
from archsim.ir.formats import DenseFormat, VQFormat
from archsim.ir.layer_spec import LayerSpec
from archsim.tiling import tile


def conv(name="c", M=28 * 28, N=128, K=128 * 9, in_elems=30 * 30 * 128, fmt=None):
    return LayerSpec(name, "conv", M=M, N=N, K=K, in_elems=in_elems, fmt=fmt or DenseFormat(8))


def simulate(layers, arch):
    return run(tile(layers, arch), arch)


@pytest.mark.parametrize("arch_name", ["sa32_ws", "sa32_os", "vq32_ws"])
def test_graph_is_a_dag_in_program_order(arch_name):
    arch = load_arch(arch_name)
    fmt = VQFormat(k=256, d=16) if arch_name == "vq32_ws" else DenseFormat(8)
    g = tile([conv(fmt=fmt), conv("d", fmt=fmt)], arch)
    assert nx.is_directed_acyclic_graph(g)
    assert all(u < v for u, v in g.edges)
    kinds = {d["kind"] for _, d in g.nodes(data=True)}
    assert {"load", "compute", "store"} <= kinds
    assert ("decode" in kinds) == (arch_name == "vq32_ws")


def test_compute_cycles_follow_fold_formula_and_layers_add_up():
    arch = load_arch("sa32_ws", ["pe_array.psum_overflow=spill"])  # SCALE-Sim's loop order
    L = conv()
    st = simulate([L, conv("d")], arch)
    folds = math.ceil(L.K / 32) * math.ceil(L.N / 32)
    assert st.layers[0].compute_cycles == folds * (2 * 32 + 32 + L.M - 2)
    assert sum(l.total_cycles for l in st.layers) == st.total_cycles
    for l in st.layers:
        assert l.total_cycles == l.compute_cycles + l.stall_cycles


def test_less_dram_bandwidth_means_more_stall_same_compute():
    arch = load_arch("sa32_os")
    fast = simulate([conv()], arch.with_overrides(["dram.bandwidth_bytes_per_cycle=256"]))
    slow = simulate([conv()], arch.with_overrides(["dram.bandwidth_bytes_per_cycle=4"]))
    assert fast.layers[0].compute_cycles == slow.layers[0].compute_cycles
    assert slow.total_cycles > fast.total_cycles
    assert slow.layers[0].stall_cycles > fast.layers[0].stall_cycles
    assert slow.layers[0].wait_data_cycles["pe"] > fast.layers[0].wait_data_cycles["pe"]


def test_double_buffering_overlaps_loads_with_compute():
    arch = load_arch("sa32_os").with_overrides(["dram.bandwidth_bytes_per_cycle=16"])
    double = simulate([conv()], arch)
    single = simulate([conv()], arch.with_overrides([f"buffers.{b}.double_buffered=false"
                                                      for b in ("weight", "input", "output")]))
    assert double.total_cycles < single.total_cycles


def test_weights_cross_dram_once_when_they_fit_and_vq_moves_fewer_bytes():
    L = conv(M=14 * 14, N=64, K=64 * 9, in_elems=16 * 16 * 64)
    dense = simulate([L], load_arch("sa32_ws")).layers[0]
    assert dense.dram_read_by_buffer["weight"] == L.n_weights  # INT8: one byte per weight
    fmt = VQFormat(k=256, d=16, codebook_bits=8)
    vq = simulate([conv(M=14 * 14, N=64, K=64 * 9, in_elems=16 * 16 * 64, fmt=fmt)], load_arch("vq32_ws")).layers[0]
    # indices: one 8-bit index per 16 weights, rounded up per 32x32 tile; codebook 256 x 16 bytes
    assert vq.dram_read_by_buffer["weight"] == pytest.approx(L.n_weights / 16, rel=0.02)
    assert vq.dram_read_by_buffer["codebook"] == 256 * 16
    assert vq.codebook_lookups == L.n_weights // 16
    assert vq.busy_cycles["decoder"] > 0


def test_slow_decoder_stalls_the_array():
    fmt = VQFormat(k=256, d=4, codebook_bits=8)
    L = [conv(M=7 * 7, N=512, K=512 * 9, in_elems=9 * 9 * 512, fmt=fmt)]
    arch = load_arch("vq32_ws").with_overrides(["dram.bandwidth_bytes_per_cycle=1000", "buffers.weight.capacity_bytes=65536",
                                                "codebook.width_bits=32"])
    fast = simulate(L, arch.with_overrides(["decoder.vectors_per_cycle=8"]))
    slow = simulate(L, arch.with_overrides(["decoder.vectors_per_cycle=1", "codebook.lookups_per_cycle=1"]))
    assert slow.layers[0].compute_cycles == fast.layers[0].compute_cycles
    assert slow.layers[0].wait_data_cycles["pe"] > fast.layers[0].wait_data_cycles["pe"]
    assert slow.total_cycles > fast.total_cycles


def test_same_inputs_same_outputs():
    arch = load_arch("sa32_ws")
    a = simulate([conv(), conv("d")], arch).to_dict()
    b = simulate([conv(), conv("d")], arch).to_dict()
    assert a == b


def test_buffer_too_small_for_one_tile_names_the_field():
    arch = load_arch("sa32_ws", ["buffers.weight.capacity_bytes=1024"])
    with pytest.raises(ArchsimError) as e:
        tile([conv()], arch)
    assert e.value.field == "buffers.weight.capacity_bytes"
    assert "sa32_ws.yaml" in str(e.value) and "too small" in str(e.value)


def test_codebook_too_small_names_the_field():
    arch = load_arch("vq32_ws", ["codebook.entries=16"])
    with pytest.raises(ArchsimError) as e:
        tile([conv(fmt=VQFormat(k=256, d=16))], arch)
    assert e.value.field == "codebook.entries"


def test_vq_weights_need_a_decoder():
    with pytest.raises(ArchsimError) as e:
        tile([conv(fmt=VQFormat(k=256, d=16))], load_arch("sa32_ws"))
    assert e.value.field == "codebook"


def test_tile_outputs_trades_fills_for_partial_sum_traffic():
    # partial sums of a column fold (3136 px x 32 x 4 B = 400 KB) exceed the 32 KB output buffer
    L = conv(M=56 * 56, N=64, K=64 * 9, in_elems=58 * 58 * 64)
    arch = load_arch("sa32_ws")
    spill = simulate([L], arch.with_overrides(["pe_array.psum_overflow=spill"])).layers[0]
    tiled = simulate([L], arch.with_overrides(["pe_array.psum_overflow=tile_outputs"])).layers[0]
    outputs = L.M * L.N
    row_folds, col_folds = math.ceil(L.K / 32), math.ceil(L.N / 32)
    assert spill.dram_write_bytes == outputs + (row_folds - 1) * outputs * 4
    assert tiled.dram_write_bytes == outputs  # nothing spilled
    assert tiled.dram_read_by_buffer.get("output", 0) == 0
    # blocks of 128 pixels (16 KB of 32-bit partial sums for 32 columns): each refills the array
    blocks = math.ceil(L.M / 128)
    assert tiled.compute_cycles == col_folds * row_folds * (blocks * (2 * 32 + 32 - 2) + L.M)
    assert tiled.compute_cycles > spill.compute_cycles
    assert tiled.total_cycles < spill.total_cycles  # on this channel the spill traffic costs more


@pytest.mark.parametrize("model", ["resnet20", "mobilenetv2", "deit_tiny"])
@pytest.mark.parametrize("arch_name,extra", [("sa32_ws", []), ("sa32_ws", ["pe_array.psum_overflow=tile_outputs"]),
                                             ("sa32_ws", ["pe_array.psum_overflow=spill"]),
                                             ("sa32_os", []), ("sa32_ws", ["pe_array.dataflow=is"]),
                                             ("vq32_ws", [])])
def test_zoo_models_run_to_completion(model, arch_name, extra):
    from archsim.api import to_layers

    layers = to_layers(model)
    if arch_name == "vq32_ws":
        for L in layers:
            if L.op != "matmul":
                L.fmt = VQFormat(k=256, d=16)
    arch = load_arch(arch_name, extra)
    st = simulate(layers, arch)
    assert sum(l.macs for l in st.layers) == sum(L.macs for L in layers)
    assert all(l.compute_cycles > 0 for l in st.layers)
    # a layer's computes wait for the previous layer's outputs, so they never overlap
    assert st.total_cycles >= sum(l.compute_cycles for l in st.layers)
    assert st.total_cycles == st.layers[-1].end_cycle
