"""A non-editable `pip install .` works from any directory: the built-in
architectures, the energy table, the trained checkpoint and the plotting
helpers are installed with the code (nothing is read from the checkout), the
build leaves nothing in the source tree, and a user's own hardware kind,
installed from its own package (examples/my_pe_kind), is found through its
entry point.

Slow-ish (about a minute): builds the package into a fresh virtual
environment that sees the packages of the environment running the tests
(torch, numpy..., pip and setuptools: a .pth file lists its site-packages
folders), so nothing is downloaded, then runs every command from an empty
directory. It works the same from the system Python and from inside a venv."""
import os
import shutil
import subprocess
import sys
import sysconfig
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
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    py = env_dir / "bin" / "python"
    # `--system-site-packages` would show the base interpreter's packages, not
    # those of a venv running the tests; list this interpreter's site folders
    # instead (after the new venv's own, so what is installed there wins).
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    outer = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    outer += [sysconfig.get_paths()[k] for k in ("purelib", "platlib")]
    (Path(site) / "_outer_env.pth").write_text("\n".join(dict.fromkeys(outer)) + "\n")
    # pip and the build backend (setuptools, from the test extra) come from the
    # outer environment: an offline build, no build isolation
    for pkg in (src, src / "examples" / "my_pe_kind"):
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                            str(pkg)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    left = sorted(p.name for p in [*src.glob("build"), *src.glob("*.egg-info")])
    assert not left, f"pip install . left {left} in the source tree"
    shutil.rmtree(src)  # the installed package must not need its source
    work = base / "elsewhere"
    work.mkdir()
    return env_dir, work


def _run(venv, *args, ok=True):
    env_dir, work = venv
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env['PATH']}"
    r = subprocess.run(list(args), cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == (0 if ok else 2), f"{args}: rc={r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout if ok else r.stderr


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


def test_a_users_own_pe_kind_installed_from_its_package(venv):
    """examples/my_pe_kind, pip-installed beside archsim, registers its kind
    through the `archsim.hw` entry point; archsim's files are not touched."""
    yaml_path = ROOT / "examples" / "my_pe_kind" / "my_pipelined32.yaml"
    assert "pipelined_systolic" in _run(venv, "python", "-c", "from archsim.hw import registry; "
                                        "print(registry.kinds('pe_array'))")
    out = _run(venv, "archsim", "run", "--model", "resnet20", "--arch", str(yaml_path), "--no-plot", "--quiet")
    assert "on my_pipelined32" in out and "TOTAL" in out
    base = _run(venv, "archsim", "run", "--model", "resnet20", "--arch", "sa32_ws", "--no-plot", "--quiet")
    cycles = lambda text: int(next(l for l in text.splitlines() if l.startswith("TOTAL")).split()[1].replace(",", ""))
    assert cycles(out) > cycles(base)  # every fold drains 2 cycles later
    # its own field is checked like a built-in one
    bad = yaml_path.read_text().replace("mult_stages: 3", "mult_stages: 0")
    (venv[1] / "bad.yaml").write_text(bad)
    err = _run(venv, "archsim", "validate", "bad.yaml", ok=False)
    assert "bad.yaml: pe_array.mult_stages" in err and len(err.strip().splitlines()) == 1, err


def test_no_build_output_is_tracked():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "--", "*.egg-info", "*.egg-info/*", "build/*", "dist/*"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert out == "", out
