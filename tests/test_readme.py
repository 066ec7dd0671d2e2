"""Every code block of the README and of docs/*.md runs as written: ```python
blocks are executed (each in a fresh namespace, in a temporary directory),
and every line of a ```bash block that starts with `archsim` goes through the
CLI in a temporary directory that sees the repository's `arch_configs/`,
`examples/` and `tests/` (the commands are written from the repository root).
Lines that install (pip) are not run; ```text blocks are output or commands
that need something else (a cluster, a plug-in installed). The README's
install and test commands are the ones CI runs, verbatim."""
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
# the generated field reference has no code blocks to run
DOCS = [ROOT / "README.md"] + sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "arch_yaml_reference.md")
BLOCKS = [(p.relative_to(ROOT).as_posix(), lang, code) for p in DOCS
          for lang, code in re.findall(r"^```(\w+)\n(.*?)^```", p.read_text(), re.S | re.M)]


def _python_blocks():
    return [pytest.param(code, id=f"{doc}-python-{i}") for i, (doc, lang, code) in enumerate(BLOCKS)
            if lang == "python"]


def _archsim_lines():
    out = []
    for i, (doc, lang, code) in enumerate(BLOCKS):
        if lang != "bash":
            continue
        for j, line in enumerate(code.replace("\\\n", " ").splitlines()):
            words = shlex.split(line, comments=True)
            if words and words[0] == "archsim":
                out.append(pytest.param(words[1:], id=f"{doc}-bash-{i}-{j}-{'-'.join(words[1:2])}"))
    return out


def _readme_bash_lines() -> list[str]:
    return [line for lang, code in re.findall(r"^```(\w+)\n(.*?)^```", README, re.S | re.M) if lang == "bash"
            for line in code.splitlines()]


def test_the_docs_have_runnable_blocks():
    assert len(_python_blocks()) >= 4 and len(_archsim_lines()) >= 12


def test_every_doc_is_linked_from_the_readme():
    for p in (ROOT / "docs").glob("*.md"):
        assert f"docs/{p.name}" in README, p.name


def test_ci_runs_the_readmes_install_and_test_commands_in_a_fresh_venv():
    install = 'pip install -c constraints.txt -e ".[test]" && python -m pytest -q'
    assert install in _readme_bash_lines() and "pip install -e . && archsim run" in _readme_bash_lines()
    ci = [l.strip() for l in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "python3 -m venv \"$venv\"" in ci and '. "$venv/bin/activate"' in ci
    # both README commands, verbatim and in order, after the venv is active
    i = ci.index('. "$venv/bin/activate"')
    assert ci[i + 1:i + 3] == ["pip install -e . && archsim run", install]
    # the CPU-torch note comes before the first install command
    assert README.index("download.pytorch.org/whl/cpu") < README.index("pip install -e . && archsim run")


@pytest.fixture
def in_repo_like_dir(tmp_path, monkeypatch):
    for name in ("arch_configs", "examples", "tests"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "archsim_out").mkdir()  # as after the README's first `archsim run`
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

    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's --version exits by itself
        rc = e.code
    assert rc == 0, capsys.readouterr().err
    # outputs land under archsim_out/ (ignored by git), never loose in the repository root
    loose = [p.name for p in in_repo_like_dir.iterdir() if p.name not in ("arch_configs", "examples", "tests",
                                                                           "archsim_out")]
    assert not loose, f"archsim {' '.join(argv)} wrote {loose} outside archsim_out/"
