"""PE kinds as plug-ins: a kind is one class with its own schema, mapping,
fold timing, actions and area; the engine and tiler run any of them. Also the
MVQ (EWS, N:M sparse array, weight loader) and SSVQ (sign decoder) parts."""
import math
from typing import Literal

import pytest
import yaml

from archsim.api import simulate
from archsim.cli import main
from archsim.config import ARCH_DIR, load_arch, load_arch_dict
from archsim.energy import DEFAULT_TABLE, EnergyModel, EnergyTable
from archsim.engine import run
from archsim.ir.errors import ArchsimError
from archsim.hw.pe_kind import Fold, PEKind, PESpec, register_pe_kind
from archsim.ir.formats import MVQFormat, NMFormat, SSVQFormat
from archsim.ir.layer_spec import LayerSpec
from archsim.tiling import tile


def conv(M=196, N=64, K=576, fmt=None):
    kw = {"fmt": fmt} if fmt else {}
    return LayerSpec("c", "conv", M=M, N=N, K=K, in_elems=M * K // 9, **kw)


def arch_dict(name: str) -> dict:
    return yaml.safe_load((ARCH_DIR / f"{name}.yaml").read_text())


# -- the plug-in mechanism --------------------------------------------------------

class _ToySpec(PESpec):
    kind: Literal["toy_vector"] = "toy_vector"
    lanes_latency: int = 3


@register_pe_kind("toy_vector")
class _ToyVector(PEKind):
    """A vector unit: rows*cols MACs per cycle, whole layer as one fold per
    output chunk, weights streamed; defined here, in the test, only."""
    Spec = _ToySpec

    def map_layer(self, t):
        L = t.layer
        w = t.load("weight", t.w_bytes(L.n_weights))
        x = t.load("input", t.in_dram_bytes(L.M * L.K), act_dep=True)
        cp = t.compute(Fold(self.rows, self.cols, L.M, True, True), (w, x), macs=L.macs,
                       alloc=(("output", t.act_bytes(L.M * L.N)),))
        t.free_later(cp, "weight", t.w_bytes(L.n_weights))
        t.free_later(cp, "input", t.in_dram_bytes(L.M * L.K))
        return t.store(t.act_bytes(L.M * L.N), cp, free_psum=t.act_bytes(L.M * L.N))

    def fold_cycles(self, fold, fmt):
        return math.ceil(fold.stream_len * 64 * 64 / (self.rows * self.cols)) + self.spec.lanes_latency

    def fold_actions(self, fold, fmt):
        return {"toy.mac": fold.stream_len * 64 * 64}

    def action_costs(self, em):
        return {"toy.mac": (0.5, "test figure")}

    def area_um2(self, em):
        return {"toy": (1000.0, "logic")}


def test_a_toy_kind_defined_in_a_test_runs_end_to_end_from_yaml():
    d = arch_dict("sa32_ws")
    d["pe_array"] = {"kind": "toy_vector", "rows": 8, "cols": 16, "lanes_latency": 5}
    arch = load_arch_dict(d, source="toy.yaml")
    L = conv(M=100, N=64, K=64)
    rep = simulate([L], arch)
    row = rep.layers[0]
    assert row["compute_cycles"] == math.ceil(100 * 64 * 64 / 128) + 5
    assert row["energy_toy_pj"] == pytest.approx(0.5 * 100 * 64 * 64)
    assert rep.area_um2["toy"] == 1000.0
    assert rep.totals["energy_total_pj"] == pytest.approx(sum(v for k, v in row.items()
                                                              if k.startswith("energy_") and k not in
                                                              ("energy_total_pj", "energy_dynamic_pj")))
    # its own schema: unknown keys are still errors, naming the field
    d["pe_array"]["lanes"] = 4
    with pytest.raises(ArchsimError) as e:
        load_arch_dict(d, source="toy.yaml")
    assert (e.value.file, e.value.field, e.value.message) == ("toy.yaml", "pe_array.lanes", "unknown key")


def test_unknown_kind_names_the_field_and_lists_the_known_ones():
    d = arch_dict("sa32_ws")
    d["pe_array"]["kind"] = "warp"
    with pytest.raises(ArchsimError) as e:
        load_arch_dict(d, source="x.yaml")
    assert e.value.field == "pe_array.kind" and "systolic" in e.value.message and "mvq_sparse" in e.value.message


# -- N:M sparse array -------------------------------------------------------------

@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (2, 8)])
def test_nm_compute_cycles_follow_the_exact_formula(n, m):
    L = conv(M=196, N=96, K=1152, fmt=NMFormat(n=n, m=m))
    arch = load_arch("sa32_ws", ["pe_array.kind=nm_systolic", f"pe_array.n={n}", f"pe_array.m={m}"])
    ls = run(tile([L], arch), arch).layers[0]
    R = C = 32
    folds = math.ceil(L.K * n / m / R) * math.ceil(L.N / C)
    assert ls.compute_cycles == folds * (2 * R + C + L.M - 2)
    # MACs executed = the layer's x N/M; every one passes an activation mux
    assert ls.actions["pe_arith.mac"] == L.macs * n // m == ls.actions["mux.select"]
    assert ls.macs == L.macs


def test_a_dense_layer_runs_dense_on_the_sparse_array():
    L = conv(K=576)
    dense = run(tile([L], load_arch("sa32_ws")), load_arch("sa32_ws")).layers[0]
    arch = load_arch("sa32_ws", ["pe_array.kind=nm_systolic"])
    sparse_hw = run(tile([L], arch), arch).layers[0]
    assert sparse_hw.compute_cycles == dense.compute_cycles
    assert sparse_hw.actions["pe_arith.mac"] == L.macs


# -- EWS and the MVQ accelerator ---------------------------------------------------

def test_ews_hides_the_weight_load_of_every_fold_but_the_first():
    L = conv(M=196, N=64, K=576)
    arch = load_arch("ews64", ["pe_array.psum_overflow=spill"])
    ls = run(tile([L], arch), arch).layers[0]
    R = C = 64
    folds = math.ceil(L.K / R) * math.ceil(L.N / C)
    assert ls.compute_cycles == folds * (L.M + R - 1 + C - 1) + R
    assert ls.actions["rf.act"] == ls.actions["rf.psum"] == L.macs


def test_mvq_accelerator_loads_masks_decodes_with_the_lzc_and_skips_pruned_macs():
    fmt = MVQFormat(k=256, d=16, n=1, m=4)
    L = conv(M=196, N=64, K=576, fmt=fmt)
    arch = load_arch("mvq64")
    ls = run(tile([L], arch), arch).layers[0]
    assert ls.actions["pe_arith.mac"] == L.macs // 4
    assert ls.actions["decoder.mask_decode"] == fmt.n_groups(L.n_weights) * fmt.n
    assert ls.codebook_lookups == fmt.n_vectors(L.n_weights)
    assert ls.dram_read_by_buffer["weight"] >= math.ceil(fmt.payload_bits(L.n_weights) / 8)
    assert ls.dram_read_by_buffer["codebook"] == fmt.side_bytes(L.n_weights)
    # 16 PE rows cover 64 reduction inputs: as many row folds as ews64's 64 rows
    folds = math.ceil(L.K / 64) * math.ceil(L.N / 64)
    assert ls.compute_cycles >= folds * L.M


def test_mvq_array_is_smaller_than_ews_by_its_pe_share_plus_muxes():
    em_ews, em_mvq = EnergyModel(load_arch("ews64")), EnergyModel(load_arch("mvq64"))
    a_ews, a_mvq = em_ews.area_um2(), em_mvq.area_um2()
    assert a_mvq["pe_array.mult"] == pytest.approx(a_ews["pe_array.mult"] / 4)  # parts: tests/test_mvq_area.py
    assert a_mvq["mux"] == pytest.approx(16 * 64 * em_mvq.mux_area_um2(4, 8) * (40 / 45) ** 2)  # 40 nm
    assert "40 nm" in em_ews.scaling_note


# -- SSVQ sign decoder ------------------------------------------------------------

def test_sign_decode_is_charged_per_weight():
    fmt = SSVQFormat(k=256, d=16)
    L = conv(M=196, N=64, K=576, fmt=fmt)
    arch = load_arch("ssvq32_ws")
    ls = run(tile([L], arch), arch).layers[0]
    assert ls.actions["decoder.sign"] == L.n_weights
    em = EnergyModel(arch)
    sign_pj = next(c["value"] for c in em.unit_costs() if c["name"] == "decoder.sign")
    vq_only = em.layer_energy_pj(ls)["decoder"] - L.n_weights * sign_pj
    assert vq_only == pytest.approx(ls.codebook_lookups * next(
        c["value"] for c in em.unit_costs() if c["name"] == "decoder.lookup"))
    # signs cost decoder cycles too: a decoder with 1 sign lane per cycle stalls the array
    slow = load_arch("ssvq32_ws", ["decoder.signs_per_cycle=1"])
    ls_slow = run(tile([L], slow), slow).layers[0]
    assert ls_slow.busy_cycles["decoder"] >= L.n_weights
    assert ls_slow.total_cycles > ls.total_cycles


# -- static power -----------------------------------------------------------------

def test_static_energy_is_power_density_x_area_x_time(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text(DEFAULT_TABLE.read_text().rstrip("\n") + "\n"
                     "static_logic,mW/mm^2,2.0,,test density,\nstatic_sram,mW/mm^2,0.5,,test density,\n"
                     if "static_logic" not in DEFAULT_TABLE.read_text() else
                     "\n".join(l for l in DEFAULT_TABLE.read_text().splitlines()
                               if not l.startswith("static_")) +
                     "\nstatic_logic,mW/mm^2,2.0,,test density,\nstatic_sram,mW/mm^2,0.5,,test density,\n")
    arch = load_arch("sa32_ws")
    em = EnergyModel(arch, EnergyTable.load(table))
    a = em.area_um2()
    logic_mm2 = a["pe_array"] / 1e6
    sram_mm2 = sum(a[f"sram_{b}"] for b in ("weight", "input", "output")) / 1e6
    assert em.static_power_mw == pytest.approx(2.0 * logic_mm2 + 0.5 * sram_mm2)
    assert em.static_mw_by_component["pe_array"] == pytest.approx(2.0 * logic_mm2)  # one component by hand
    assert em.static_mw_by_component["sram_input"] == pytest.approx(0.5 * a["sram_input"] / 1e6)
    ls = run(tile([conv()], arch), arch).layers[0]
    # mW x (cycles / MHz) us = nJ -> x1000 pJ
    assert em.layer_energy_pj(ls)["static"] == pytest.approx(
        (2.0 * logic_mm2 + 0.5 * sram_mm2) * ls.total_cycles / arch.clock_mhz * 1e3)


# -- bad YAML for each new kind ------------------------------------------------------

@pytest.mark.parametrize("base,edit,field", [
    ("ews64", {"pe_array": {"weight_rf_entries": 1}}, "pe_array.weight_rf_entries"),
    ("ews64", {"pe_array": {"dataflow": "os"}}, "pe_array.dataflow"),
    ("mvq64", {"pe_array": {"n": 5}}, "pe_array"),
    ("mvq64", {"decoder": {"mask_decoders": 0}}, "decoder.mask_decoders"),
    ("mvq64", {"decoder": {"masks": 2}}, "decoder.masks"),
    ("ssvq32_ws", {"decoder": {"signs_per_cycle": -1}}, "decoder.signs_per_cycle"),
    ("sa32_ws", {"pe_array": {"kind": "nm_systolic", "m": 0}}, "pe_array.m"),
])
def test_bad_yaml_for_each_new_kind_is_one_line_naming_file_and_field(tmp_path, capsys, base, edit, field):
    d = arch_dict(base)
    for block, kv in edit.items():
        d[block].update(kv)
    path = tmp_path / f"{base}.yaml"
    path.write_text(yaml.safe_dump(d))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("archsim: error:")
    assert f"{path}: {field}" in err


@pytest.mark.parametrize("name", ["ews64", "mvq64", "ssvq32_ws"])
def test_new_architectures_run_a_small_network(name):
    fmt = {"mvq64": MVQFormat(k=256, d=16, n=1, m=4), "ssvq32_ws": SSVQFormat(k=256, d=16)}.get(name)
    layers = [conv(fmt=fmt), LayerSpec("fc", "linear", M=1, N=10, K=512, **({"fmt": fmt} if fmt else {}))]
    rep = simulate(layers, name)
    assert rep.totals["total_cycles"] > 0
    assert all(v >= 0 for k, v in rep.totals.items() if k.startswith("energy_"))


# -- the per-layer loop-order mapper -------------------------------------------------

@pytest.mark.parametrize("bw", [3.2, 25.6, 256])
def test_auto_loop_order_picks_what_the_simulation_says_is_faster(bw):
    L = LayerSpec("c", "conv", M=56 * 56, N=64, K=64 * 9, in_elems=58 * 58 * 64)
    base = load_arch("sa32_ws", [f"dram.bandwidth_bytes_per_cycle={bw}"])
    sims = {m: simulate([L], base.with_overrides([f"pe_array.psum_overflow={m}"])).layers[0]
            for m in ("spill", "tile_outputs", "auto")}
    faster = min(("spill", "tile_outputs"), key=lambda m: sims[m]["total_cycles"])
    assert sims["auto"]["total_cycles"] == sims[faster]["total_cycles"]
    assert sims["auto"]["loop_order"] == sims[faster]["loop_order"]
