"""Every (weight format, PE kind, decoder) triple either runs by a stated
rule or is refused in one line before tiling (archsim.hw.compat), and the
command line says which architecture runs which format."""
import pytest

from archsim.cli import main
from archsim.config import load_arch
from archsim.ir.errors import ArchsimError
from archsim.hw import compat, registry
from archsim.ir.formats import _all_formats
from archsim.ir.layer_spec import LayerSpec
from archsim.tiling import tile


def _fmt(name):
    return next(c for c in _all_formats() if c.name == name)()


def test_every_triple_has_a_verdict_with_its_rule_or_reason():
    rows = compat.table()
    formats, kinds = compat.format_names(), registry.kinds("pe_array")
    assert len(rows) == len(formats) * len(kinds) * (1 + len(registry.kinds("decoder")))
    for f, k, d, ok, text in rows:
        assert text and "\n" not in text, (f, k, d)
        if not ok:
            assert f in text or "decoder" in text, (f, k, d, text)
    verdict = {(f, k, d): ok for f, k, d, ok, _ in rows}
    # what the issue found running silently is refused; what the papers' arrays run is run
    assert not verdict[("pq", "systolic", "-")] and not verdict[("nm", "systolic", "-")]
    assert not verdict[("swis", "systolic", "vq_decoder")] and not verdict[("ssvq", "systolic", "vq_decoder")]
    assert verdict[("ssvq", "systolic", "sign_vq_decoder")] and verdict[("mvq", "mvq_sparse", "mvq_loader")]
    assert verdict[("swis", "swis_bitserial", "-")] and verdict[("pq", "pq_lut", "-")]
    assert verdict[("vq", "systolic", "vq_decoder")] and not verdict[("vq", "systolic", "-")]


@pytest.mark.parametrize("arch_name", ["sa32_ws", "vq32_ws", "ssvq32_ws", "mvq64", "swis16_ws", "pqa",
                                       "stripes16"])
def test_tiling_runs_exactly_the_formats_the_table_allows(arch_name):
    """Walk every format on the built-in architectures of every PE kind and
    decoder: a refused one is an ArchsimError naming the layer and a field,
    raised before any node is made; an allowed one tiles (or fails only for a
    reason of its own parameters, never for the pair)."""
    arch = load_arch(arch_name)
    allowed = compat.arch_formats(arch)
    for name in compat.format_names():
        L = LayerSpec(name="c", op="linear", M=4, N=16, K=64)
        L.fmt = _fmt(name).for_layer(L)
        if name in ("mvq", "nm") and arch.pe_array.kind in ("mvq_sparse", "nm_systolic"):
            L.fmt = type(L.fmt)(**{**L.fmt.__dict__, "n": arch.pe_array.n, "m": arch.pe_array.m})
        if name not in allowed:
            with pytest.raises(ArchsimError) as e:
                tile([L], arch)
            assert "layer c" in e.value.message and e.value.field in ("pe_array.kind", "codebook", "decoder")
        else:
            try:
                tile([L], arch)
            except ArchsimError as e:  # e.g. a profile the bit-serial arrays need; never "runs ... only"
                assert "weights only" not in e.message and "need a codebook" not in e.message


def test_a_pattern_the_sparse_array_is_not_built_for_is_refused_on_the_command_line(tmp_path, capsys):
    # before: --weights mvq (2:4) on the 1:4 mvq64 ran dense, 3.268 ms, with nothing on the screen
    assert main(["run", "--model", "resnet20", "--arch", "mvq64", "--weights", "mvq", "--no-plot", "-q",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "2:4" in err and "1:4" in err and "pe_array.n" in err
    assert main(["run", "--model", "resnet20", "--arch", "mvq64", "--weights", "mvq:n=1,m=4", "--no-plot", "-q",
                 "--out", str(tmp_path)]) == 0
    assert "1:4 sparse" in (tmp_path / "resnet20_mvq64_mvq-n=1-m=4" / "report.csv").read_text()


@pytest.mark.parametrize("arch,weights", [("sa32_ws", "pq"), ("sa32_ws", "nm"), ("vq32_ws", "swis"),
                                          ("vq32_ws", "ssvq"), ("sa32_ws", "vq")])
def test_formats_the_architecture_cannot_execute_are_one_line_exit_2(tmp_path, capsys, arch, weights):
    assert main(["run", "--model", "resnet20", "--arch", arch, "--weights", weights, "--no-plot", "-q",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("archsim: error: ") and weights in err
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_list_prints_which_architecture_runs_which_format(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "  sa32_ws: systolic: dense, trunc\n" in out
    assert "  ssvq32_ws: systolic + sign_vq_decoder: " in out and "ssvq" in out.split("ssvq32_ws:")[1].split("\n")[0]
    assert "which format runs on which PE kind" in out and "    pq (decoder -, " in out


def test_weights_defaults_are_compress_defaults():
    import inspect

    from archsim.cli import _parse_format
    from workloads.compression import METHODS

    for name in ("ssvq", "trunc", "mvq", "vq", "swis", "nm", "pq"):
        fmt = _parse_format(name)
        sig = inspect.signature(METHODS[name]).parameters
        for k, v in fmt.__dict__.items():
            if k in sig and k != "scale_bits":
                assert v == sig[k].default, (name, k)
    assert _parse_format("ssvq").d == 16 and _parse_format("trunc").bits == 4
    assert _parse_format("ssvq:d=4").d == 4
