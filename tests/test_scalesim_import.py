"""SCALE-Sim inputs: topology CSVs (conv and GEMM forms) become LayerSpecs
whose GEMM view is the one SCALE-Sim itself simulates, and .cfg files become
ScaleSimConfig. Bad inputs fail in one line naming the file and the field."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from archsim.ir.errors import ArchsimError
from archsim.ir.formats import DenseFormat, NMFormat
from archsim.ir.scalesim_cfg import ScaleSimConfig, mask_encoding_for
from workloads.scalesim_import import (
    is_gemm_topology,
    read_conv_topology,
    read_gemm_topology,
    read_scalesim_cfg,
    read_scalesim_workload,
    read_topology,
)

SCALESIM = Path(__file__).resolve().parent / "data" / "scalesim"  # provenance: its README.md
ROWS = COLS = 32  # the reference runs' array


def write(tmp_path: Path, text: str, name: str = "topo.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def compute_report(run: str) -> list[int]:
    with (SCALESIM / "results" / run / "COMPUTE_REPORT.csv").open() as f:
        return [int(row[2]) for row in list(csv.reader(f))[1:]]


def test_resnet18_sympad_uses_scalesim_output_rule():
    layers = read_topology(SCALESIM / "inputs" / "resnet18_sympad.csv")
    assert len(layers) == 21
    conv1 = layers[0]
    assert (conv1.name, conv1.op, conv1.M, conv1.N, conv1.K) == ("Conv1", "conv", 113 * 113, 64, 147)
    g = conv1.conv
    assert (g.in_h, g.kh, g.stride, g.pad, g.out_h, g.out_w) == (230, 7, 2, 0, 113, 113)
    assert conv1.in_elems == 230 * 230 * 3 and conv1.weight is None
    shortcut = next(l for l in layers if l.name == "Conv3_s")
    assert (shortcut.conv.out_h, shortcut.M) == (29, 29 * 29)  # ceil((56 - 1 + 2) / 2)


def test_resnet18_sympad_agrees_with_real_shapes_where_scalesim_does():
    layers = read_topology(SCALESIM / "inputs" / "resnet18_sympad.csv")
    with (SCALESIM / "inputs" / "resnet18_shapes.csv").open() as f:
        rows = list(csv.DictReader(f))
    for layer, row in zip(layers, rows):
        ref = {k: int(v) for k, v in row.items() if k != "layer"}
        assert layer.name == row["layer"]
        assert (layer.N, layer.K) == (ref["K"], ref["C"] * ref["R"] * ref["S"])
        if ref["stride"] == 1:  # only strided layers gain SCALE-Sim's extra pixel
            assert layer.M == ref["P_out"] * ref["Q_out"] and layer.macs == ref["MACs"]


@pytest.mark.parametrize("dataflow", ["ws", "os"])
def test_imported_gemm_view_reproduces_scalesim_compute_cycles(dataflow):
    # SCALE-Sim's own per-layer compute cycles follow closed forms in M, N, K
    # (reference README); the imported layers must give them exactly.
    layers = read_topology(SCALESIM / "inputs" / "resnet18_sympad.csv")
    cycles = compute_report(f"resnet18_sympad_sa32_{dataflow}_calc")
    for layer, ref in zip(layers, cycles):
        if dataflow == "ws":
            folds = math.ceil(layer.K / ROWS) * math.ceil(layer.N / COLS)
            got = folds * (2 * ROWS + COLS + layer.M - 2) - 1
        else:
            folds = math.ceil(layer.M / ROWS) * math.ceil(layer.N / COLS)
            got = folds * (layer.K + ROWS + COLS - 2) - 1
        assert got == ref, layer.name


def test_gemm_topology(tmp_path):
    # SCALE-Sim's own example (topologies/GEMM_mnk/test_mnk_input.csv) plus a v3 sparsity column.
    path = write(tmp_path, "Layer Name, M, N, K,\nTest 1, 256, 128, 256,\n\nqkv, 197, 576, 192, 1:1,\n")
    assert is_gemm_topology(path)
    a, b = read_topology(path)
    assert (a.name, a.op, a.M, a.N, a.K, a.groups, a.conv) == ("Test 1", "linear", 256, 128, 256, 1, None)
    assert (b.M, b.N, b.K, b.macs) == (197, 576, 192, 197 * 576 * 192)
    assert read_gemm_topology(path)[0].M == 256


def test_conv_topology_comments_missing_trailing_comma_and_depthwise(tmp_path):
    path = write(tmp_path, (
        "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
        "\n"
        "Conv1, 224, 224, 3, 3, 3, 32, 2,#first\n"
        "Conv2_DP, 114, 114, 3, 3, 32, 1, 1,\n"
        "Conv3,112,112,1,1,32,64,1\n"
    ))
    assert not is_gemm_topology(path)
    conv1, dw, pw = read_conv_topology(path)
    assert (conv1.M, conv1.conv.out_h) == (112 * 112, 112)  # ceil((224 - 3 + 2) / 2)
    assert (dw.op, dw.groups, dw.N, dw.K, dw.M) == ("dwconv", 32, 1, 9, 112 * 112)
    assert (dw.conv.in_ch, dw.conv.out_ch, dw.conv.groups) == (32, 32, 32)
    assert (pw.op, pw.M, pw.N, pw.K) == ("conv", 112 * 112, 64, 32)


def test_reference_cfgs():
    ws = read_scalesim_cfg(SCALESIM / "inputs" / "sa32_ws_calc.cfg")
    assert ws == ScaleSimConfig(run_name="sa32_ws_calc", rows=32, cols=32, ifmap_sram_kb=64,
                                filter_sram_kb=64, ofmap_sram_kb=32, dataflow="ws", bandwidth=10,
                                interface_bandwidth="CALC", memory_banks=1)
    os_ = read_scalesim_cfg(SCALESIM / "inputs" / "sa32_os_calc.cfg")
    assert (os_.run_name, os_.dataflow, os_.rows, os_.cols) == ("sa32_os_calc", "os", 32, 32)


CFG = """[general]
run_name = tiny

[architecture_presets]
ArrayHeight:    8
ArrayWidth:     16
IfmapSramSzkB:   4
FilterSramSzkB:  4
OfmapSramSzkB:   2
Dataflow : {dataflow}
{bandwidth}
[run_presets]
InterfaceBandwidth: {mode}
"""


def test_cfg_user_bandwidth_and_optional_calc_bandwidth(tmp_path):
    user = read_scalesim_cfg(write(tmp_path, CFG.format(dataflow="IS", bandwidth="Bandwidth : 4",
                                                        mode="USER"), "u.cfg"))
    assert (user.rows, user.cols, user.dataflow, user.bandwidth, user.interface_bandwidth) == (8, 16, "is", 4, "USER")
    calc = read_scalesim_cfg(write(tmp_path, CFG.format(dataflow="ws", bandwidth="", mode="CALC"), "c.cfg"))
    assert calc.bandwidth is None


def one_line_error(fn, path) -> ArchsimError:
    with pytest.raises(ArchsimError) as e:
        fn(path)
    err = e.value
    assert err.file == str(path) and "\n" not in str(err) and str(path) in str(err)
    return err


CONV_HEADER = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"


@pytest.mark.parametrize("row, field", [
    ("Conv1, 224, 224, 3, 3, x3, 32, 2,", "Channels"),
    ("Conv1, 224, 224, 3, 3, 3, 0, 2,", "Num Filter"),
    ("Conv1, 224, 224, 3, 3, 3, 32,", "Strides"),
    ("Conv1, 2, 224, 3, 3, 3, 32, 1,", "Filter Height"),
    ("Conv1, 224, 224, 3, 3, 3, 32, 1, 2:4, 1:1,", "Sparsity"),
])
def test_bad_conv_row_names_file_and_column(tmp_path, row, field):
    err = one_line_error(read_conv_topology, write(tmp_path, CONV_HEADER + row + "\n"))
    assert err.field == field and "line 2" in str(err)


def test_bad_gemm_row_and_header(tmp_path):
    err = one_line_error(read_gemm_topology, write(tmp_path, "Layer, M, N, K,\nL0, 196, 192,\n"))
    assert err.field == "K"
    err = one_line_error(read_conv_topology, write(tmp_path, "Layer name, IFMAP Height,\n"))
    assert err.field == "IFMAP Width"


def test_missing_files(tmp_path):
    one_line_error(read_topology, tmp_path / "nope.csv")
    one_line_error(read_scalesim_cfg, tmp_path / "nope.cfg")


@pytest.mark.parametrize("text, field", [
    (CFG.format(dataflow="rs", bandwidth="Bandwidth: 10", mode="CALC"), "Dataflow"),
    (CFG.format(dataflow="ws", bandwidth="Bandwidth: 10", mode="MAYBE"), "InterfaceBandwidth"),
    (CFG.format(dataflow="ws", bandwidth="", mode="USER"), "Bandwidth"),
    (CFG.format(dataflow="ws", bandwidth="Bandwidth: 10, 10", mode="USER"), "Bandwidth"),
    (CFG.format(dataflow="ws", bandwidth="", mode="CALC").replace("ArrayWidth:     16", "ArrayWidth: wide"),
     "ArrayWidth"),
    (CFG.format(dataflow="ws", bandwidth="", mode="CALC").replace("run_name = tiny", ""), "run_name"),
])
def test_bad_cfg_names_file_and_key(tmp_path, text, field):
    assert one_line_error(read_scalesim_cfg, write(tmp_path, text, "bad.cfg")).field == field


# --- SCALE-Sim v3 sparsity: the topology's N:M column and the [sparsity] section

SPARSE_TOPO = CONV_HEADER.replace("Strides,", "Strides, Sparsity,") + (
    "Conv1, 230, 230, 7, 7, 3, 64, 2, 2:4,\n"
    "Conv2, 58, 58, 3, 3, 64, 64, 1, 1 : 8,\n"   # spaces inside the ratio are fine
    "Conv3, 56, 56, 1, 1, 64, 128, 2, 1:1,\n"
    "Conv4, 9, 9, 3, 3, 512, 512, 1, 4:4,\n"
    "Conv5, 9, 9, 3, 3, 512, 512, 1,\n"          # no column: 1:1
)


def test_sparsity_column_gives_nm_format_kept_n_of_m(tmp_path):
    layers = read_conv_topology(write(tmp_path, SPARSE_TOPO))
    conv1, conv2, conv3, conv4, conv5 = layers
    # N is the number kept of every M (SCALE-Sim: N ones then M - N zeros),
    # groups run along one filter's window: run_len = K.
    assert conv1.fmt == NMFormat(n=2, m=4, value_bits=8, mask_encoding="offsets", run_len=147)
    assert conv1.fmt.density == 0.5 and conv1.K == 147
    assert (conv2.fmt.n, conv2.fmt.m, conv2.fmt.run_len) == (1, 8, 576)
    for dense in (conv3, conv4, conv5):  # N == M and no column: dense
        assert dense.fmt == DenseFormat(bits=8), dense.name
    assert [l.M for l in layers] == [113 * 113, 56 * 56, 29 * 29, 49, 49]  # geometry unchanged


def test_sparsity_ignored_without_support_and_gemm_form(tmp_path):
    path = write(tmp_path, SPARSE_TOPO)
    assert all(l.fmt == DenseFormat(bits=8) for l in read_topology(path, sparsity_support=False))
    assert read_topology(path, mask_encoding="bitmap")[0].fmt.mask_encoding == "bitmap"
    gemm = write(tmp_path, "Layer, M, N, K, Sparsity,\nfc, 1, 1000, 512, 2:8,\nqkv, 197, 576, 192,\n", "g.csv")
    fc, qkv = read_topology(gemm)
    assert fc.fmt == NMFormat(n=2, m=8, value_bits=8, mask_encoding="offsets", run_len=512)
    assert qkv.fmt == DenseFormat(bits=8)
    assert read_gemm_topology(gemm, sparsity_support=False)[0].fmt == DenseFormat(bits=8)


@pytest.mark.parametrize("ratio", ["2:x", "3:2", "0:4", "2:0", "-1:4", "2:-4", "2:4:8", "2.5:4",
                                   "2/4", "24", ":4", "2:"])
@pytest.mark.parametrize("form", ["conv", "gemm"])
def test_bad_sparsity_ratio_names_file_line_and_column(tmp_path, ratio, form):
    if form == "conv":
        text = CONV_HEADER + "Conv1, 224, 224, 3, 3, 3, 32, 1, 1:1,\nConv2, 224, 224, 3, 3, 3, 32, 1, " + ratio + ",\n"
    else:
        text = "Layer, M, N, K,\nfc0, 1, 10, 64, 2:4,\nfc1, 1, 10, 64, " + ratio + ",\n"
    path = write(tmp_path, text)
    for sparsity_support in (True, False):  # validated even when SCALE-Sim would ignore it
        with pytest.raises(ArchsimError) as e:
            read_topology(path, sparsity_support=sparsity_support)
        err = e.value
        assert err.file == str(path) and err.field == "Sparsity" and "line 3" in str(err), str(err)
        assert "\n" not in str(err)


SPARSE_CFG = CFG.format(dataflow="ws", bandwidth="", mode="CALC") + """
[sparsity]
SparsitySupport : {support}
SparseRep : {rep}
OptimizedMapping : {opt}
BlockSize : {block}
RandomNumberGeneratorSeed : {seed}
"""


def sparse_cfg(tmp_path, support="true", rep="ellpack_block", opt="false", block="8", seed="40"):
    return write(tmp_path, SPARSE_CFG.format(support=support, rep=rep, opt=opt, block=block, seed=seed),
                 "s.cfg")


def test_cfg_sparsity_section(tmp_path):
    cfg = read_scalesim_cfg(sparse_cfg(tmp_path, support="True", seed="7"))
    assert (cfg.sparsity_support, cfg.sparse_rep, cfg.sparsity_optimized_mapping,
            cfg.sparsity_block_size, cfg.sparsity_rand_seed) == (True, "ellpack_block", False, 4, 7)
    assert cfg.mask_encoding == "offsets"  # BlockSize is read only with OptimizedMapping (SCALE-Sim)
    opt = read_scalesim_cfg(sparse_cfg(tmp_path, opt="TRUE", block="8"))
    assert (opt.sparsity_optimized_mapping, opt.sparsity_block_size) == (True, 8)
    # SparsitySupport false: the other keys are not read (even bad ones), SCALE-Sim's defaults stand
    off = read_scalesim_cfg(sparse_cfg(tmp_path, support="false", rep="nonsense", seed="x"))
    assert (off.sparsity_support, off.sparse_rep, off.sparsity_rand_seed) == (False, "", 40)
    no_section = read_scalesim_cfg(write(tmp_path, CFG.format(dataflow="ws", bandwidth="", mode="CALC"), "n.cfg"))
    assert no_section.sparsity_support is False
    assert [mask_encoding_for(r) for r in ("ellpack_block", "csr", "csc", "")] == [
        "offsets", "bitmap", "bitmap", "offsets"]


@pytest.mark.parametrize("kwargs, field", [
    (dict(support="yes"), "SparsitySupport"),
    (dict(rep="ELLPACK"), "SparseRep"),
    (dict(opt="maybe"), "OptimizedMapping"),
    (dict(opt="true", block="64"), "BlockSize"),  # > ArrayHeight (8)
    (dict(opt="true", block="0"), "BlockSize"),
    (dict(seed="forty"), "RandomNumberGeneratorSeed"),
])
def test_bad_cfg_sparsity_keys(tmp_path, kwargs, field):
    assert one_line_error(read_scalesim_cfg, sparse_cfg(tmp_path, **kwargs)).field == field


def test_read_scalesim_workload_applies_cfg(tmp_path):
    topo = write(tmp_path, SPARSE_TOPO)
    layers, cfg = read_scalesim_workload(topo, sparse_cfg(tmp_path))
    assert cfg.sparsity_support and layers[0].fmt.mask_encoding == "offsets"
    layers, _ = read_scalesim_workload(topo, sparse_cfg(tmp_path, rep="csr"))
    assert layers[0].fmt == NMFormat(n=2, m=4, value_bits=8, mask_encoding="bitmap", run_len=147)
    layers, _ = read_scalesim_workload(topo, sparse_cfg(tmp_path, support="false"))
    assert all(l.fmt == DenseFormat(bits=8) for l in layers)
    with pytest.raises(ArchsimError) as e:
        read_scalesim_workload(topo, sparse_cfg(tmp_path, opt="true"))
    assert e.value.field == "OptimizedMapping"
