"""Every code block of the README runs as written: ```python blocks are
executed (each in a fresh namespace, in a temporary directory), and every
line of a ```bash block that starts with `archsim` goes through the CLI in a
temporary directory that sees the repository's `arch_configs/` and `tests/`
(the README's commands are written from the repository root). Lines that
install (pip) are not run."""
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"^```(\w+)\n(.*?)^```", README, re.S | re.M)


def _python_blocks():
    return [pytest.param(code, id=f"python-{i}") for i, (lang, code) in enumerate(BLOCKS) if lang == "python"]


def _archsim_lines():
    out = []
    for i, (lang, code) in enumerate(BLOCKS):
        if lang != "bash":
            continue
        for j, line in enumerate(code.replace("\\\n", " ").splitlines()):
            words = shlex.split(line, comments=True)
            if words and words[0] == "archsim":
                out.append(pytest.param(words[1:], id=f"bash-{i}-{j}-{'-'.join(words[1:2])}"))
    return out


def test_the_readme_has_runnable_blocks():
    assert len(_python_blocks()) >= 3 and len(_archsim_lines()) >= 6


@pytest.fixture
def in_repo_like_dir(tmp_path, monkeypatch):
    for name in ("arch_configs", "tests"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("code", _python_blocks())
def test_python_block_runs(code, in_repo_like_dir, capsys):
    from workloads.datasets import fashion_mnist_available

    if "load_fashion_mnist" in code and not fashion_mnist_available():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist or set ARCHSIM_FMNIST_DIR)")
    exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})


@pytest.mark.parametrize("argv", _archsim_lines())
def test_archsim_command_runs(argv, in_repo_like_dir, capsys):
    from archsim.cli import main

    assert main(argv) == 0, capsys.readouterr().err
