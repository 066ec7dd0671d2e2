"""Progress bars: on stderr while the slow steps run (tiling, simulating,
sweep points, compression layers), only when stderr is a terminal and not
with --quiet; never on stdout, never in the results."""
import io
import sys
from pathlib import Path

import pytest

from archsim.ir import progress
from archsim.cli import main

TOPOLOGY = Path(__file__).resolve().parent / "data" / "scalesim" / "inputs" / "resnet18_sympad.csv"


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def terminal(monkeypatch):
    """Make stderr a terminal. Patched when the test body starts: pytest's own
    capture re-installs sys.stderr between a fixture's setup and the call."""
    err = _Terminal()

    def use():
        monkeypatch.setattr(sys, "stderr", err)
        return err

    yield use
    progress.set_quiet(False)


def test_run_shows_tiling_and_simulation_progress_on_a_terminal(terminal, tmp_path, capsys):
    terminal = terminal()
    assert main(["run", "--topology", str(TOPOLOGY), "--out", str(tmp_path), "--no-plot"]) == 0
    err = terminal.getvalue()
    assert "tiling" in err and "/21 [" in err  # a bar over the 21 layers
    assert "simulating" in err and "tile operations" in err
    out = capsys.readouterr().out
    assert "TOTAL" in out and "\r" not in out and "simulating" not in out  # stdout: the table only


def test_quiet_and_non_terminal_show_nothing(terminal, tmp_path, capsys, monkeypatch):
    terminal = terminal()
    assert main(["run", "--topology", str(TOPOLOGY), "--out", str(tmp_path), "--no-plot", "--quiet"]) == 0
    assert terminal.getvalue() == ""
    progress.set_quiet(False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a pipe or a file
    assert main(["run", "--topology", str(TOPOLOGY), "--out", str(tmp_path), "--no-plot"]) == 0
    assert sys.stderr.getvalue() == ""


def test_sweep_shows_a_bar_over_points(terminal, tmp_path, capsys):
    terminal = terminal()
    assert main(["sweep", "--topology", str(TOPOLOGY), "--grid", "pe_array.rows=16,32",
                 "--out", str(tmp_path / "s.jsonl")]) == 0
    err = terminal.getvalue()
    assert "sweep" in err and "/2 [" in err
    assert "Pareto front" in capsys.readouterr().out


def test_compression_shows_a_bar_over_layers(terminal):
    terminal = terminal()
    import torch
    from torch import nn

    from workloads.compression import compress

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Flatten(), nn.LazyLinear(4))
    model(torch.randn(1, 3, 8, 8))
    compress(model, "int", bits=4)
    err = terminal.getvalue()
    assert "compressing (int)" in err and "/3 [" in err
