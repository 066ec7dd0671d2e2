"""The command line: the main job works on the built-in default, and every
user mistake is one line on stderr with exit code 2, never a traceback."""
import json
import subprocess
import sys
from pathlib import Path


from archsim.cli import main

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


def test_validate_ok_and_set_override(capsys):
    assert main(["validate", str(ROOT / "arch_configs" / "sa32_ws.yaml"), "--set", "pe_array.rows=8"]) == 0
    assert "8x32 ws" in capsys.readouterr().out


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
