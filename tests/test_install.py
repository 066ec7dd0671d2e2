"""A non-editable `pip install .` works from any directory: the built-in
architectures, the energy table, the trained checkpoint and the plotting
helpers are installed with the code (nothing is read from the checkout).

Slow-ish (about a minute): builds the package into a fresh virtual
environment that reuses the system's torch, numpy... (--system-site-packages,
--no-deps), then runs every command from an empty directory."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGY = ROOT / "tests" / "data" / "scalesim" / "inputs" / "resnet18_sympad.csv"


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    base = tmp_path_factory.mktemp("install")
    src = base / "src"  # build from a copy: pip's in-tree build must not litter the checkout
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.egg-info", "build", "dist", "archsim_out", ".pytest_cache"))
    env_dir = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(env_dir)], check=True)
    py = env_dir / "bin" / "python"  # no pip of its own: the system pip and setuptools build it
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                        str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    shutil.rmtree(src)  # the installed package must not need its source
    work = base / "elsewhere"
    work.mkdir()
    return env_dir, work


def _run(venv, *args, ok=True):
    env_dir, work = venv
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env['PATH']}"
    r = subprocess.run(list(args), cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert (r.returncode == 0) == ok, f"{args}: rc={r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def test_installed_package_is_the_one_used(venv):
    env_dir, _ = venv
    out = _run(venv, "python", "-c", "import archsim, workloads, plots; print(archsim.__file__); "
               "print(workloads.__file__); print(plots.__file__)")
    for line in out.split():
        assert str(env_dir) in line, out


def test_every_command_works_from_another_directory(venv):
    env_dir, work = venv
    out = _run(venv, "archsim", "list")
    assert "sa32_ws" in out and "vq32_ws" in out and "resnet18" in out
    assert "sa32_ws: ok" in _run(venv, "archsim", "validate", "sa32_ws")
    out = _run(venv, "archsim", "run", "--topology", str(TOPOLOGY), "--arch", "sa32_os", "--no-plot", "--quiet")
    assert "TOTAL" in out and (work / "archsim_out").is_dir()
    out = _run(venv, "archsim", "sweep", "--topology", str(TOPOLOGY), "--grid", "pe_array.rows=16,32",
               "--out", "s.jsonl", "--plot", "p.png", "--quiet")
    assert "Pareto front" in out and (work / "p.png").stat().st_size > 1000


def test_installed_checkpoint_and_energy_table(venv):
    out = _run(venv, "python", "-c", "from workloads import zoo; from archsim.energy import EnergyTable; "
               "m = zoo.build('fmnist_cnn', pretrained=True); print(sum(p.numel() for p in m.parameters())); "
               "print(EnergyTable.default().path)")
    n, table = out.split()
    assert int(n) == 241898 and str(venv[0]) in table
