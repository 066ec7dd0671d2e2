"""Architecture YAMLs: validated before anything runs; every mistake names the
file and the field."""
import pytest

from archsim.config import ARCH_DIR, load_arch
from archsim.ir.errors import ArchsimError

GOOD = (ARCH_DIR / "sa32_ws.yaml").read_text()


@pytest.mark.parametrize("name", sorted(p.stem for p in ARCH_DIR.glob("*.yaml")))
def test_every_shipped_architecture_validates(name):
    arch = load_arch(name)
    assert arch.name == name
    assert arch.pe_array.rows > 0


def test_reference_configs_equal_scalesim_cfgs(reference_dir):
    import configparser

    for df in ("ws", "os"):
        cfg = configparser.ConfigParser()
        cfg.read(reference_dir / "scalesim" / "inputs" / f"sa32_{df}_calc.cfg")
        a = cfg["architecture_presets"]
        arch = load_arch(f"sa32_{df}")
        assert arch.pe_array.rows == int(a["ArrayHeight"]) and arch.pe_array.cols == int(a["ArrayWidth"])
        assert arch.pe_array.dataflow == a["Dataflow"].strip()
        assert arch.buffers.input.capacity_bytes == int(a["IfmapSramSzkB"]) * 1024
        assert arch.buffers.weight.capacity_bytes == int(a["FilterSramSzkB"]) * 1024
        assert arch.buffers.output.capacity_bytes == int(a["OfmapSramSzkB"]) * 1024


def _write(tmp_path, text):
    p = tmp_path / "arch.yaml"
    p.write_text(text)
    return p


def _err(path, overrides=()):
    with pytest.raises(ArchsimError) as e:
        load_arch(path, list(overrides))
    return e.value


def test_malformed_yaml(tmp_path):
    e = _err(_write(tmp_path, GOOD.replace("rows: 32", "rows: [32")))
    assert str(tmp_path / "arch.yaml") in str(e) and "malformed YAML" in str(e)
    assert e.field.startswith("line ")


def test_unknown_key(tmp_path):
    e = _err(_write(tmp_path, GOOD.replace("rows: 32", "rows: 32\n  rowz: 4")))
    assert e.field == "pe_array.rowz" and "unknown key" in str(e)


@pytest.mark.parametrize("field,value", [("pe_array.rows", 0), ("buffers.input.capacity_bytes", -5),
                                         ("dram.bandwidth_bytes_per_cycle", 0)])
def test_zero_or_negative_sizes(field, value):
    # the value came from the override, so the error names the override, not the YAML (issue 9, item 7)
    e = _err("sa32_ws", [f"{field}={value}"])
    assert e.field == field and e.file == f"--set {field}={value}" and "sa32_ws.yaml" not in str(e)


def test_error_in_the_file_still_names_the_file(tmp_path):
    e = _err(_write(tmp_path, GOOD.replace("rows: 32", "rows: -4")), ["pe_array.cols=8"])
    assert e.field == "pe_array.rows" and e.file == str(tmp_path / "arch.yaml")


def test_bad_dataflow_and_missing_section(tmp_path):
    assert _err("sa32_ws", ["pe_array.dataflow=xy"]).field == "pe_array.dataflow"
    text = GOOD.split("pe_array:")[0]
    assert _err(_write(tmp_path, text)).field == "pe_array"


def test_overrides_change_fields_and_unknown_override_is_refused():
    arch = load_arch("sa32_ws", ["pe_array.rows=64", "dram.bandwidth_bytes_per_cycle=12.5"])
    assert arch.pe_array.rows == 64 and arch.dram.bandwidth_bytes_per_cycle == 12.5
    assert _err("sa32_ws", ["pe_array.nope=1"]).field == "pe_array.nope"
    assert _err("sa32_ws", ["nosuch.section.x=1"]).field == "nosuch"
    assert _err("sa32_ws", ["rows"]).field == "--set"


def test_missing_file():
    e = _err("no_such_arch")
    assert e.file == "no_such_arch" and "built-in" in str(e)


def test_double_buffering_halves_the_largest_tile():
    assert load_arch("sa32_ws").buffers.output.tile_limit_bytes == 16384
    single = load_arch("sa32_ws", ["buffers.output.double_buffered=false"])
    assert single.buffers.output.tile_limit_bytes == 32768


def test_an_override_says_so_in_the_source_of_its_block():
    base = load_arch("sa32_ws")
    arch = load_arch("sa32_ws", ["pe_array.rows=64", "buffers.weight.capacity_bytes=4096", "clock_mhz=500"])
    assert arch.pe_array.source == base.pe_array.source + "; rows=64 from --set"
    assert arch.buffers.weight.source.endswith("; capacity_bytes=4096 from --set")
    assert arch.source.endswith("; clock_mhz=500 from --set")
    assert arch.buffers.input.source == base.buffers.input.source and arch.dram.source == base.dram.source
    again = arch.with_overrides(["pe_array.cols=16"])
    assert again.pe_array.source.endswith("rows=64 from --set; cols=16 from --set")
