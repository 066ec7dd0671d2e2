"""Row-level fidelity (`pe_array.fidelity: rows`, archsim/hw/row_sim.py): the
PE rows as SimPy processes, held against every systolic and bit-serial kind's
closed-form fold_cycles on random small layers, and against SCALE-Sim's fold
formulas for dense folds.

The one documented difference: row mode charges a fold's R-1 row skew when
the last row leaves (its last chunk), the closed forms with the fold's first
chunk. Per fold, and per chunk of a one-chunk fold, they are equal; in a fold
of several chunks (stationary dataflows) the first chunk is R-1 shorter and
the last R-1 longer in row mode."""
import json

import numpy as np
import pytest
import simpy

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402

from archsim.api import simulate  # noqa: E402
from archsim.config import load_arch  # noqa: E402
from archsim.engine import run  # noqa: E402
from archsim.ir.errors import ArchsimError  # noqa: E402
from archsim.hw.pe_kind import Fold  # noqa: E402
from archsim.hw.registry import create  # noqa: E402
from archsim.hw.row_sim import RowArray, lanes_of, run_folds, spread_steps  # noqa: E402
from archsim.ir.formats import DenseFormat, NMFormat, SWISFormat  # noqa: E402
from archsim.ir.layer_spec import LayerSpec  # noqa: E402
from workloads.profile import ActProfile  # noqa: E402
from archsim.tiling import tile  # noqa: E402


def arch(name, rows, cols, *sets):
    return load_arch(name, [f"pe_array.rows={rows}", f"pe_array.cols={cols}", "pe_array.fidelity=rows", *sets])


def kind_of(a):
    return create("pe_array", a.pe_array.kind, a.pe_array, a)


def compute_nodes(layers, a):
    g = tile(layers, a)
    return [g.nodes[v] for v in range(g.number_of_nodes()) if g.nodes[v]["kind"] == "compute"]


def skew_shift(fold: Fold, rows: int, stationary: bool) -> int:
    """Row mode minus closed form for one chunk (the module docstring's rule)."""
    if not stationary or fold.first == fold.last:
        return 0
    return -(rows - 1) if fold.first else rows - 1


def check_layer(layers, a):
    """Every compute node's closed-form cycles against the rows, chunk by chunk
    and fold by fold; returns the number of chunks compared."""
    kind = kind_of(a)
    nodes = compute_nodes(layers, a)
    folds = [n["fold"] for n in nodes]
    got = run_folds(kind, folds)
    stationary = getattr(kind, "dataflow", "ws") != "os"
    fold_closed = fold_rows = 0
    for n, f, rows_cycles in zip(nodes, folds, got):
        assert rows_cycles == n["cycles"] + skew_shift(f, kind.rows, stationary), (f, n["cycles"], rows_cycles)
        fold_closed += n["cycles"]
        fold_rows += rows_cycles
        if f.last:
            assert fold_rows == fold_closed
            fold_closed = fold_rows = 0
    return len(nodes)


# -- dense folds: SCALE-Sim's formulas ---------------------------------------------

@given(st.integers(1, 12), st.integers(1, 12), st.integers(1, 40), st.sampled_from(["ws", "is", "os"]),
       st.integers(1, 4))
def test_a_dense_fold_in_row_mode_is_scalesim_s_fold_formula(R, C, T, dataflow, depth):
    a = arch("sa32_ws", R, C, f"pe_array.dataflow={dataflow}", f"pe_array.row_fifo_depth={depth}")
    kind = kind_of(a)
    fold = Fold(R, C, T, True, True)
    formula = T + R + C - 2 if dataflow == "os" else 2 * R + C + T - 2  # T is K for os
    assert run_folds(kind, [fold]) == [formula] == [kind.fold_cycles(fold, None)]


# -- every kind's closed form against the rows ----------------------------------------

dims = st.integers(1, 9)
# spill keeps a fold's chunks in one fold (several chunks); tile_outputs makes one-chunk folds
overflow = st.sampled_from(["auto", "spill", "tile_outputs"]).map(lambda v: f"pe_array.psum_overflow={v}")


@st.composite
def dense_case(draw):
    name, sets = draw(st.sampled_from([("sa32_ws", ["pe_array.dataflow=ws"]), ("sa32_ws", ["pe_array.dataflow=is"]),
                                       ("sa32_os", []), ("ews64", []), ("mvq64", [])]))
    R, C = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    out = draw(st.sampled_from([256, 1024, 32768]))  # a small output buffer splits folds into chunks
    M, N, K = draw(st.integers(1, 40)), draw(dims), draw(st.integers(1, 30))
    return (arch(name, R, C, *sets, f"buffers.output.capacity_bytes={out}", draw(overflow)),
            LayerSpec("fc", "linear", M=M, N=N, K=K))


@given(dense_case())
def test_systolic_ews_and_mvq_closed_forms_equal_the_rows(case):
    a, layer = case
    assert check_layer([layer], a) > 0


@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 40), st.integers(1, 30), st.integers(1, 8),
       st.sampled_from([("sa32_ws", "nm_systolic", 2, 4), ("mvq64", "mvq_sparse", 1, 4)]), overflow)
def test_nm_sparse_closed_forms_equal_the_rows(R, C, M, N, K4, case, psum):
    name, kind, n, m = case
    a = arch(name, R, C, f"pe_array.kind={kind}", f"pe_array.n={n}", f"pe_array.m={m}",
             "buffers.output.capacity_bytes=512", psum)
    layer = LayerSpec("fc", "linear", M=M, N=N, K=4 * K4, fmt=NMFormat(n=n, m=m))
    assert check_layer([layer], a) > 0


def swis_fmt(group_n, G):
    n = [int(v) for v in group_n]
    return SWISFormat(group_size=G, shared_bits=sum(n) / len(n), max_shared_bits=max(max(n), 1), group_n_bits=3,
                      group_n="".join(map(str, n)))


@given(st.integers(1, 3), st.integers(1, 6), st.integers(1, 30), st.integers(1, 9), st.integers(1, 4),
       st.sampled_from(["in_order", "sort_columns"]), st.integers(0, 2 ** 32 - 1), overflow)
def test_swis_lockstep_closed_form_equals_the_rows_waiting_for_the_slowest_lane(Rg, C, M, N, groups, schedule, seed,
                                                                                psum):
    G = 2
    R, K = Rg * G, groups * G
    gn = np.random.default_rng(seed).integers(0, 6, size=N * groups)  # real per-group shared-bit counts
    a = arch("swis16_ws", R, C, f"pe_array.group_size={G}", f"pe_array.schedule={schedule}",
             "buffers.output.capacity_bytes=512", psum)
    assert check_layer([LayerSpec("fc", "linear", M=M, N=N, K=K, fmt=swis_fmt(gn, G))], a) > 0


@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 30), st.integers(1, 9), st.integers(1, 20),
       st.integers(1, 8), overflow)
def test_stripes_closed_form_equals_the_rows(R, C, M, N, K, p, psum):
    a = arch("stripes16", R, C, f"pe_array.precision={p}", "buffers.output.capacity_bytes=512", psum)
    assert check_layer([LayerSpec("fc", "linear", M=M, N=N, K=K)], a) > 0


def essential_bits(acts: np.ndarray) -> np.ndarray:
    """One bits of each (unsigned) activation: Pragmatic's cycles for it."""
    return np.unpackbits(acts.astype(np.uint8)[..., None], axis=-1).sum(axis=-1)


def pragmatic_profile(ess: np.ndarray, L: int) -> ActProfile:
    """The profile's lane statistics (workloads/profile.py's definition) of
    these vectors' essential bits [V, K], for lane groups of L."""
    V, K = ess.shape
    chunks = [ess[:, i:i + L] for i in range(0, K, L)]
    mx = tuple(float(np.maximum(c.max(axis=1), 1).mean()) for c in chunks)
    sm = tuple(float(c.sum(axis=1).mean()) for c in chunks)
    return ActProfile(act_bits=8, signed=False, max_abs=255.0, precision_bits=8, mean_essential_bits=float(ess.mean()),
                      zero_fraction=float((ess == 0).mean()), reduction=K, n_vectors=V, lanes=((L, mx, sm),))


@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 24), st.integers(1, 9), st.integers(1, 3),
       st.integers(0, 2 ** 32 - 1))
def test_pragmatic_closed_form_equals_the_rows_fed_the_real_vectors(R, C, V, N, row_folds, seed):
    # the fold streams exactly the profiled vectors: each row gets its own activation's
    # essential bits per step, and the lock-step step is the slowest of them
    K = R * row_folds
    rng = np.random.default_rng(seed)
    acts = rng.integers(0, 256, size=(V, K)) * (rng.random((V, K)) < 0.6)  # some zeros: lanes of 0 bits
    ess = essential_bits(acts)
    a = arch("pragmatic16", R, C)
    layer = LayerSpec("fc", "linear", M=V, N=N, K=K)
    layer.act_profile = pragmatic_profile(ess, R)
    kind = kind_of(a)
    nodes = compute_nodes([layer], a)
    assert all(n["fold"].first and n["fold"].last for n in nodes)  # one chunk per fold: V is small
    # the ws nest runs column folds outside row folds: node i is row fold i % row_folds
    nc = -(-N // C)
    lanes = [ess[:, (i % row_folds) * R:(i % row_folds + 1) * R] for i in range(nc * row_folds)]
    assert run_folds(kind, [n["fold"] for n in nodes], lanes=lanes) == [n["cycles"] for n in nodes]
    # and the engine's row mode (profile means, cumulatively rounded) gives the same
    assert run_folds(kind, [n["fold"] for n in nodes]) == [n["cycles"] for n in nodes]


def test_a_fold_of_several_chunks_pays_its_row_skew_at_the_end_in_row_mode():
    # spill keeps the partial sums' fold in one piece: 5 chunks of 8 streamed vectors
    a = arch("sa32_ws", 4, 4, "buffers.output.capacity_bytes=256", "pe_array.psum_overflow=spill")
    nodes = compute_nodes([LayerSpec("fc", "linear", M=40, N=4, K=8)], a)
    first_fold = [n for n in nodes[:5]]
    assert [(n["fold"].first, n["fold"].last) for n in first_fold] == \
        [(True, False), (False, False), (False, False), (False, False), (False, True)]
    R, C = 4, 4
    assert [n["cycles"] for n in first_fold] == [2 * R - 1 + 8, 8, 8, 8, 8 + C - 1]
    assert run_folds(kind_of(a), [n["fold"] for n in first_fold]) == [R + 8, 8, 8, 8, 8 + (R - 1) + (C - 1)]
    assert 2 * R + C + 40 - 2 == sum(n["cycles"] for n in first_fold)


def test_spread_steps_adds_up_to_the_closed_form_rounding():
    for mean in (1.0, 1.25, 2.5, 3.999, 7.1):
        for T in (1, 3, 17):
            s = spread_steps(mean, T)
            assert len(s) == T and s.min() >= 1 and s.sum() == int(np.ceil(T * mean - 1e-6))


def test_a_lane_with_more_work_holds_every_row_back():
    # 3 rows; row 1 needs 4 cycles per step, the others 1: every step takes 4
    env = simpy.Environment()
    rows = RowArray(env, 3, 2, 1, stationary=False)
    done = []

    def drive():
        done.append((yield from rows.chunk(Fold(3, 2, 5, True, True), np.array([1, 4, 1]))))

    env.process(drive())
    env.run()
    assert env.now == 5 * 4 + (3 - 1) + (2 - 1)
    busy, waiting, blocked = done[0]["pe.rows"]
    assert busy == 5 * 6 and blocked == 0 and busy + waiting == 3 * env.now
    assert rows.busy == [5, 20, 5]


# -- inside a simulation -----------------------------------------------------------------

def two_layers(fmt=None):
    kw = {"fmt": fmt} if fmt else {}
    return [LayerSpec("conv1", "conv", M=49, N=24, K=72, in_elems=9 * 9 * 8, **kw),
            LayerSpec("fc", "linear", M=5, N=20, K=40, **kw)]


@pytest.mark.parametrize("name", ["sa32_ws", "sa32_os", "ews64", "mvq64", "stripes16"])
def test_row_mode_simulation_keeps_each_layer_s_compute_cycles(name):
    sets = ["pe_array.rows=8", "pe_array.cols=8"] + (["pe_array.precision=5"] if name == "stripes16" else [])
    fold = load_arch(name, sets)
    rows = load_arch(name, sets + ["pe_array.fidelity=rows"])
    a, b = run(tile(two_layers(), fold), fold).layers, run(tile(two_layers(), rows), rows).layers
    for x, y in zip(a, b):
        assert y.compute_cycles == x.compute_cycles
        busy, waiting, blocked = (y.busy_cycles["pe.rows"], y.wait_data_cycles["pe.rows"],
                                  y.wait_space_cycles["pe.rows"])
        assert busy + waiting + blocked == 8 * y.compute_cycles and busy > 0


def test_a_swis_layer_s_row_stalls_show_in_the_trace_one_track_per_row(tmp_path):
    # every channel's first group of 8 weights shares N=4 bits, its second N=1: in each
    # fold rows 0-7 work 4 cycles a step and rows 8-15 work 1, then wait 3 for the slowest lane
    gn = [4, 1] * 16
    M = 12
    layer = LayerSpec("fc", "linear", M=M, N=16, K=16, fmt=swis_fmt(gn, 8))
    path = tmp_path / "t.json"
    sets = ["pe_array.rows=16", "pe_array.cols=1", "pe_array.fidelity=rows"]
    rep = simulate([layer], "swis16_ws", overrides=sets, trace=path)
    events = json.loads(path.read_text())["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    row_tids = {t: n for t, n in names.items() if n.startswith("pe.row")}
    assert sorted(row_tids.values()) == [f"pe.row{r:02d}" for r in range(16)]
    by_row = {n: [e for e in events if e["ph"] == "X" and e["tid"] == t] for t, n in row_tids.items()}
    for spans in by_row.values():
        spans = sorted((e["args"]["start_cycle"], e["args"]["start_cycle"] + e["args"]["cycles"]) for e in spans)
        assert all(p[1] <= q[0] for p, q in zip(spans, spans[1:]))  # a row does one thing at a time

    def total(row, name):
        return sum(e["args"]["cycles"] for e in by_row[f"pe.row{row:02d}"] if e["name"] == name)

    folds = 16  # one column per channel
    for r in range(16):
        assert total(r, "busy") == folds * M * (4 if r < 8 else 1)
        assert total(r, "lock-step wait") == (0 if r < 8 else folds * M * 3)
        assert total(r, "weight shift-in") == folds * 16
    assert rep.layers[0]["compute_cycles"] == folds * (M * 4 + 2 * 16 + 1 - 2)


def test_fidelity_rows_on_a_kind_with_its_own_pipeline_is_an_error_naming_the_field():
    a = load_arch("pqa", ["pe_array.fidelity=rows"])
    with pytest.raises(ArchsimError, match="pe_array.fidelity"):
        kind_of(a)


def test_a_row_fifo_depth_of_zero_is_refused():
    with pytest.raises(ArchsimError, match="row_fifo_depth"):
        load_arch("sa32_ws", ["pe_array.row_fifo_depth=0"])


def test_lanes_of_a_mac_fold_are_one_cycle_per_row_holding_weights():
    assert list(lanes_of(Fold(3, 4, 5, True, True), 5)) == [1, 1, 1, 0, 0]
    spread = lanes_of(Fold(2, 4, 4, True, True, lanes=(1.5, 1.5)), 3)
    assert spread.shape == (4, 3) and spread[:, 0].sum() == 6 and spread[:, 2].sum() == 0
