"""The command line: the main job works on the built-in default, and every
user mistake is one line on stderr with exit code 2, never a traceback."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from archsim.cli import main
from workloads.datasets import fashion_mnist_available

ROOT = Path(__file__).resolve().parents[1]


def _user_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("archsim: error: ")
    assert "Traceback" not in err
    return err


def test_run_topology_writes_report(tmp_path, capsys, reference_dir):
    topo = reference_dir / "scalesim" / "inputs" / "resnet18_sympad.csv"
    assert main(["run", "--topology", str(topo), "--arch", "sa32_os", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Conv5_2b" in out and "TOTAL" in out
    folder = tmp_path / "resnet18_sympad_sa32_os"
    data = json.loads((folder / "report.json").read_text())
    assert len(data["layers"]) == 21
    assert (folder / "report.png").stat().st_size > 1000
    assert (folder / "report.csv").read_text().count("\n") >= 22


def test_run_with_vq_weights_on_the_vq_accelerator(tmp_path, capsys):
    assert main(["run", "--model", "resnet20", "--arch", "vq32_ws", "--weights", "vq:k=256,d=16",
                 "--out", str(tmp_path), "--no-plot"]) == 0
    data = json.loads((tmp_path / "resnet20_vq32_ws_vq-k=256-d=16" / "report.json").read_text())
    assert data["totals"]["codebook_lookups"] > 0


def test_profile_lets_the_bit_serial_arrays_run_from_the_command_line(tmp_path, capsys):
    err = _user_error(capsys, ["run", "--model", "resnet20", "--arch", "stripes16", "--out", str(tmp_path)])
    assert "--profile N" in err and "pe_array.precision" in err
    assert main(["run", "--model", "resnet20", "--arch", "stripes16", "--profile", "8",
                 "--out", str(tmp_path), "--no-plot"]) == 0
    layers = json.loads((tmp_path / "resnet20_stripes16_profile8" / "report.json").read_text())["layers"]
    assert len(layers) == 22 and all(L["compute_cycles"] > 0 for L in layers)
    assert "--model" in _user_error(capsys, ["run", "--topology", "x.csv", "--profile", "8"])


@pytest.mark.skipif(not fashion_mnist_available(), reason="Fashion-MNIST not installed: "
                    "apt-get install dataset-fashion-mnist")
def test_profile_of_the_trained_model_uses_real_images(tmp_path):
    # fmnist_cnn has trained weights: its profile is of real activations, half of them zero
    # after ReLU, which Pragmatic skips and Stripes (per-layer precision) cannot
    cycles = {}
    for arch in ("stripes16", "pragmatic16"):
        assert main(["run", "--model", "fmnist_cnn", "--arch", arch, "--profile", "64",
                     "--out", str(tmp_path), "--no-plot"]) == 0
        rep = json.loads((tmp_path / f"fmnist_cnn_{arch}_profile64" / "report.json").read_text())
        cycles[arch] = rep["totals"]["compute_cycles"]
    assert cycles["pragmatic16"] < 0.7 * cycles["stripes16"]


def test_validate_ok_and_set_override(capsys):
    assert main(["validate", str(ROOT / "arch_configs" / "sa32_ws.yaml"), "--set", "pe_array.rows=8"]) == 0
    assert "8x32 systolic ws" in capsys.readouterr().out


def test_malformed_yaml(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\npe_array: {rows: 3\n")
    err = _user_error(capsys, ["validate", str(bad)])
    assert str(bad) in err and "malformed YAML" in err


def test_unknown_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "arch_configs" / "sa32_ws.yaml").read_text().replace("clock_mhz:", "clock_mhzz:"))
    err = _user_error(capsys, ["validate", str(bad)])
    assert "clock_mhzz: unknown key" in err


def test_zero_size_via_set(capsys):
    err = _user_error(capsys, ["validate", "sa32_ws", "--set", "buffers.output.capacity_bytes=0"])
    assert "buffers.output.capacity_bytes" in err


def test_buffer_too_small_for_one_tile(capsys, tmp_path):
    err = _user_error(capsys, ["run", "--model", "resnet20", "--set", "buffers.weight.capacity_bytes=256",
                               "--out", str(tmp_path)])
    assert "buffers.weight.capacity_bytes" in err and "too small" in err


def test_unsupported_layer(capsys, tmp_path, monkeypatch):
    import torch.nn as nn

    from workloads import zoo

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.deconv = nn.ConvTranspose2d(1, 2, 3)

        def forward(self, x):
            return self.deconv(x)


    monkeypatch.setitem(zoo.MODELS, "deconv_net", zoo.ZooEntry(lambda **kw: Net(), (1, 5, 5)))
    err = _user_error(capsys, ["run", "--model", "deconv_net", "--out", str(tmp_path)])
    assert "deconv" in err and "unsupported" in err


def test_unknown_model_and_bad_weights(capsys, tmp_path):
    assert "model" in _user_error(capsys, ["run", "--model", "resnet999", "--out", str(tmp_path)])
    assert "--weights" in _user_error(capsys, ["run", "--model", "resnet20", "--weights", "vq:k", "--out", str(tmp_path)])


def test_module_entry_point_exit_code(tmp_path):
    r = subprocess.run([sys.executable, "-m", "archsim", "validate", str(tmp_path / "missing.yaml")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "missing.yaml" in r.stderr


TOPOLOGY = ROOT / "tests" / "data" / "scalesim" / "inputs" / "resnet18_sympad.csv"


def test_runs_that_differ_write_different_folders(tmp_path, capsys):
    from archsim.cli import run_dir_name

    base = ["run", "--topology", str(TOPOLOGY), "--out", str(tmp_path), "--no-plot", "--quiet"]
    assert main(base) == 0
    assert main(base + ["--weights", "dense:bits=4"]) == 0
    assert main(base + ["--set", "pe_array.rows=16"]) == 0
    folders = sorted(p.name for p in tmp_path.iterdir())
    assert folders == ["resnet18_sympad_sa32_ws", "resnet18_sympad_sa32_ws_dense-bits=4",
                       "resnet18_sympad_sa32_ws_pe_array.rows=16"]
    data = json.loads((tmp_path / "resnet18_sympad_sa32_ws_pe_array.rows=16" / "report.json").read_text())
    assert data["overrides"] == ["pe_array.rows=16"] and data["workload"] == "resnet18_sympad"
    assert "rows=16 from --set" in data["arch_spec"]["pe_array"]["source"]
    data = json.loads((tmp_path / "resnet18_sympad_sa32_ws_dense-bits=4" / "report.json").read_text())
    assert data["weights"] == "dense:bits=4"
    assert "resnet18_sympad, weights dense:bits=4, on sa32_ws" in capsys.readouterr().out
    long = run_dir_name("m", "a", "vq:k=256,d=16", [f"buffers.weight.capacity_bytes={i}" for i in range(9)])
    assert len(long) <= 80 and long.startswith("m_a_vq-k=256-d=16_buffers")
    assert long != run_dir_name("m", "a", "vq:k=256,d=16", [f"buffers.weight.capacity_bytes={i}" for i in range(10)])
    assert all(c.isalnum() or c in "._=+-" for c in long)


def test_same_run_writes_the_same_report_json(tmp_path):
    for out in ("a", "b"):
        assert main(["run", "--topology", str(TOPOLOGY), "--arch", "sa32_os", "--set", "pe_array.rows=16",
                     "--out", str(tmp_path / out), "--no-plot", "--quiet"]) == 0
    name = "resnet18_sympad_sa32_os_pe_array.rows=16"
    a, b = (tmp_path / out / name / "report.json" for out in ("a", "b"))
    assert a.read_bytes() == b.read_bytes()


def test_every_argument_has_help_and_weights_help_lists_every_format():
    import argparse
    import dataclasses

    from archsim.cli import build_parser
    from archsim.ir.formats import _all_formats

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subs.choices) == {"run", "sweep", "validate", "list", "explore", "reproduce"}
    for name, sp in subs.choices.items():
        for action in sp._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and action.help != argparse.SUPPRESS, f"{name} {action.dest}: no help"
        assert any("--quiet" in a.option_strings for a in sp._actions), name
    text = subs.choices["run"].format_help()
    weights = next(a for a in subs.choices["run"]._actions if a.dest == "weights").help
    from archsim.cli import compress_defaults

    for cls in _all_formats():
        assert f"{cls.name}: " in weights
        line = next(x for x in weights.split("(defaults): ", 1)[1].split("; ") if x.startswith(f"{cls.name}: "))
        for f in dataclasses.fields(cls):  # the default is compress()'s where it has one
            assert f"{f.name}={compress_defaults(cls.name).get(f.name, f.default)}" in line
    assert "vq:k=256,d=16" in text


def test_list_shows_formats_and_compression_methods(capsys):
    from workloads.compression import METHODS
    from archsim.ir.formats import _all_formats

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "weight formats" in out and "compression methods" in out
    for cls in _all_formats():
        assert f"\n  {cls.name}: " in out
    for m in METHODS:
        assert f"\n  {m}(" in out
    assert "mvq(n=2, m=4, k=256, d=16" in out
