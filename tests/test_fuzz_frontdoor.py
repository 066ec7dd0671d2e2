"""Fuzzing the front door: architecture YAMLs, topology CSVs, --weights,
--set / --grid, compression parameters. The rule for every case: exit 0
with a sane result, or exit 2 with exactly one stderr line starting with
`archsim: error:` that names the source (file or flag); never a traceback,
never a hang (each case runs under signal.alarm), nothing executed from a
YAML tag. Compression: a bad parameter raises CompressionError (or
ArchsimError) naming it.

Profiles: see tests/conftest.py (`--hypothesis-profile=slow` for many more
cases). The number of cases run is written to
$TMPDIR/archsim_fuzz_cases.json (per test) when the module finishes.
Below the fuzzers: the regression tests of issue 9, items 4-8.
"""
from __future__ import annotations

import copy
import json
import signal
import tempfile
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest

import hypothesis  # noqa: E402  (the test extra installs it)
import yaml  # noqa: E402
from hypothesis import example, given, strategies as st  # noqa: E402

from archsim.cli import main  # noqa: E402
from archsim.config import ARCH_DIR  # noqa: E402
from archsim.ir.errors import ArchsimError  # noqa: E402

BASE = yaml.safe_load((ARCH_DIR / "sa32_ws.yaml").read_text())
COUNTS: Counter = Counter()
CASE_TIMEOUT_S = 30
MARKER = Path(tempfile.gettempdir()) / "archsim_fuzz_yaml_tag_executed"


@pytest.fixture(scope="module", autouse=True)
def _record_counts():
    yield
    out = Path(tempfile.gettempdir()) / "archsim_fuzz_cases.json"
    out.write_text(json.dumps(dict(COUNTS, total=sum(COUNTS.values())), indent=1))
    print(f"\nfuzz cases: {dict(COUNTS)} -> {out}")


@contextmanager
def alarm(seconds=CASE_TIMEOUT_S):
    def on_alarm(signum, frame):
        raise TimeoutError(f"fuzz case ran past {seconds} s (a hang)")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def cli(capsys, argv, what):
    """Run the CLI in-process and check the front-door rule; returns (rc, out)."""
    COUNTS[what] += 1
    capsys.readouterr()
    with alarm():
        rc = main(argv)  # any exception (a traceback) fails the test
    cap = capsys.readouterr()
    assert rc in (0, 2), (argv, rc)
    if rc == 2:
        lines = cap.err.strip("\n").split("\n")
        assert len(lines) == 1, cap.err
        assert lines[0].startswith("archsim: error: "), cap.err
        assert "Traceback" not in cap.err
        # names the source (a file or a flag) and then what is wrong with it
        assert lines[0].count(": ") >= 2, cap.err
    assert not MARKER.exists(), "a YAML tag executed code"
    return rc, cap.out


def tiny_topology(folder: Path) -> Path:
    p = folder / "tiny.csv"
    p.write_text("Layer name, M, N, K,\nfc1, 4, 8, 16,\nfc2, 4, 3, 8,\n")
    return p


# ------------------------------------------------------------ architecture YAML
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10 ** 30, 10 ** 30), st.floats(allow_nan=True),
                    st.text(max_size=8), st.just(float("inf")), st.just(float("nan")), st.just(10 ** 400))


def _paths(d, prefix=()):
    for k, v in d.items():
        yield prefix + (k,)
        if isinstance(v, dict):
            yield from _paths(v, prefix + (k,))


PATHS = sorted(_paths(BASE))


@st.composite
def mutated_arch(draw):
    d = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        parent = d
        for k in path[:-1]:
            parent = parent.get(k) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or path[-1] not in parent:
            continue
        op = draw(st.sampled_from(["delete", "rename", "retype", "negate", "nest"]))
        key = path[-1]
        if op == "delete":
            del parent[key]
        elif op == "rename":
            parent[key + draw(st.sampled_from(["z", "s", "_", "X"]))] = parent.pop(key)
        elif op == "retype":
            parent[key] = draw(st.one_of(SCALARS, st.lists(SCALARS, max_size=3),
                                         st.dictionaries(st.text(max_size=4), SCALARS, max_size=2)))
        elif op == "negate" and isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
            parent[key] = -parent[key]
        elif op == "nest":
            v = parent[key]
            for _ in range(draw(st.integers(1, 60))):
                v = {"x": v}
            parent[key] = v
    try:
        return yaml.safe_dump(d)
    except (yaml.YAMLError, ValueError, OverflowError):
        return yaml.safe_dump(BASE)


RAW_YAML = st.sampled_from([
    "", "\n", "# only a comment\n", "- 1\n- 2\n", "3\n", "'text'\n", "null\n", "[]\n", "{}\n",
    "a: &x [1, *x]\n",  # recursive alias
    "!!python/object/apply:os.system ['touch " + str(MARKER) + "']\n",
    "name: !!python/object/apply:os.system ['touch " + str(MARKER) + "']\n",
    "name: !!python/name:os.system\n",
    "base: &b {rows: 4, cols: 4}\npe_array: *b\n",
    "name: x\npe_array: {<<: {rows: 4, cols: 4}, dataflow: ws}\n",
    "name: x\nclock_mhz: .nan\n", "name: x\nclock_mhz: .inf\n",
    "\t- bad indentation\n", "{{{{\n", "name: x\n" * 3,
    "pe_array: " + "[" * 200 + "]" * 200 + "\n",
    "pe_array: " + "{a: " * 50 + "1" + "}" * 50 + "\n",
])


def with_base_rest(text: str) -> str:
    return text


@given(st.one_of(mutated_arch(), RAW_YAML, RAW_YAML.map(lambda t: yaml.safe_dump(BASE) + t)))
def test_fuzz_arch_yaml(capsys, text):
    folder = Path(tempfile.mkdtemp())
    arch = folder / "arch.yaml"
    arch.write_text(text)
    cli(capsys, ["validate", str(arch)], "arch_yaml")
    rc, _ = cli(capsys, ["run", "--arch", str(arch), "--topology", str(tiny_topology(folder)), "--no-plot",
                         "--out", str(folder / "out")], "arch_yaml")
    if rc == 0:
        report = json.loads(next((folder / "out").glob("*/report.json")).read_text())
        assert report["totals"]["total_cycles"] > 0


# ------------------------------------------------------------ topology CSV
FIELD = st.one_of(st.integers(-5, 300).map(str), st.integers(10 ** 6, 10 ** 40).map(str), st.just(""),
                  st.text(max_size=6).filter(lambda s: "\n" not in s and "\r" not in s), st.just("1.5"),
                  st.just("1:1"), st.just("2:4"), st.just(" 7 "), st.just("DP"), st.just("#"))


@st.composite
def topology_bytes(draw):
    header = draw(st.sampled_from([
        "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,",
        "Layer name, M, N, K,", "Layer name, M, N", "", "a,b,c"]))
    n_cols = draw(st.integers(1, 10))
    rows = [",".join(draw(st.lists(FIELD, min_size=n_cols, max_size=n_cols))) for _ in range(draw(st.integers(0, 3)))]
    data = ("\n".join([header] + rows) + "\n").encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        pos = draw(st.integers(0, len(data)))
        data = data[:pos] + draw(st.binary(min_size=1, max_size=4)) + data[pos:]
    return data


@given(topology_bytes())
def test_fuzz_topology(capsys, data):
    folder = Path(tempfile.mkdtemp())
    topo = folder / "topo.csv"
    topo.write_bytes(data)
    rc, _ = cli(capsys, ["run", "--topology", str(topo), "--no-plot", "--out", str(folder / "out")], "topology")
    if rc == 0:
        assert list((folder / "out").glob("*/report.json"))


# ------------------------------------------------------------ --weights
WORD = st.one_of(st.sampled_from(["k", "d", "bits", "n", "m", "codebook_bits", "Ls", "Np", "group_size",
                                  "shared_bits", "mask_encoding", "run_len", "kk", ""]), st.text(max_size=5))
VALUE = st.one_of(st.integers(-10, 300).map(str), st.sampled_from(["abc", "0", "1e400", ".nan", "[1", "{a: 1}",
                                                                   "!!python/name:os.system", "bitmap", "", "2.5"]),
                  st.text(max_size=5))


@st.composite
def weights_text(draw):
    name = draw(st.one_of(st.sampled_from(["vq", "mvq", "ssvq", "dense", "trunc", "nm", "pq", "swis", "vqq", ""]),
                          st.text(max_size=4)))
    items = [f"{draw(WORD)}{draw(st.sampled_from(['=', '=', ':', '']))}{draw(VALUE)}"
             for _ in range(draw(st.integers(0, 3)))]
    return name + draw(st.sampled_from([":", ":", "", "::"])) + draw(st.sampled_from([",", ";", ", "])).join(items)


@given(weights_text(), st.sampled_from(["sa32_ws", "vq32_ws", "sa32_os"]))
def test_fuzz_weights(capsys, text, arch):
    folder = Path(tempfile.mkdtemp())
    cli(capsys, ["run", f"--weights={text}", "--arch", arch, "--topology", str(tiny_topology(folder)),
                 "--no-plot", "--out", str(folder / "out")], "weights")


# ------------------------------------------------------------ --set / --grid
DOTTED = st.one_of(st.sampled_from([".".join(p) for p in PATHS]),
                   st.sampled_from([".".join(p) for p in PATHS]).map(lambda s: s + "z"),
                   st.text(max_size=10), st.just("pe_array.rows.x"), st.just("a..b"), st.just("."))


@given(st.lists(st.tuples(DOTTED, VALUE), min_size=1, max_size=3))
@example([("buffers", "\x1f")])  # found by fuzzing: a two-line YAML error message
@example([("name", "a\nb"), ("pe_array.rows", "-4")])
def test_fuzz_set(capsys, items):
    folder = Path(tempfile.mkdtemp())
    argv = ["run", "--topology", str(tiny_topology(folder)), "--no-plot", "--out", str(folder / "out")]
    for k, v in items:
        argv.append(f"--set={k}={v}")
    cli(capsys, argv, "set")
    cli(capsys, ["validate", "sa32_ws"] + [f"--set={k}={v}" for k, v in items], "set")


@given(st.lists(st.tuples(DOTTED, st.lists(VALUE, min_size=0, max_size=3)), min_size=1, max_size=2))
@example([("pe_array.rows.x", ["[1"])])  # found by fuzzing: YAMLError traceback from parse_grid
@example([("pe_array.rows", ["!!python/name:os.system"])])
def test_fuzz_grid(capsys, items):
    folder = Path(tempfile.mkdtemp())
    argv = ["sweep", "--topology", str(tiny_topology(folder)), "--out", str(folder / "sweep.jsonl")]
    for k, vs in items:
        argv.append(f"--grid={k}={','.join(vs)}")
    cli(capsys, argv, "grid")


# ------------------------------------------------------------ compression parameters
def _tiny_model():
    import torch
    import torch.nn as nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 8))


HOSTILE = st.one_of(st.integers(-3, 3), st.sampled_from([10 ** 12, 2 ** 31, -10 ** 9]), st.none(),
                    st.booleans(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4),
                    st.just([1, 2]))


@st.composite
def compression_calls(draw):
    import inspect

    from workloads.compression import METHODS

    method = draw(st.sampled_from(sorted(METHODS) + ["nope"]))
    if method == "nope":
        return method, {}
    names = sorted(set(inspect.signature(METHODS[method]).parameters) - {"model", "calib", "seed", "skip_layers"})
    names += ["not_a_param"]
    keys = draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
    return method, {k: draw(HOSTILE) for k in keys}


@hypothesis.settings(max_examples=hypothesis.settings().max_examples // 2)
@given(compression_calls())
@example(("swis", {"policy": 0}))  # found by fuzzing: TypeError 'int' object is not callable
@example(("ssvq", {"d": 0}))  # found by fuzzing: ZeroDivisionError
@example(("mvq", {"d": 10 ** 12}))  # found by fuzzing: a 144 TB allocation
@example(("trunc", {"bits": None}))  # found by fuzzing: TypeError
@example(("int", {"scale_bits": -1}))  # found by fuzzing: ValueError from DenseFormat
@example(("nm", {"m": 0}))  # found by fuzzing: plain ValueError
def test_fuzz_compression_params(call):
    from workloads.compression import CompressionError, compress

    method, params = call
    COUNTS["compression"] += 1
    # the bounded compute: calibration-free methods only get small models, and pq has no calib here
    with alarm(60):
        try:
            compress(_tiny_model(), method, num_threads=1, **params)
        except (CompressionError, ArchsimError) as e:
            assert e.field, e
            named = e.field in params or e.field in ("method", "calib") or any(k in str(e) for k in params)
            assert named, (params, str(e))


# ------------------------------------------------------------ issue 9, items 4-8 (regressions)
def _one_line_error(capsys, argv):
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("archsim: error: ")
    return err


@pytest.mark.parametrize("text,param", [("vq:k=abc,d=16", "k"), ("vq:k=256;d=16", "k"), ("vq:k=256,d=0", "d"),
                                        ("vq:k=-5,d=16", "k"), ("nm:n=5,m=4", "n"), ("vq:kk=3", "kk"),
                                        ("swis:shared_bits=.nan", "shared_bits"), ("vq:k=[1", "k")])
def test_issue9_item4_bad_weight_parameters(capsys, tmp_path, text, param):
    err = _one_line_error(capsys, ["run", "--weights", text, "--topology", str(tiny_topology(tmp_path)),
                                   "--arch", "vq32_ws", "--out", str(tmp_path), "--no-plot"])
    assert "--weights" in err and f" {param}:" in err


def test_issue9_item4_weights_checked_before_the_model_is_traced(capsys, tmp_path, monkeypatch):
    import archsim.api

    def no_trace(*a, **k):
        raise AssertionError("the model was built before --weights was checked")

    monkeypatch.setattr(archsim.api, "to_layers", no_trace)
    err = _one_line_error(capsys, ["run", "--model", "resnet20", "--weights", "vq:k=0", "--out", str(tmp_path)])
    assert "--weights" in err


@pytest.mark.parametrize("cmd", [["validate", "arch_configs"], ["run", "--arch", "arch_configs"]])
def test_issue9_item5_arch_is_a_directory(capsys, tmp_path, cmd, monkeypatch):
    monkeypatch.chdir(ARCH_DIR.parent)
    err = _one_line_error(capsys, cmd + (["--out", str(tmp_path)] if cmd[0] == "run" else []))
    assert "arch_configs" in err and "directory" in err


def test_issue9_item6_grid_key_checked_before_the_sweep(capsys, tmp_path):
    out = tmp_path / "sweep.jsonl"
    err = _one_line_error(capsys, ["sweep", "--topology", str(tiny_topology(tmp_path)), "--grid",
                                   "pe_array.rowz=16", "--out", str(out)])
    assert "--grid" in err and "pe_array.rowz" in err and "'rows'" in err
    assert not out.exists()
    err = _one_line_error(capsys, ["sweep", "--topology", str(tiny_topology(tmp_path)), "--grid",
                                   "pe_array.rows=16,-3", "--out", str(out)])
    assert "--grid pe_array.rows=-3" in err and "greater than 0" in err


def test_issue9_item7_set_error_names_the_override(capsys):
    err = _one_line_error(capsys, ["validate", "sa32_ws", "--set", "pe_array.rows=-4"])
    assert err == "archsim: error: --set pe_array.rows=-4: pe_array.rows: Input should be greater than 0"


def test_issue9_item8_misspelled_required_key_suggests_the_near_miss(capsys, tmp_path):
    bad = tmp_path / "a.yaml"
    bad.write_text((ARCH_DIR / "sa32_ws.yaml").read_text().replace("  rows: 32", "  rowz: 32"))
    err = _one_line_error(capsys, ["validate", str(bad)])
    assert "pe_array.rowz: unknown key (did you mean 'rows'?)" in err


def test_yaml_tags_are_not_executed(capsys, tmp_path):
    bad = tmp_path / "a.yaml"
    bad.write_text(f"!!python/object/apply:os.system ['touch {tmp_path / 'pwned'}']\n")
    assert "malformed YAML" in _one_line_error(capsys, ["validate", str(bad)])
    assert not (tmp_path / "pwned").exists()


def test_non_utf8_files(capsys, tmp_path):
    arch = tmp_path / "a.yaml"
    arch.write_bytes(b"name: \xff\xfe\n")
    assert "UTF-8" in _one_line_error(capsys, ["validate", str(arch)])
    topo = tmp_path / "t.csv"
    topo.write_bytes(b"Layer name, M, N, K,\nfc\xff, 1, 2, 3,\n")
    assert "UTF-8" in _one_line_error(capsys, ["run", "--topology", str(topo), "--out", str(tmp_path)])


def test_huge_topology_is_refused_not_hung(capsys, tmp_path):
    topo = tmp_path / "t.csv"
    topo.write_text("Layer name, M, N, K,\nfc, 1000000, 100000, 8,\n")
    with alarm(20):
        err = _one_line_error(capsys, ["run", "--topology", str(topo), "--out", str(tmp_path), "--no-plot"])
    assert "--topology" in err and "too large" in err
    topo.write_text("Layer name, M, N, K,\nfc, 10000000000000000000000, 1, 8,\n")
    assert "M" in _one_line_error(capsys, ["run", "--topology", str(topo), "--out", str(tmp_path)])


def test_nan_and_infinity_in_arch(capsys):
    for v in (".nan", ".inf", "-.inf"):
        err = _one_line_error(capsys, ["validate", "sa32_ws", "--set", f"clock_mhz={v}"])
        assert "clock_mhz" in err and "finite" in err


def test_found_a_huge_integer_in_a_yaml_is_a_user_error(tmp_path, capsys):
    """Found by the slow profile: word_bits: 10**400 reached the energy model
    and the tiler as an int too large for float arithmetic (OverflowError)."""
    import yaml as _yaml

    from archsim.config import ARCH_DIR

    d = _yaml.safe_load((ARCH_DIR / "sa32_ws.yaml").read_text())
    d["buffers"]["input"]["word_bits"] = 10 ** 400
    path = tmp_path / "huge.yaml"
    path.write_text(_yaml.safe_dump(d))
    from archsim.cli import main as cli_main

    assert cli_main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "buffers.input.word_bits" in err and str(path) in err
    assert cli_main(["validate", "sa32_ws", "--set", "pe_array.rows=1e400"]) == 2
    assert "--set pe_array.rows=1e400" in capsys.readouterr().err
