"""The PQA lookup-table PE kind (archsim/hw/pq_lut.py, arch_configs/pqa.yaml):
its pipeline's cycles per column equal PQA's model, FIFOs give back-pressure,
its tables are really moved from DRAM, LUTs tile by output channels, and
compressed PQ models simulate end to end."""
import math

import pytest
import torch
from hypothesis import given, strategies as st
from torch import nn

from archsim.api import simulate
from archsim.cli import main
from archsim.config import load_arch
from archsim.engine import run
from archsim.ir.errors import ArchsimError
from archsim.ir.formats import PQFormat
from archsim.ir.layer_spec import LayerSpec
from archsim.tiling import tile

BIG = ["buffers.weight.capacity_bytes=8388608", "buffers.input.capacity_bytes=8388608",
       "buffers.output.capacity_bytes=8388608", "pe_array.proto_buffer_bytes=1048576"]


def pq_layer(M, K, N, Ls=9, Np=16, **kw):
    fmt = PQFormat(Ls=Ls, Np=Np, **kw)
    L = LayerSpec(name="pq", op="linear", M=M, N=N, K=K)
    L.fmt = fmt.for_layer(L)
    return L


def formula(Ls, Np, Ns, cout, ls_vec, np_vec, ns_vec, nout_vec):
    return max(math.ceil(Ls / ls_vec) * math.ceil(Np / np_vec), math.ceil(cout / nout_vec)) * math.ceil(Ns / ns_vec)


def compute_cycles(layers, arch):
    st = run(tile(layers, arch), arch)
    return st.layers[0].compute_cycles, st


@pytest.mark.parametrize("Ls,Np,K,N,vec", [
    (9, 16, 576, 64, (4, 16, 16, 16)),     # ResNet-20 layer: adder-bound
    (9, 16, 144, 16, (4, 16, 16, 16)),     # distance-bound
    (3, 64, 300, 40, (4, 16, 16, 16)),     # non-divisible Ns, Cout
    (9, 8, 2304, 256, (16, 8, 24, 32)),    # the second config
    (5, 16, 100, 70, (9, 16, 32, 64)),     # the third, non-divisible everything
])
def test_cycles_per_column_equal_pqa_model(Ls, Np, K, N, vec):
    ls_vec, np_vec, ns_vec, nout_vec = vec
    arch = load_arch("pqa", BIG + [f"pe_array.ls_vec={ls_vec}", f"pe_array.np_vec={np_vec}",
                                   f"pe_array.ns_vec={ns_vec}", f"pe_array.nout_vec={nout_vec}"])
    Ns = math.ceil(K / Ls)
    per = formula(Ls, Np, Ns, N, *vec)
    n = 64  # a multiple of block_columns: whole blocks
    c1, _ = compute_cycles([pq_layer(n, K, N, Ls, Np)], arch)
    c2, _ = compute_cycles([pq_layer(2 * n, K, N, Ls, Np)], arch)
    assert (c2 - c1) == n * per  # steady state: every extra column costs exactly the model
    # the whole layer: pixels x model, plus the pipeline's fill and drain once: the first
    # subspace group's encoding (or, where encoding is the slowest stage, the last group's
    # LUT reads), and a cycle each through the adder tree and the write-out
    dist_g = math.ceil(Ls / ls_vec) * math.ceil(Np / np_vec)
    dist_bound = dist_g >= math.ceil(N / nout_vec)
    assert c1 == n * per + (math.ceil(N / nout_vec) if dist_bound else dist_g) + 2
    c3, _ = compute_cycles([pq_layer(n, K, N, Ls, Np)], arch.with_overrides(["pe_array.block_columns=7"]))
    assert c3 == c1


def test_fifo_depth_one_and_slow_lut_ports_stall_the_distance_unit():
    # one LUT entry per port per cycle: the lookup stage is 16x slower than the adder tree
    base = BIG + ["pe_array.lut_port_entries=1"]
    L = [pq_layer(256, 144, 16)]
    _, shallow = compute_cycles(L, load_arch("pqa", base + ["pe_array.fifo_depth=1"]))
    _, deep = compute_cycles(L, load_arch("pqa", base + ["pe_array.fifo_depth=64"]))
    s, d = shallow.layers[0], deep.layers[0]
    assert s.wait_space_cycles["pe.dist"] > 0      # back-pressure: the distance unit waited for room
    assert d.wait_space_cycles["pe.dist"] == 0
    assert s.wait_data_cycles["pe.adder"] > 0      # the adder tree starves behind the LUT ports
    assert s.busy_cycles["pe.lut"] == 256 * 16     # the bottleneck stage is busy all the time
    assert s.compute_cycles >= 256 * 16


def test_pq_layer_reads_its_lut_and_prototypes_from_dram_exactly():
    # the layer: 196 x 256 x 2304, Ls=9, Np=16: a ~2 MB LUT
    L = pq_layer(196, 2304, 256)
    Ns = 256
    lut = Ns * 16 * 256 * 2
    proto = Ns * 16 * 9 + 2 * 4  # 8-bit prototypes + the two 32-bit scales
    arch = load_arch("pqa", ["pe_array.proto_buffer_bytes=65536"])
    st = run(tile([L], arch), arch).layers[0]
    assert st.dram_read_by_buffer["weight"] == lut
    assert st.dram_read_by_buffer["proto"] == proto
    assert st.dram_read_bytes >= lut + proto > 2_000_000
    assert L.fmt.side_bytes(L.n_weights) == lut + proto  # the format and the kind agree


def test_small_lut_buffer_tiles_by_output_channels_and_keeps_bytes_and_macs():
    L = pq_layer(64, 576, 64)
    arch = load_arch("pqa")  # 64 KB LUT buffer, double-buffered: 16 channels a tile
    g = tile([L], arch)
    lut_loads = [a for _, a in g.nodes(data=True) if a["kind"] == "load" and a.get("buf") == "weight"]
    assert len(lut_loads) == 4 and {a["bytes"] for a in lut_loads} == {64 * 16 * 16 * 2}
    comp = [a for _, a in g.nodes(data=True) if a["kind"] == "compute"]
    assert sum(a["macs"] for a in comp) == L.macs  # MAC conservation
    stores = [a for _, a in g.nodes(data=True) if a["kind"] == "store"]
    assert sum(a["bytes"] for a in stores) == L.M * L.N  # every output written once (8-bit)
    # indices kept: only the first tile's pass runs the distance unit
    assert sum(1 for a in comp if a["fold"].first) == len(comp) // 4
    st = run(g, arch)
    assert st.buffer_end_bytes == {"weight": 0, "input": 0, "output": 0}
    assert st.layers[0].dram_read_by_buffer["weight"] == 64 * 16 * 64 * 2


def test_lut_tile_that_cannot_fit_is_a_one_line_error(tmp_path, capsys):
    arch = load_arch("pqa", ["buffers.weight.capacity_bytes=1024"])
    with pytest.raises(ArchsimError) as e:
        tile([pq_layer(64, 576, 64)], arch)
    msg = e.value.one_line()
    assert "\n" not in msg and "layer pq" in msg and "buffers.weight.capacity_bytes" in msg
    rc = main(["run", "--model", "resnet20", "--arch", "pqa", "--weights", "pq:Ls=9,Np=16",
               "--set", "buffers.weight.capacity_bytes=1024", "--no-plot", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "buffers.weight.capacity_bytes" in err
    with pytest.raises(ArchsimError, match="pe_array.proto_buffer_bytes"):  # one subspace: 16 x 9 B
        tile([pq_layer(64, 4608, 64)], load_arch("pqa", ["pe_array.proto_buffer_bytes=128"]))


@pytest.mark.parametrize("double", [True, False])
def test_prototypes_larger_than_their_buffer_stream_in_parts(double):
    # ResNet-18's layer4 3x3 convolution: 512 subspaces of 16 x 9 B = 73,736 B with the scales
    L = pq_layer(49, 4608, 512)
    full = 512 * 16 * 9 + 8
    arch = load_arch("pqa", [f"pe_array.proto_double_buffered={str(double).lower()}"])
    g = tile([L], arch)
    loads = [a["bytes"] for _, a in g.nodes(data=True) if a.get("buf") == "proto"]
    comp = [a for _, a in g.nodes(data=True) if a["kind"] == "compute"]
    encodes = [a for a in comp if a["fold"].first]
    passes = sum(1 for a in encodes if a["fold"].last)  # (LUT tile, column chunk) passes that encode
    room = 65536 // 2 if double else 65536
    assert max(loads) <= room and sum(loads) == passes * full  # every encoding pass loads every part
    assert len(loads) == len(encodes) and len(encodes) > passes  # one node per part
    assert sum(a["macs"] for a in comp) == L.macs
    assert sum(a["fold"].rows_used for a in encodes) == passes * 512  # every subspace encoded once a pass
    stores = [a for _, a in g.nodes(data=True) if a["kind"] == "store"]
    assert sum(a["bytes"] for a in stores) == L.M * L.N  # partial sums are never written out
    st = run(g, arch)
    assert st.buffer_end_bytes == {"weight": 0, "input": 0, "output": 0}
    assert st.layers[0].dram_read_by_buffer["proto"] == passes * full
    # against a prototype buffer that holds them all: the same lookups, a few
    # more pipeline fills and drains, more prototype traffic
    big = load_arch("pqa", ["pe_array.proto_buffer_bytes=131072"])
    ref = run(tile([pq_layer(49, 4608, 512)], big), big).layers[0]
    assert ref.dram_read_by_buffer["proto"] == full
    lay = st.layers[0]
    assert lay.busy_cycles["pe.lut"] == ref.busy_cycles["pe.lut"]
    assert lay.busy_cycles["pe.dist"] == ref.busy_cycles["pe.dist"]
    assert ref.compute_cycles <= lay.compute_cycles <= 1.1 * ref.compute_cycles


def test_resnet18_runs_on_pqa(tmp_path):
    assert main(["run", "--model", "resnet18", "--arch", "pqa", "--weights", "pq:Ls=9,Np=16",
                 "--no-plot", "--out", str(tmp_path)]) == 0


def test_dense_layers_are_refused_in_one_line():
    L = LayerSpec(name="dense", op="linear", M=4, N=8, K=16)
    with pytest.raises(ArchsimError, match="pq_lut array runs pq weights only"):
        tile([L], load_arch("pqa"))


def test_bad_pq_lut_yaml_names_file_and_field(tmp_path):
    import yaml

    data = yaml.safe_load(open(load_arch("pqa").path))
    data["pe_array"]["ls_vec"] = 0
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(ArchsimError) as e:
        load_arch(str(p))
    assert str(p) in e.value.one_line() and "pe_array.ls_vec" in e.value.one_line()
    data["pe_array"]["ls_vec"] = 4
    data["pe_array"]["lut_bank"] = 2
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(ArchsimError, match="pe_array.lut_bank: unknown key"):
        load_arch(str(p))


def test_weights_pq_on_a_zoo_model_takes_cout_per_layer(tmp_path, capsys):
    rc = main(["run", "--model", "resnet20", "--arch", "pqa", "--weights", "pq:Ls=9,Np=16",
               "--no-plot", "--out", str(tmp_path)])
    assert rc == 0
    import json
    rep = json.loads((tmp_path / "resnet20_pqa_pq-Ls=9-Np=16" / "report.json").read_text())  # run folder names the weights
    fc = [r for r in rep["layers"] if r["name"] == "layer3.2.conv2"][0]
    assert fc["dram_read_bytes"] > 64 * 16 * 64 * 2  # its 128 KB LUT (Cout 64, not 1)


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(x.flatten(1))


def test_compressed_pq_model_simulates_end_to_end():
    from workloads.compression import compress

    torch.manual_seed(0)
    model = _Tiny().eval()
    calib = [(torch.randn(16, 1, 8, 8), torch.zeros(16, dtype=torch.long)) for _ in range(2)]
    res = compress(model, "pq", calib=calib, num_threads=1, Ls=9, Np=8, niter=5, bn_recalibrate=False)
    x = torch.randn(1, 1, 8, 8)
    # the compressed module itself traces (PQ layers are leaves), with or without the formats
    rep = simulate(res.model, "pqa", example_input=x)
    rep2 = simulate(res.model, "pqa", example_input=x, formats=res.formats)
    names = [r["name"] for r in rep.layers]
    assert names == ["conv1", "conv2", "fc"]
    assert rep.totals["total_cycles"] == rep2.totals["total_cycles"] > 0
    L = rep.layers[1]
    # conv2: 4x4 output pixels, K = 72 -> Ns = 8, Cout 16: max(ceil(9/4)*1, 1) * 1 = 3 per column
    assert L["compute_cycles"] >= 16 * 3
    assert rep.layers[2]["dram_read_bytes"] >= 30 * 8 * 10 * 2  # fc's LUT: Ns=ceil(256/9)=29..


@st.composite
def pq_cases(draw):
    """A PQ linear layer on a PQA array with random vector widths and buffers,
    the prototype buffer often smaller than the layer's prototypes."""
    Ls, Np = draw(st.integers(1, 12)), draw(st.integers(1, 32))
    L = pq_layer(draw(st.integers(1, 96)), draw(st.integers(1, 1200)), draw(st.integers(1, 160)), Ls, Np)
    ov = [f"pe_array.{k}={draw(st.integers(1, 32))}" for k in ("ls_vec", "np_vec", "ns_vec", "nout_vec")]
    ov += [f"pe_array.proto_buffer_bytes={draw(st.integers(5, 17).map(lambda e: 2 ** e))}",
           f"pe_array.proto_double_buffered={str(draw(st.booleans())).lower()}",
           f"pe_array.fifo_depth={draw(st.integers(1, 4))}",
           f"dram.bandwidth_bytes_per_cycle={draw(st.sampled_from([3.2, 51.2, 400.0]))}"]
    for buf in ("weight", "input", "output"):
        ov.append(f"buffers.{buf}.capacity_bytes={draw(st.integers(10, 20).map(lambda e: 2 ** e))}")
        ov.append(f"buffers.{buf}.double_buffered={str(draw(st.booleans())).lower()}")
    return L, ov


@given(pq_cases())
def test_pq_lut_invariants_with_streamed_prototypes(case):
    L, ov = case
    arch = load_arch("pqa", ov)
    try:
        g = tile([L], arch)
    except ArchsimError:
        return  # a buffer too small for one tile: an allowed, one-line refusal
    comp = [a for _, a in g.nodes(data=True) if a["kind"] == "compute"]
    stores = [a for _, a in g.nodes(data=True) if a["kind"] == "store"]
    assert sum(a["macs"] for a in comp) == L.macs
    assert sum(a["bytes"] for a in stores) == L.M * L.N
    Ns = math.ceil(L.K / L.fmt.Ls)
    encodes = [a for a in comp if a["fold"].first]
    passes = sum(1 for a in encodes if a["fold"].last)
    assert sum(a["fold"].rows_used for a in encodes) == passes * Ns  # each pass encodes every subspace once
    st_ = run(g, arch)
    assert st_.buffer_end_bytes == {"weight": 0, "input": 0, "output": 0}
    full = math.ceil((Ns * L.fmt.Np * L.fmt.Ls * L.fmt.proto_bits + 2 * L.fmt.scale_bits) / 8)
    proto = st_.layers[0].dram_read_by_buffer["proto"]
    streamed = full > arch.pe_array.proto_buffer_bytes
    assert proto == (passes * full if streamed else full)
    # against a prototype buffer that holds every prototype: the same LUT work
    # where parts are whole distance-unit steps, never less
    big = arch.with_overrides([f"pe_array.proto_buffer_bytes={max(full, 32)}"])
    ref = run(tile([L], big), big).layers[0]
    lay = st_.layers[0]
    assert lay.busy_cycles["pe.lut"] >= ref.busy_cycles["pe.lut"]
    assert lay.busy_cycles["pe.out"] == ref.busy_cycles["pe.out"]  # outputs leave once
    assert lay.compute_cycles >= ref.compute_cycles or not streamed


def test_indices_that_do_not_all_fit_are_kept_for_the_leading_chunks():
    # ResNet-18's layer1 3x3 conv: 3136 columns x 64 subspaces x 4 bits = 100 KB of
    # indices, more than the 64 KB input buffer; its 128 KB LUT takes 4 tiles
    L = pq_layer(3136, 576, 64)
    arch = load_arch("pqa")
    g = tile([L], arch)
    comp = [a for _, a in g.nodes(data=True) if a["kind"] == "compute"]
    enc_cols = sum(a["fold"].stream_len for a in comp if a["fold"].first)
    kept_cols = 4 * L.M - enc_cols  # columns a later tile read as indices
    assert 0 < kept_cols < 3 * L.M  # some reused, some encoded again
    st = run(g, arch)
    lay = st.layers[0]
    order = lay.meta["loop_order"]
    assert f"{L.M - kept_cols // 3:,} columns re-encoded per tile" in order and "indices kept for" in order
    assert sum(a["macs"] for a in comp) == L.macs
    assert st.buffer_end_bytes == {"weight": 0, "input": 0, "output": 0}
    # against a buffer that keeps every index: the same LUT work, more distance work
    big = load_arch("pqa", ["buffers.input.capacity_bytes=1048576"])
    ref = run(tile([pq_layer(3136, 576, 64)], big), big).layers[0]
    assert lay.busy_cycles["pe.lut"] == ref.busy_cycles["pe.lut"]
    assert lay.busy_cycles["pe.dist"] > ref.busy_cycles["pe.dist"]
