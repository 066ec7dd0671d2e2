"""Issue 20's front-door items, end to end where a user would hit them: no
silent wrong answers (run folders never collide, study mistakes refused up
front, one writer per sweep file), every output path checked before the
work, Ctrl-C says what was saved (exit 130), sizes refused up front, and
the small things (--version, help on a bare `archsim`, studies and trained
checkpoints by name, KiB, the same number formats as `run`)."""
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from archsim.cli import format_metrics, main

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGY = ROOT / "tests" / "data" / "scalesim" / "inputs" / "resnet18_sympad.csv"
TOPO = """Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,
c1, 30, 30, 3, 3, 32, 64, 1,
fc, 1, 1, 1, 1, 256, 10, 1,
"""


def _user_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("archsim: error: ") and "Traceback" not in err
    return err


def _study(tmp_path, **kw) -> Path:
    (tmp_path / "topo.csv").write_text(TOPO)
    study = {"name": "t", "workload": {"topology": str(tmp_path / "topo.csv")}, "archs": ["sa32_ws"],
             "space": {"pe_array.rows": {"choices": [8, 16]}}, "objectives": ["latency", "energy"],
             "sampler": "grid", "trials": 10}
    study.update(kw)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, allow_unicode=True))
    return path


# -- version, help, names ------------------------------------------------------------

def test_version_and_help_on_a_bare_archsim(capsys):
    from archsim.version import __version__

    assert main(["--version"]) == 0 and f"archsim {__version__}" in capsys.readouterr().out
    assert subprocess.run([sys.executable, "-m", "archsim", "--version"], capture_output=True,
                          text=True).stdout.startswith(f"archsim {__version__} (cost model ")
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: archsim") and "explore" in out and "archsim list" in out


def test_trained_checkpoints_are_model_names(tmp_path, capsys):
    # before: --model resnet20_fmnist was an unknown model
    from archsim.cli import _model_and_input
    from workloads.zoo.fmnist_models import load_fmnist_model

    model, x = _model_and_input("resnet20_fmnist", 1)
    assert tuple(x.shape) == (1, 1, 32, 32)
    assert all((a == b).all() for a, b in zip(model.state_dict().values(),
                                              load_fmnist_model("resnet20_fmnist").state_dict().values()))
    assert main(["run", "--model", "fmnist_cnn", "--no-plot", "-q", "--out", str(tmp_path)]) == 0
    assert "DRAM KiB" in capsys.readouterr().out  # was "DRAM KB" for values in units of 1024
    err = _user_error(capsys, ["run", "--model", "resnet20_fmnst", "-q", "--out", str(tmp_path)])
    assert "did you mean 'resnet20_fmnist'" in err


def test_studies_are_addressable_by_name_from_any_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "fmnist"]) == 0
    assert "fmnist_hw_x_compression" in capsys.readouterr().out
    assert main(["list"]) == 0
    assert "r20_arrays" in capsys.readouterr().out
    assert "did you mean 'r20_arrays'" in _user_error(capsys, ["explore", "r2O_arrays", "-q"])


# -- silent wrong answers -------------------------------------------------------------

def test_run_folders_never_collide(tmp_path, capsys):
    out = tmp_path / "out"
    base = ["run", "--out", str(out), "--no-plot", "-q"]
    # a copy of a built-in that keeps its `name:`
    copy = tmp_path / "my_sa.yaml"
    shutil.copy(ROOT / "arch_configs" / "sa32_ws.yaml", copy)
    assert main(base + ["--topology", str(TOPOLOGY)]) == 0
    assert main(base + ["--topology", str(TOPOLOGY), "--arch", str(copy)]) == 0
    # a topology whose name has no ASCII form
    cjk = tmp_path / "模型.csv"
    shutil.copy(TOPOLOGY, cjk)
    assert main(base + ["--topology", str(cjk)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 3 and "resnet18_sympad_sa32_ws" in names
    assert all(n.isascii() and not n.startswith(("_", "-")) for n in names), names
    # --profile N: one folder per N, and report.json records N
    for n in ("2", "3"):
        assert main(base + ["--model", "resnet20", "--arch", "stripes16", "--profile", n]) == 0
    for n in (2, 3):
        rep = json.loads((out / f"resnet20_stripes16_profile{n}" / "report.json").read_text())
        assert f"activation profile of {n} inputs" in rep["workload"]


def test_a_typo_in_a_study_is_refused_up_front(tmp_path, capsys):
    # before: exit 0 with "0 feasible"
    err = _user_error(capsys, ["explore", str(_study(tmp_path, space={"pe_array.rowz": {"choices": [8]}})),
                               "--out", str(tmp_path / "o"), "-q"])
    assert "space.pe_array.rowz" in err and "did you mean 'rows'" in err and "--set" not in err
    assert not (tmp_path / "o").exists()
    err = _user_error(capsys, ["validate", str(_study(tmp_path, archs=["sa32_wss"]))])
    assert "archs.0" in err and "did you mean 'sa32_ws'" in err
    err = _user_error(capsys, ["validate", str(_study(tmp_path, workload={"model": "resnet20"}, archs=["vq32_ws"],
                                                      compression={"method": {"choices": ["vq"]},
                                                                   "params": {"vq": {"kk": {"choices": [64]}}}}))])
    assert "compression.params.vq.kk" in err and "did you mean 'k'" in err
    err = _user_error(capsys, ["validate", str(_study(tmp_path, workload={"model": "resnet20"}, compression={
        "method": {"choices": ["none", "swis"]}}))])
    assert "compression.method" in err and "swis" in err  # no base architecture runs SWIS weights
    assert main(["validate", str(_study(tmp_path))]) == 0


def test_two_sweeps_writing_one_file_are_refused(tmp_path, capsys):
    out = tmp_path / "sweep.jsonl"
    with out.open("a") as f:  # another sweep holds the file
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        err = _user_error(capsys, ["sweep", "--topology", str(TOPOLOGY), "--out", str(out), "-q"])
    assert "another sweep" in err and out.read_text() == ""
    assert main(["sweep", "--topology", str(TOPOLOGY), "--out", str(out), "-q"]) == 0
    assert len(out.read_text().splitlines()) == 1


# -- output paths, before any work -----------------------------------------------------

def test_every_output_path_is_checked_before_the_work(tmp_path, capsys):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    topo = ["--topology", str(TOPOLOGY), "-q"]
    assert "is a folder" in _user_error(capsys, ["sweep", *topo, "--out", str(tmp_path)])
    assert "is a file" in _user_error(capsys, ["reproduce", "mvq", "--out", str(a_file), "-q"])
    study = str(_study(tmp_path))
    for argv in (["sweep", *topo, "--out", str(a_file / "s.jsonl")],
                 ["run", *topo, "--out", str(a_file / "o")],
                 ["run", *topo, "--out", str(tmp_path), "--trace", str(a_file / "t.json")],
                 ["explore", study, "--out", str(a_file / "o"), "-q"],
                 ["reproduce", "mvq", "--out", str(a_file / "o"), "-q"]):
        err = _user_error(capsys, argv)
        assert "cannot write here" in err or "is a file; expected a folder" in err, argv
    assert not list(tmp_path.glob("*/report.json"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_output_folder_is_one_line(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        for argv in (["sweep", "--topology", str(TOPOLOGY), "--out", str(ro / "s.jsonl"), "-q"],
                     ["explore", str(_study(tmp_path)), "--out", str(ro), "-q"],
                     ["reproduce", "mvq", "--out", str(ro), "-q"],
                     ["run", "--topology", str(TOPOLOGY), "--out", str(tmp_path), "--trace", str(ro / "t.json")]):
            assert "cannot write here" in _user_error(capsys, argv), argv
    finally:
        ro.chmod(0o755)


# -- Ctrl-C ---------------------------------------------------------------------------

@pytest.mark.parametrize("cmd", ["sweep", "explore"])
def test_ctrl_c_says_what_was_saved_and_exits_130(tmp_path, cmd):
    if cmd == "sweep":
        argv = ["sweep", "--model", "resnet18", "--grid", "pe_array.rows=8,16,32,64,128", "--grid",
                "pe_array.cols=16,32", "--out", str(tmp_path / "s.jsonl")]
    else:
        study = _study(tmp_path, workload={"model": "resnet20"},
                       space={"pe_array.rows": {"choices": [8, 16, 32, 64]}, "pe_array.cols": {"choices": [8, 16]}})
        argv = ["explore", str(study), "--out", str(tmp_path / "o"), "--workers", "1"]
    # SIGINT back to its default in the child: a test run started in the background by a
    # shell (CI scripts, `cmd &`) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt
    proc = subprocess.Popen([sys.executable, "-u", "-m", "archsim", *argv, "-q"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for line in proc.stdout:  # interrupted after its first point, with more to go
            if "simulated" in line or line.startswith("  #"):
                break
        else:
            pytest.fail(proc.stderr.read())
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("archsim: interrupted: ") and "resume" in lines[0]
    if cmd == "sweep":  # what it says was saved was saved
        assert 1 <= len((tmp_path / "s.jsonl").read_text().splitlines()) < 10


# -- sizes ----------------------------------------------------------------------------

def test_batch_is_on_the_command_line_and_in_the_header(tmp_path, capsys):
    assert main(["run", "--model", "resnet20", "--batch", "2", "--no-plot", "-q", "--out", str(tmp_path)]) == 0
    assert "resnet20 (batch 2)" in capsys.readouterr().out.splitlines()[0]
    rep = json.loads((tmp_path / "resnet20_sa32_ws_batch2" / "report.json").read_text())
    assert rep["workload"] == "resnet20 (batch 2)"
    assert "--batch" in _user_error(capsys, ["run", "--topology", str(TOPOLOGY), "--batch", "2"])


def test_a_batch_too_large_is_refused_up_front_naming_the_field(tmp_path, capsys):
    # before: a study with batch 1024 on ResNet-18 hung, then MemoryError
    study = _study(tmp_path, workload={"model": "resnet18", "batch": 1024})
    t0 = time.perf_counter()
    err = _user_error(capsys, ["explore", str(study), "--out", str(tmp_path / "o"), "-q"])
    assert "workload.batch" in err and "batch 1024" in err and ("GiB" in err or "folds" in err)
    err = _user_error(capsys, ["run", "--model", "resnet18", "--batch", "1024", "-q", "--out", str(tmp_path)])
    assert "--batch" in err
    assert time.perf_counter() - t0 < 60  # refused, not attempted


def test_a_profile_larger_than_memory_is_refused(tmp_path, capsys):
    err = _user_error(capsys, ["run", "--model", "resnet18", "--arch", "stripes16", "--profile", "100000", "-q",
                               "--out", str(tmp_path)])
    assert "--profile" in err and "GiB" in err


def test_explore_prints_numbers_as_run_does():
    line = format_metrics({"latency_cycles": 158912, "latency_ms": 0.158912, "energy_uj": 123.456,
                           "utilisation": 0.4567, "area_mm2": 1.5, "accuracy": None})
    assert "158,912 cycles" in line and "45.7%" in line and "0.159 ms" in line and "e+" not in line


def test_a_profile_larger_than_the_data_set_is_capped_with_a_message(tmp_path, capsys, monkeypatch):
    # before: --profile 100000 on the 60,000 training images printed nothing for minutes
    import torch

    import workloads.datasets as ds

    images = torch.randn(12, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(ds, "fashion_mnist_available", lambda: True)
    monkeypatch.setattr(ds, "load_fashion_mnist", lambda split, **kw: (images, torch.zeros(12, dtype=torch.long)))
    assert main(["run", "--model", "fmnist_cnn", "--arch", "pragmatic16", "--profile", "100000", "--no-plot", "-q",
                 "--out", str(tmp_path)]) == 0
    assert "--profile 100,000: Fashion-MNIST has 12 training images; profiling all 12" in capsys.readouterr().err
    rep = json.loads((tmp_path / "fmnist_cnn_pragmatic16_profile12" / "report.json").read_text())
    assert rep["workload"] == "fmnist_cnn (activation profile of 12 inputs)"
