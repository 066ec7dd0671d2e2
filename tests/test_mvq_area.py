"""MVQ's area, part by part (archsim/hw/ews.py, mvq_sparse.py): for ews64 and
mvq64 the PEs (multiplier, adder, register files), the activation-select
muxes, control, the weight loader (codebook RF, mask decoders) and the
buffers each have an area and a source, and the 75%-sparsity array claim is
read off the same breakdown."""
import math

import pytest

from archsim.config import load_arch
from archsim.energy import EnergyModel
from archsim.hw.ews import ARRAY_PARTS, area_rows, array_area_um2
from archsim.reproduce import format_area

GROUPS = {"PEs", "activation-select muxes", "control", "weight loader", "buffers"}


def _em(name):
    return EnergyModel(load_arch(name))


@pytest.mark.parametrize("name", ["ews64", "mvq64"])
def test_every_part_has_an_area_and_a_source(name):
    em = _em(name)
    rows = area_rows(em)
    assert {r["part"] for r in rows} == set(em.area_um2()) - {"total"}
    assert sum(r["um2"] for r in rows) == pytest.approx(em.area_um2()["total"])
    for r in rows:
        assert r["um2"] > 0 and r["group"] in GROUPS
        # a table row's name, a CACTI interpolation, or a derived estimate with its derivation
        assert r["source"] and ("derived estimate" in r["source"] or "CACTI" in r["source"]
                                or ": " in r["source"]), r
    parts = {r["part"] for r in rows}
    assert {"pe_array.mult", "pe_array.add", "pe_array.rf_weight", "pe_array.rf_act", "pe_array.rf_psum",
            "control", "sram_weight", "sram_input", "sram_output"} <= parts
    if name == "mvq64":
        assert {"mux", "codebook", "decoder"} <= parts


def test_mvq_pes_are_a_quarter_of_ews_plus_what_sparsity_adds():
    e, m = _em("ews64").area_um2(), _em("mvq64").area_um2()
    # 16x64 PEs against 64x64: a quarter of the multipliers, adders and psum RFs
    for part in ("pe_array.mult", "pe_array.add", "pe_array.rf_psum"):
        assert m[part] == pytest.approx(e[part] / 4)
    # each kept weight keeps its 2-bit mux select; each PE holds its group's 4 activations
    assert m["pe_array.rf_weight"] == pytest.approx(e["pe_array.rf_weight"] / 4 * (8 + 2) / 8)
    assert m["pe_array.rf_act"] == pytest.approx(e["pe_array.rf_act"])
    reg = _em("mvq64").table.area("register_1b") * (40 / 45) ** 2
    assert m["mux"] == pytest.approx(16 * 64 * _em("mvq64").mux_area_um2(4, 8) * (40 / 45) ** 2)
    # control: 3 flip-flops a PE (valid, two RF selects) + the same sequencer in both
    assert e["control"] - m["control"] == pytest.approx((64 - 16) * 64 * 3 * reg)
    assert m["sram_weight"] == e["sram_weight"]  # same buffers


def test_array_claim_reads_the_breakdown():
    e, m = _em("ews64").area_um2(), _em("mvq64").area_um2()
    arr_e, arr_m = array_area_um2(e), array_area_um2(m)
    assert arr_e == pytest.approx(sum(v for k, v in e.items() if k.split(".")[0] in ARRAY_PARTS))
    reduction = 1 - arr_m / arr_e
    # more than the PEs' bare 75% less: muxes, select bits and M activation lanes per PE stay
    assert 0.5 < reduction < 0.75
    assert "codebook" not in ARRAY_PARTS and "decoder" not in ARRAY_PARTS


def test_breakdown_table_shows_both_arrays():
    text = format_area({n: area_rows(_em(n)) for n in ("ews64", "mvq64")})
    for word in ("pe_array.rf_act", "mux", "control", "codebook", "decoder", "sram_input", "total",
                 "derived estimate", "Horowitz"):
        assert word in text
    total = text.splitlines()[-1].split()
    assert math.isclose(float(total[1]), _em("ews64").area_um2()["total"] / 1e6, abs_tol=1e-3)
