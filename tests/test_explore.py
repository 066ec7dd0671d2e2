"""`archsim explore`: study files, Optuna search on SQLite, executors (local
pool, Dask LocalCluster), resume after kill -9, accuracy in the loop."""
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from archsim.cli import main
from archsim.config import load_arch
from archsim.energy import EnergyTable
from archsim.ir.errors import ArchsimError
from archsim.explore import LocalExecutor, evaluate_point, evaluate_points, explore, results_dataframe
from archsim.study import load_study
from workloads.datasets import fashion_mnist_available
from workloads.scalesim_import import read_topology

ROOT = Path(__file__).resolve().parents[1]
TOPO = """Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,
c1, 30, 30, 3, 3, 32, 64, 1,
c2, 16, 16, 3, 3, 64, 64, 1,
fc, 1, 1, 1, 1, 256, 10, 1,
"""


def write_study(tmp_path, **kw) -> Path:
    (tmp_path / "topo.csv").write_text(TOPO)
    study = {"name": "t", "workload": {"topology": str(tmp_path / "topo.csv")}, "archs": ["sa32_ws", "sa32_os"],
             "space": {"pe_array.rows": {"choices": [8, 16, 32]},
                       "dram.bandwidth_bytes_per_cycle": {"choices": [4.0, 25.6]}},
             "objectives": ["latency", "energy"], "sampler": "grid", "trials": 100}
    study.update(kw)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def serial_metrics(tmp_path, arch, overrides):
    arch_spec = load_arch(arch)
    return evaluate_point(read_topology(tmp_path / "topo.csv"), arch_spec.model_dump(), arch, overrides,
                          EnergyTable.for_arch(arch_spec))


def test_a_grid_study_runs_every_point_once_and_matches_a_serial_run(tmp_path):
    study = load_study(write_study(tmp_path))
    ostudy = explore(study, tmp_path / "out", LocalExecutor(2))
    df = results_dataframe(ostudy)
    assert len(df) == 12 and (df["state"] == "COMPLETE").all()
    keys = df[["param:arch", "param:pe_array.rows", "param:dram.bandwidth_bytes_per_cycle"]].apply(tuple, axis=1)
    assert keys.is_unique
    r = df.iloc[5]
    ov = [f"pe_array.rows={r['param:pe_array.rows']}",
          f"dram.bandwidth_bytes_per_cycle={r['param:dram.bandwidth_bytes_per_cycle']}"]
    assert serial_metrics(tmp_path, r["param:arch"], ov)["latency_ms"] == r["latency_ms"]
    # a second run of a finished study does nothing more
    assert len(results_dataframe(explore(study, tmp_path / "out", LocalExecutor(1)))) == 12


def test_nsga2_with_constraints_and_csv_and_plot(tmp_path, capsys):
    path = write_study(tmp_path, sampler="auto", trials=8, objectives=["latency", "energy", "area"],
                       constraints=["area <= 1.0"])
    assert main(["explore", str(path), "--out", str(tmp_path / "o"), "--workers", "2",
                 "--csv", str(tmp_path / "r.csv"), "--plot", str(tmp_path / "p.png")]) == 0
    out = capsys.readouterr().out
    assert "Pareto front" in out
    import pandas as pd

    df = pd.read_csv(tmp_path / "r.csv")
    assert len(df) == 8
    assert (df["feasible"] == (df["area_mm2"] <= 1.0)).all()
    assert (tmp_path / "p.png").stat().st_size > 10_000


@pytest.mark.parametrize("edit,field", [
    ({"bogus": 1}, "bogus"),
    ({"constraints": ["area < 2"]}, "constraints"),
    ({"space": {"pe_array.rows": {"range": [8, 64]}}}, "sampler"),  # grid needs choices
    ({"objectives": ["accuracy"]}, "workload.checkpoint"),
    ({"space": {"pe_array.rows": {"choices": []}}}, "space.pe_array.rows"),
])
def test_bad_study_is_one_line_naming_file_and_field(tmp_path, capsys, edit, field):
    path = write_study(tmp_path, **edit)
    with pytest.raises(ArchsimError) as e:
        load_study(path)
    assert e.value.file == str(path) and e.value.field.startswith(field.split(".")[0])
    assert main(["explore", str(path), "--out", str(tmp_path / "o")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def _complete(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as c:
            return c.execute("select count(*) from trials where state = 'COMPLETE'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_kill_9_mid_study_resumes_with_no_point_lost_or_done_twice(tmp_path):
    # a bigger grid so that the run is still going when it is killed
    path = write_study(tmp_path, archs=["sa32_ws"], space={"pe_array.rows": {"choices": [4, 8, 16, 32]},
                                                           "pe_array.cols": {"choices": [8, 16, 32]},
                                                           "dram.bandwidth_bytes_per_cycle": {"choices": [2.0, 25.6]}})
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "archsim.cli", "explore", str(path), "--out", str(out), "--workers", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = out / "t.db"
    deadline = time.time() + 120
    while _complete(db) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the study finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # its pool workers notice and end too, instead of waiting forever
    deadline = time.time() + 10
    while _processes_running(str(path)) and time.time() < deadline:
        time.sleep(0.1)
    assert not _processes_running(str(path))
    killed_at = _complete(db)
    assert 3 <= killed_at < 24
    assert subprocess.run(cmd[:-1] + ["2"], cwd=tmp_path, env=env, capture_output=True).returncode == 0
    df = results_dataframe(explore(load_study(path), out, LocalExecutor(1)))
    assert len(df) == 24 and (df["state"] == "COMPLETE").all()
    keys = df[[c for c in df.columns if c.startswith("param:")]].apply(tuple, axis=1)
    assert keys.is_unique  # every grid point exactly once


def _processes_running(arg: str) -> list[int]:
    """Live processes whose command line has `arg` (Linux /proc)."""
    pids = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and arg in (d / "cmdline").read_bytes().decode(errors="replace") \
                    and (d / "stat").read_text().split(")")[-1].split()[0] != "Z":
                pids.append(int(d.name))
        except OSError:
            continue
    return pids


def _dies_once(*args):
    """A job whose worker process dies the first time (os._exit: no exception, no cleanup)."""
    marker = Path(os.environ["ARCHSIM_TEST_DIE_ONCE"])
    if not marker.exists():
        marker.write_text("died")
        os._exit(1)
    return evaluate_points(*args)


def test_a_worker_that_dies_loses_only_its_points_which_are_retried(tmp_path, monkeypatch):
    import archsim.explore as ex

    monkeypatch.setenv("ARCHSIM_TEST_DIE_ONCE", str(tmp_path / "died"))
    monkeypatch.setattr(ex, "evaluate_points", _dies_once)  # the pool forks after this
    df = results_dataframe(explore(load_study(write_study(tmp_path)), tmp_path / "out", LocalExecutor(2)))
    assert (tmp_path / "died").exists()
    assert len(df) == 12 and (df["state"] == "COMPLETE").all()
    assert df[[c for c in df.columns if c.startswith("param:")]].apply(tuple, axis=1).is_unique


def test_grid_points_that_share_a_mapping_run_together(tmp_path):
    # arch x rows x bandwidth: the two bandwidths of one (arch, rows) are consecutive trials,
    # so one job (one tile graph) serves both
    df = results_dataframe(explore(load_study(write_study(tmp_path)), tmp_path / "out", LocalExecutor(1)))
    df = df.sort_values("trial").reset_index(drop=True)
    pairs = df[["param:arch", "param:pe_array.rows"]].apply(tuple, axis=1)
    assert all(pairs[i] == pairs[i + 1] for i in range(0, 12, 2))
    assert pairs.nunique() == 6


def test_dask_local_cluster_gives_the_serial_results(tmp_path):
    import distributed
    from archsim.explore import DaskExecutor

    study = load_study(write_study(tmp_path, space={"pe_array.rows": {"choices": [8, 32]}}))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        ex = DaskExecutor(client=client)
        assert ex.workers == 2
        df = results_dataframe(explore(study, tmp_path / "dask", ex))
    serial = results_dataframe(explore(study, tmp_path / "serial", LocalExecutor(1)))
    cols = ["param:arch", "param:pe_array.rows", "latency_ms", "energy_uj"]
    a = df[cols].sort_values(cols[:2]).reset_index(drop=True)
    b = serial[cols].sort_values(cols[:2]).reset_index(drop=True)
    assert len(a) == 4 and a.equals(b)


@pytest.mark.skipif(not fashion_mnist_available(), reason="Fashion-MNIST not installed: "
                    "apt-get install dataset-fashion-mnist")
def test_accuracy_in_the_loop_is_computed_once_per_setting(tmp_path, monkeypatch):
    path = tmp_path / "acc.yaml"
    path.write_text(yaml.safe_dump({
        "name": "acc", "workload": {"checkpoint": "fmnist_cnn", "eval_images": 300, "calib_batches": 1},
        "space": {"pe_array.rows": {"choices": [16, 32]}},
        "compression": {"method": {"choices": ["none", "int"]}, "params": {"int": {"bits": {"choices": [4]}}}},
        "objectives": ["latency", "accuracy"], "constraints": ["accuracy >= fp32 - 5"], "sampler": "grid",
        "trials": 10}))
    import workloads.compression as comp

    calls = []
    real = comp.compress
    monkeypatch.setattr(comp, "compress", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    # on the client (as with Dask, whose workers need not have the data set)
    df = results_dataframe(explore(load_study(path), tmp_path / "o", _ClientSettings(1)))
    assert len(df) == 4 and df["accuracy"].between(50, 100).all()
    assert calls == ["int"]  # one compression for the one compressed setting, reused by both arrays
    by_method = df.groupby("param:method")["accuracy"].nunique()
    assert (by_method == 1).all()
    assert len(list((tmp_path / "o" / "cache").glob("*.json"))) == 2  # none, int:4
    # on the local pool's workers: each setting submitted once, the same numbers
    pool = _Recording(2)
    df2 = results_dataframe(explore(load_study(path), tmp_path / "pool", pool))
    assert [c for c in pool.calls if c[0] == "compute_setting"] == [("compute_setting", "int", {"bits": 4})]
    cols = ["param:method", "param:pe_array.rows", "accuracy", "latency_ms"]
    key = ["param:method", "param:pe_array.rows"]
    assert df[cols].sort_values(key).reset_index(drop=True).equals(df2[cols].sort_values(key).reset_index(drop=True))


class _ClientSettings(LocalExecutor):
    shares_files = False


class _Recording(LocalExecutor):
    """The local pool, recording what is submitted to it."""

    def __init__(self, workers):
        super().__init__(workers)
        self.calls = []

    def submit(self, fn, args):
        self.calls.append((fn.__name__, *args[2:]) if fn.__name__ == "compute_setting" else (fn.__name__,))
        return super().submit(fn, args)


@pytest.mark.skipif(not fashion_mnist_available(), reason="Fashion-MNIST not installed: "
                    "apt-get install dataset-fashion-mnist")
def test_finetune_steps_fine_tune_each_setting_before_it_is_scored(tmp_path):
    # ResNet-20 takes 32x32 inputs: calibration, fine-tuning and test images are padded
    def study(steps):
        path = tmp_path / f"ft{steps}.yaml"
        path.write_text(yaml.safe_dump({
            "name": f"ft{steps}", "workload": {"checkpoint": "resnet20_fmnist", "eval_images": 300,
                                               "calib_batches": 1, "finetune_steps": steps},
            "compression": {"method": {"choices": ["none", "int"]}, "params": {"int": {"bits": {"choices": [2]}}}},
            "objectives": ["latency", "accuracy"], "sampler": "grid", "trials": 2}))
        df = results_dataframe(explore(load_study(path), tmp_path / "o", LocalExecutor(1)))
        return df.set_index("param:method")

    plain, tuned = study(0), study(10)
    assert plain.loc["none", "accuracy"] == tuned.loc["none", "accuracy"] > 90  # FP32 is never fine-tuned
    assert tuned.loc["int", "accuracy"] > plain.loc["int", "accuracy"] + 5  # INT2 recovers with 10 steps
    assert tuned.loc["int", "latency_ms"] == plain.loc["int", "latency_ms"]  # the same formats
    assert len(list((tmp_path / "o" / "cache").glob("*.json"))) == 3  # none is shared


def test_compare_two_designs_draws_their_per_layer_breakdown(tmp_path, capsys):
    path = write_study(tmp_path, space={"pe_array.rows": {"choices": [8, 32]}})
    out = tmp_path / "o"
    assert main(["explore", str(path), "--out", str(out), "--workers", "1", "--compare", "0,3",
                 "--compare-plot", str(tmp_path / "cmp.png")]) == 0
    assert (tmp_path / "cmp.png").stat().st_size > 10_000
    from archsim.explore import design_report

    study = load_study(path)
    df = results_dataframe(explore(study, out, LocalExecutor(1))).set_index("trial")
    assert design_report(study, out, 3).totals["latency_ms"] == df.loc[3, "latency_ms"]
    assert main(["explore", str(path), "--out", str(out), "--compare", "0,99"]) == 2
    assert "--compare" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted((ROOT / "arch_configs" / "studies").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_study_validates(path):
    study = load_study(path)
    assert study.trials > 0 and study.objectives
