"""Energy and area model: the table is read as written (values, sources, the
write energy in the note), interpolation passes through the CACTI rows, and
each component's energy can be recomputed by hand from the counts."""
import math
import shutil

import pytest

from archsim.config import load_arch
from archsim.energy import DEFAULT_TABLE, EnergyModel, EnergyTable, interp_loglog, node_scale
from archsim.engine import run
from archsim.ir.errors import ArchsimError
from archsim.stats import LayerStats
from archsim.ir.formats import VQFormat
from archsim.ir.layer_spec import LayerSpec
from archsim.tiling import tile

KB = 1024
# rows of archsim/data/energy_45nm.csv, restated so a changed table fails loudly
CACTI = {8 * KB: (6.137, 7.878, 26300), 32 * KB: (17.042, 15.397, 94900), 64 * KB: (25.869, 19.649, 209000)}
INT8_MULT, INT32_ADD, REG_1B = 0.2, 0.1, 0.009
INT8_MULT_UM2, INT32_ADD_UM2, REG_1B_UM2 = 282, 137, 5.98


@pytest.fixture(scope="module")
def model():
    return EnergyModel(load_arch("sa32_ws"), EnergyTable.default())


def counts(actions=None, **kw) -> LayerStats:
    ls = LayerStats(name="l", op="conv", **{"macs": 0, **kw})
    ls.actions.update(actions or {})
    return ls


def table_without(tmp_path, entry: str, replace: str | None = None):
    """A copy of the default table without row `entry` (or with it replaced)."""
    lines = DEFAULT_TABLE.read_text().splitlines()
    out = [(replace if replace is not None else None) if l.startswith(entry + ",") else l for l in lines]
    path = tmp_path / "table.csv"
    path.write_text("\n".join(l for l in out if l is not None) + "\n")
    return path


# -- the table -------------------------------------------------------------------

def test_default_table_keeps_every_row_with_its_source():
    t = EnergyTable.default()
    assert t.path == str(DEFAULT_TABLE)
    assert all(e.source for e in t.entries.values())
    assert t.value("int8_mult", "pJ/op") == INT8_MULT
    # a range and a ratio are kept (with their source) but have no number
    assert t.entry("dram_read_64b").value is None and t.entry("dram_read_64b").raw_value == "1300-2600"
    assert t.entry("eyeriss_relative").value is None
    assert t.write_pj("cacti7_sram_8KB_read_64b") == 7.878
    assert t.node_nm == 45


def test_missing_entry_names_the_entry_and_the_file(tmp_path):
    path = table_without(tmp_path, "int8_mult")
    with pytest.raises(ArchsimError) as e:
        EnergyModel(load_arch("sa32_ws"), EnergyTable.load(path))
    assert e.value.field == "int8_mult" and e.value.file == str(path)


def test_unknown_dram_type_names_the_missing_row():
    with pytest.raises(ArchsimError) as e:
        EnergyModel(load_arch("sa32_ws", ["dram.type=ddr9"]))
    assert e.value.field == "dram_ddr9"


def test_a_range_where_a_number_is_needed_is_an_error(tmp_path):
    path = table_without(tmp_path, "dram_lpddr4", replace="dram_lpddr4,pJ/bit,4-8,,somewhere,")
    with pytest.raises(ArchsimError, match="not a number") as e:
        EnergyModel(load_arch("sa32_ws"), EnergyTable.load(path))
    assert e.value.field == "dram_lpddr4"


def test_wrong_unit_is_an_error(tmp_path):
    path = table_without(tmp_path, "dram_lpddr4", replace="dram_lpddr4,pJ/access,512,,somewhere,")
    with pytest.raises(ArchsimError, match="pJ/bit"):
        EnergyModel(load_arch("sa32_ws"), EnergyTable.load(path))


def test_missing_write_energy_in_note_is_an_error(tmp_path):
    path = table_without(tmp_path, "cacti7_sram_8KB_read_64b",
                         replace="cacti7_sram_8KB_read_64b,pJ/access,6.137,26300,CACTI 7,")
    with pytest.raises(ArchsimError) as e:
        EnergyModel(load_arch("sa32_ws"), EnergyTable.load(path))
    assert e.value.field == "cacti7_sram_8KB_read_64b"


def test_missing_or_malformed_file(tmp_path):
    with pytest.raises(ArchsimError) as e:
        EnergyTable.load(tmp_path / "nope.csv")
    assert e.value.file == str(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("entry,value\nint8_mult,0.2\n")
    with pytest.raises(ArchsimError, match="column"):
        EnergyTable.load(bad)


def test_arch_table_path_is_found_beside_the_yaml(tmp_path):
    shutil.copy(DEFAULT_TABLE, tmp_path / "mine.csv")
    yaml_path = tmp_path / "a.yaml"
    yaml_path.write_text(load_arch("sa32_ws").model_dump_json().replace('"default"', '"mine.csv"'))
    arch = load_arch(yaml_path)
    assert EnergyTable.for_arch(arch).path == str(tmp_path / "mine.csv")
    with pytest.raises(ArchsimError) as e:
        EnergyTable.for_arch(load_arch("sa32_ws", ["energy.table=missing.csv"]))
    assert e.value.field == "energy.table"


# -- technology node ---------------------------------------------------------------

def test_nearby_nodes_scale_by_the_stated_rule_far_ones_are_refused(tmp_path):
    assert node_scale(45, 45, "energy") == 1.0
    assert node_scale(45, 40, "energy") == pytest.approx(40 / 45)
    assert node_scale(45, 40, "area") == pytest.approx((40 / 45) ** 2)
    at40 = EnergyModel(load_arch("sa32_ws", ["energy.node_nm=40"]))
    at45 = EnergyModel(load_arch("sa32_ws"))
    ls = counts({"pe_arith.mac": 100}, dram_read_bytes=10)
    e40, e45 = at40.layer_energy_pj(ls), at45.layer_energy_pj(ls)
    assert e40["pe_arith"] == pytest.approx(e45["pe_arith"] * 40 / 45)
    assert e40["dram"] == e45["dram"]  # DRAM is another chip: never scaled
    assert at40.area_um2()["pe_array"] == pytest.approx(at45.area_um2()["pe_array"] * (40 / 45) ** 2)
    assert "40 nm" in at40.scaling_note and not at45.scaling_note
    with pytest.raises(ArchsimError) as e:
        EnergyModel(load_arch("sa32_ws", ["energy.node_nm=22"]))
    assert e.value.field == "energy.node_nm"
    # a table that says it is 22 nm is used at 22 nm, unscaled
    t22 = tmp_path / "t22.csv"
    t22.write_text(DEFAULT_TABLE.read_text() + "technology_node,nm,22,,a 22 nm table,\n")
    m = EnergyModel(load_arch("sa32_ws", ["energy.node_nm=22"]), EnergyTable.load(t22))
    assert m.sram_read_pj(8 * KB) == 6.137


# -- SRAM interpolation ------------------------------------------------------------

@pytest.mark.parametrize("capacity", sorted(CACTI))
def test_interpolation_hits_the_cacti_rows(model, capacity):
    read, write, area = CACTI[capacity]
    assert model.sram_read_pj(capacity) == pytest.approx(read, rel=1e-12)
    assert model.sram_write_pj(capacity) == pytest.approx(write, rel=1e-12)
    assert model.sram_area_um2(capacity) == pytest.approx(area, rel=1e-12)


def test_interpolation_is_log_log_and_clamped(model):
    # halfway between 8 KB and 32 KB on a log axis is 16 KB: the geometric mean
    assert model.sram_read_pj(16 * KB) == pytest.approx(math.sqrt(6.137 * 17.042))
    assert model.sram_read_pj(100) == 1.670 and model.sram_read_pj(64 * 1024 * KB) == 93.519
    assert interp_loglog(2.0, [1.0, 4.0], [1.0, 16.0]) == pytest.approx(4.0)


def test_word_width_scales_energy_not_area(model):
    assert model.sram_read_pj(32 * KB, 128) == pytest.approx(2 * 17.042)
    assert model.sram_write_pj(32 * KB, 32) == pytest.approx(15.397 / 2)


def test_a_bigger_buffer_costs_more_per_access(model):
    caps = [1 * KB, 3 * KB, 8 * KB, 20 * KB, 64 * KB, 100 * KB, 256 * KB, 1024 * KB]
    reads = [model.sram_read_pj(c) for c in caps]
    areas = [model.sram_area_um2(c) for c in caps]
    assert reads == sorted(reads) and len(set(reads)) == len(reads)
    assert areas == sorted(areas) and len(set(areas)) == len(areas)
    small = EnergyModel(load_arch("sa32_ws")).unit_costs()
    big = EnergyModel(load_arch("sa32_ws", ["buffers.weight.capacity_bytes=262144"])).unit_costs()
    cost = lambda costs: next(c["value"] for c in costs if c["name"] == "sram_weight_read_pj")  # noqa: E731
    assert cost(big) > cost(small)


# -- energy by hand ----------------------------------------------------------------

def test_dram_energy_by_hand(model):
    e = model.layer_energy_pj(counts(dram_read_bytes=1000, dram_write_bytes=24))
    assert e["dram"] == pytest.approx(1024 * 8 * 8.0)  # lpddr4: 8 pJ/bit
    hbm = EnergyModel(load_arch("sa32_ws", ["dram.type=hbm2"]))
    assert hbm.layer_energy_pj(counts(dram_read_bytes=1000))["dram"] == pytest.approx(1000 * 8 * 3.9)
    own = EnergyModel(load_arch("sa32_ws", ["dram.energy_pj_per_bit=5.5"]))
    assert own.layer_energy_pj(counts(dram_write_bytes=10))["dram"] == pytest.approx(10 * 8 * 5.5)


MACS = {"pe_arith.mac": 1000, "registers.mac": 1000}


def test_pe_and_register_energy_by_hand(model):
    e = model.layer_energy_pj(counts(MACS))
    assert e["pe_arith"] == pytest.approx(1000 * (INT8_MULT + INT32_ADD))
    assert e["registers"] == pytest.approx(1000 * REG_1B * (8 + 32))
    # 4-bit weights, 16-bit accumulator: multiplier x 4*8/64, adder x 16/32, registers 8 + 16 bits
    narrow = EnergyModel(load_arch("sa32_ws", ["pe_array.weight_bits=4", "pe_array.acc_bits=16"]))
    e = narrow.layer_energy_pj(counts(MACS))
    assert e["pe_arith"] == pytest.approx(1000 * (INT8_MULT * 0.5 + INT32_ADD * 0.5))
    assert e["registers"] == pytest.approx(1000 * REG_1B * 24)


def test_sram_energy_by_hand(model):
    # sa32_ws: weight/input 64 KB, output 32 KB, 64-bit words; 12 bytes -> 2 accesses
    ls = counts()
    ls.sram_read_bytes.update(weight=800, output=12)
    ls.sram_write_bytes.update(input=80)
    e = model.layer_energy_pj(ls)
    assert e["sram_weight"] == pytest.approx(100 * 25.869)
    assert e["sram_input"] == pytest.approx(10 * 19.649)
    assert e["sram_output"] == pytest.approx(2 * 17.042)


def test_every_component_is_reported_and_absent_ones_are_zero(model):
    e = model.layer_energy_pj(counts({"pe_arith.mac": 10}))
    assert tuple(e) == model.components
    assert model.components[:4] == ("dram", "sram_weight", "sram_input", "sram_output")
    assert "codebook" not in e and "decoder" not in e  # sa32_ws has neither
    assert e["dram"] == e["registers"] == 0.0


def test_an_action_nobody_prices_is_an_error(model):
    with pytest.raises(ArchsimError) as e:
        model.layer_energy_pj(counts({"warp_drive.engage": 1}))
    assert e.value.field == "warp_drive"


def test_codebook_and_decoder_energy_by_hand():
    arch = load_arch("vq32_ws")  # 256 x 128-bit codebook = 4 KB; 8 decoder lanes
    m = EnergyModel(arch)
    layer = LayerSpec("c", "conv", M=196, N=64, K=576, in_elems=16 * 16 * 64, fmt=VQFormat(k=256, d=16))
    ls = run(tile([layer], arch), arch).layers[0]
    assert ls.codebook_lookups == 64 * 576 // 16 and ls.codebook_loads == 1
    e = m.layer_energy_pj(ls)
    read4k, write4k = m.sram_read_pj(4 * KB, 128), m.sram_write_pj(4 * KB, 128)
    assert 6.137 * 2 > read4k > 1.670 * 2
    assert e["codebook"] == pytest.approx(ls.codebook_lookups * read4k + 256 * write4k)
    assert e["decoder"] == pytest.approx(ls.codebook_lookups * 128 * REG_1B)


def test_a_vq_run_prices_every_component():
    # (that the components add up to the total is checked on the report rows)
    arch = load_arch("vq32_ws")
    layer = LayerSpec("c", "conv", M=196, N=64, K=576, in_elems=16 * 16 * 64, fmt=VQFormat(k=256, d=16))
    ls = run(tile([layer], arch), arch).layers[0]
    e = EnergyModel(arch).layer_energy_pj(ls)
    assert all(e[c] > 0 for c in e if c != "static" or EnergyModel(arch).static_power_mw > 0)


# -- area -------------------------------------------------------------------------

def test_area_by_hand():
    a = EnergyModel(load_arch("vq32_ws")).area_um2()
    assert set(a) == {"pe_array", "sram_weight", "sram_input", "sram_output", "codebook", "decoder", "total"}
    assert a["pe_array"] == pytest.approx(32 * 32 * (INT8_MULT_UM2 + INT32_ADD_UM2 + (8 + 8 + 32) * REG_1B_UM2))
    assert a["sram_input"] == pytest.approx(209000) and a["sram_output"] == pytest.approx(94900)
    assert 3600 < a["codebook"] < 26300  # 4 KB between the 1 KB and 8 KB rows
    assert a["decoder"] == pytest.approx(8 * 128 * REG_1B_UM2 * 2)
    assert a["total"] == pytest.approx(sum(v for k, v in a.items() if k != "total"))
    dense = EnergyModel(load_arch("sa32_ws")).area_um2()
    assert "codebook" not in dense and "decoder" not in dense


def test_unit_costs_say_where_they_came_from(model):
    costs = model.unit_costs()
    assert {c["name"] for c in costs} >= {"dram_pj_per_bit", "pe_arith.mac", "sram_weight_read_pj"}
    assert all(c["source"] for c in costs)
