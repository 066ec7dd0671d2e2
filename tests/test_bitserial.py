"""The bit-serial PE kinds of the SWIS issue: swis_bitserial (weight-bit-serial,
per-group shared bits, lock-step folds), stripes (activation-bit-serial at a
per-layer precision) and pragmatic (essential activation bits from a recorded
profile), plus the INT8 array of the same area. Small hand-made layers and
formats; one tiny real model for the calibration pass."""

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from archsim.api import simulate
from archsim.cli import main
from archsim.config import ARCH_DIR, load_arch, load_arch_dict
from archsim.energy import EnergyModel
from archsim.engine import run
from archsim.ir.errors import ArchsimError
from workloads.compile import trace
from workloads.compression import compress
from archsim.ir.formats import DenseFormat, SWISFormat
from archsim.ir.layer_spec import LayerSpec
from workloads.profile import ActProfile, attach_profiles, profile_activations
from archsim.tiling import tile

R = C = 16
FILL, DRAIN = 2 * R - 1, C - 1


def linear(M, N, K, fmt=None, prof=None):
    L = LayerSpec("fc", "linear", M=M, N=N, K=K, fmt=fmt or DenseFormat())
    L.act_profile = prof
    return L


def swis_fmt(group_n, G=8):
    n = [int(v) for v in group_n]
    return SWISFormat(group_size=G, shared_bits=sum(n) / len(n), max_shared_bits=max(n), group_n_bits=2,
                      group_n="".join(map(str, n)))


def layer_stats(layers, arch):
    arch = load_arch(arch) if isinstance(arch, str) else arch
    return run(tile(layers, arch), arch).layers


def flat_profile(K, mx, sm, L=16, bits=3):
    """A hand-made profile: per row fold of L lanes, mean max and sum of essential bits."""
    return ActProfile(act_bits=8, signed=False, max_abs=1.0, precision_bits=bits, mean_essential_bits=1.0,
                      zero_fraction=0.0, reduction=K, n_vectors=1, lanes=((L, tuple(mx), tuple(sm)),))


# -- SWIS ------------------------------------------------------------------------

def test_swis_cycles_follow_the_per_group_lockstep_formula():
    # linear K=32 (4 groups of 8 per output channel), N=4, M=5: 2 row folds of 16 rows
    rng = np.random.default_rng(0)
    gn = rng.integers(0, 5, size=4 * 4)
    L = linear(5, 4, 32, swis_fmt(gn))
    ls = layer_stats([L], "swis16_ws")[0]
    g = gn.reshape(4, 4)  # [output channel, group along K]
    expect = sum(L.M * max(1, g[:, 2 * r:2 * r + 2].max()) + FILL + DRAIN for r in range(2))
    assert ls.compute_cycles == expect
    # every weight processes every activation for its own group's N cycles
    assert ls.actions["pe_arith.gated_add"] == L.M * 8 * int(gn.sum())
    idle = sum(L.M * (16 * 4 * max(1, g[:, 2 * r:2 * r + 2].max()) - 8 * g[:, 2 * r:2 * r + 2].sum())
               for r in range(2))
    assert ls.actions["pe_arith.lockstep_idle"] == idle
    # one shifter / accumulator step per active group-cycle
    assert ls.actions["shifter.shift"] == ls.actions["accumulator.add"] == L.M * int(gn.sum())


def test_lockstep_loss_appears_when_different_n_share_a_fold_and_sorting_reduces_it():
    # 32 output channels (2 column folds), K=16 (one row fold): channel o has N = 4 if o even else 1
    gn = [4 if o % 2 == 0 else 1 for o in range(32) for _ in range(2)]
    L = linear(50, 32, 16, swis_fmt(gn))
    same = linear(50, 32, 16, swis_fmt([3] * 64))
    mixed, uniform = layer_stats([L], "swis16_ws")[0], layer_stats([same], "swis16_ws")[0]
    assert uniform.actions.get("pe_arith.lockstep_idle", 0) == 0
    assert mixed.actions["pe_arith.lockstep_idle"] == 2 * 50 * 16 * 8 * 3  # half the PEs idle 3 of 4 cycles
    rep = simulate([L], "swis16_ws")
    assert "lock-step idle 37.5%" in rep.layers[0]["loop_order"]
    # sort_columns puts the N=4 channels in one fold and the N=1 channels in the other
    arch = load_arch("swis16_ws", ["pe_array.schedule=sort_columns"])
    srt = layer_stats([L], arch)[0]
    assert srt.compute_cycles == (50 * 4 + FILL + DRAIN) + (50 * 1 + FILL + DRAIN) < mixed.compute_cycles
    assert srt.actions.get("pe_arith.lockstep_idle", 0) == 0
    assert srt.actions["pe_arith.gated_add"] == mixed.actions["pe_arith.gated_add"]


def test_fewer_shared_bits_fewer_cycles_with_the_real_compression():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(),
                          nn.Linear(32 * 8 * 8, 10))
    x = torch.randn(1, 16, 8, 8)
    cycles = []
    for n in (1, 2, 3):
        res = compress(model, "swis", num_threads=1, shared_bits=n, group_size=8)
        assert all(f.group_n and set(f.group_n) == {str(n)} for f in res.formats.values())
        cycles.append(simulate(trace(res.model, x, formats=res.formats), "swis16_ws").totals["compute_cycles"])
    assert cycles[0] < cycles[1] < cycles[2]
    # a variable-N policy: the real per-group N reach the array
    res = compress(model, "swis", num_threads=1, shared_bits=2, group_size=8, policy="greedy")
    fmt = res.formats["0"]
    assert len(set(fmt.group_n)) > 1 and len(fmt.group_n) == 32 * 9 * 2
    row = simulate(trace(res.model, x, formats=res.formats), "swis16_ws").layers[0]
    assert "per-group N from the SWISFormat" in row["loop_order"]


def test_swis_format_group_n_round_trips_and_is_checked():
    from archsim.ir.formats import format_from_dict
    f = swis_fmt([1, 2, 3, 0])
    assert format_from_dict(f.describe()) == f and hash(f) == hash(swis_fmt([1, 2, 3, 0]))
    assert list(f.group_n_array()) == [1, 2, 3, 0]
    with pytest.raises(ValueError, match="group_n"):
        SWISFormat(max_shared_bits=3, group_n="14")
    # a group_n that does not fit the layer is a user error naming the field
    with pytest.raises(ArchsimError, match="group_n has 3 groups"):
        layer_stats([linear(5, 4, 32, swis_fmt([1, 2, 3]))], "swis16_ws")


def test_no_multiplier_energy_or_area_in_the_swis_array():
    em = EnergyModel(load_arch("swis16_ws"))
    costs = em.pe.action_costs(em)
    assert not any("mult" in src for _, src in costs.values())
    assert not any("mult" in name for name in costs)
    assert set(em.pe.area_um2(em)) == {"pe_array", "shifters"}
    # the area does not read the multiplier row at all
    del em.table.entries["int8_mult"]
    assert em.pe.area_um2(em)["pe_array"][0] > 0 and em.pe.action_costs(em)


# -- Stripes ---------------------------------------------------------------------

@pytest.mark.parametrize("p", [2, 5, 8])
def test_stripes_cycles_scale_with_p(p):
    L = linear(40, 16, 48)  # 3 row folds, 1 column fold
    arch = load_arch("stripes16", [f"pe_array.precision={p}"])
    ls = layer_stats([L], arch)[0]
    assert ls.compute_cycles == 3 * (40 * p + FILL + DRAIN)
    assert ls.actions["pe_arith.gated_add"] == L.macs * p


def test_stripes_precision_from_the_profile_and_refused_without_one():
    L = linear(40, 16, 48, prof=flat_profile(48, [1] * 3, [1] * 3, bits=6))
    assert layer_stats([L], "stripes16")[0].compute_cycles == 3 * (40 * 6 + FILL + DRAIN)
    with pytest.raises(ArchsimError) as e:
        layer_stats([linear(40, 16, 48)], "stripes16")
    assert e.value.field == "pe_array.precision"


# -- Pragmatic -------------------------------------------------------------------

def _tiny_model_and_input(seed):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 4, bias=False))
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (3, 32), generator=g).float()
    x[0, 0] = 255.0  # scale 1: the quantized activations are x itself
    return model, x


def _hand_pragmatic_cycles(x):
    pop = np.vectorize(lambda v: bin(int(v)).count("1"))(x.numpy())
    stream = sum(max(1, pop[v, 16 * r:16 * r + 16].max()) for r in range(2) for v in range(3))
    return stream + 2 * (FILL + DRAIN)


@pytest.mark.parametrize("seed", [1, 2])
def test_pragmatic_cycles_equal_a_hand_count_of_essential_bits(seed):
    model, x = _tiny_model_and_input(seed)
    prof = profile_activations(model, x)
    assert set(prof) == {"0"} and prof["0"].n_vectors == 3
    layers = attach_profiles(trace(model, x), prof)
    ls = layer_stats(layers, "pragmatic16")[0]
    assert ls.compute_cycles == _hand_pragmatic_cycles(x)
    pop = np.vectorize(lambda v: bin(int(v)).count("1"))(x.numpy())
    assert ls.actions["oneffset.encode"] == pop.sum()
    assert ls.actions["pe_arith.shift_add"] == 4 * pop.sum()


def test_pragmatic_cycles_change_when_the_activations_change():
    model, x = _tiny_model_and_input(1)
    sparse = x.clone()
    sparse[:, 1:] = torch.where(sparse[:, 1:] > 128, 128.0, 0.0)  # one essential bit at most
    cyc = []
    for data in (x, sparse):
        layers = attach_profiles(trace(model, data), profile_activations(model, data))
        cyc.append(layer_stats(layers, "pragmatic16")[0].compute_cycles)
    assert cyc[1] < cyc[0] and cyc[1] == _hand_pragmatic_cycles(sparse)


def test_pragmatic_without_a_profile_is_refused():
    with pytest.raises(ArchsimError, match="activation profile"):
        layer_stats([linear(4, 4, 16)], "pragmatic16")


# -- every new kind --------------------------------------------------------------

KINDS = ("swis16_ws", "stripes16", "pragmatic16", "int8_same_area")


def _conv_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 24, 3, padding=1, bias=False), nn.ReLU(),
                         nn.Conv2d(24, 20, 3, stride=2, bias=False), nn.ReLU(), nn.Flatten(),
                         nn.Linear(20 * 7 * 7, 10))


@pytest.mark.parametrize("name", KINDS)
def test_each_kind_runs_end_to_end_from_its_yaml_and_conserves_macs_and_bytes(name):
    model = _conv_model()
    x = torch.randn(2, 3, 16, 16)
    prof = profile_activations(model, torch.relu(torch.randn(8, 3, 16, 16)))
    res = compress(model, "swis", num_threads=1, shared_bits=2, group_size=8, policy="greedy")
    formats = res.formats if name == "swis16_ws" else None
    layers = attach_profiles(trace(res.model if formats else model, x, formats=formats), prof)
    arch = load_arch(name)
    g = tile(layers, arch)
    stats = run(g, arch)
    rep = simulate(layers, arch)
    assert rep.totals["energy_total_pj"] > 0 and rep.area_um2["total"] > 0
    # MACs: the compute nodes cover every MAC of every layer exactly once
    for li, L in enumerate(layers):
        assert sum(d["macs"] for _, d in g.nodes(data=True) if d["layer"] == li and d["kind"] == "compute") == L.macs
    # bytes: the same nest moves the same bytes as the dense systolic kind of the same size
    # (which refuses SWIS weights, archsim.hw.compat: those are checked below)
    ref = load_arch_dict({**yaml.safe_load((ARCH_DIR / f"{name}.yaml").read_text()),
                          "pe_array": {"kind": "systolic", "rows": arch.pe_array.rows, "cols": arch.pe_array.cols,
                                       "psum_overflow": arch.pe_array.psum_overflow}})
    if formats is None:
        ref_stats = run(tile(layers, ref), ref)
        for a, b in zip(stats.layers, ref_stats.layers):
            assert (a.dram_read_bytes, a.dram_write_bytes) == (b.dram_read_bytes, b.dram_write_bytes)
    # SWIS: weights move at the format's bits
    if name == "swis16_ws":
        for a, L in zip(stats.layers, layers):
            assert a.dram_read_by_buffer["weight"] >= L.fmt.tile_bytes(L.n_weights)
    assert stats.buffer_end_bytes == {"weight": 0, "input": 0, "output": 0}


def test_int8_same_area_matches_the_swis_array_area():
    def compute_area(name):
        em = EnergyModel(load_arch(name))
        return sum(v for k, v in em.area_um2().items() if k != "total" and not k.startswith("sram"))
    assert compute_area("int8_same_area") == pytest.approx(compute_area("swis16_ws"), rel=0.10)


@pytest.mark.parametrize("name,key,value,field", [
    ("swis16_ws", "group_size", 0, "pe_array.group_size"),
    ("swis16_ws", "schedule", "random", "pe_array.schedule"),
    ("stripes16", "precision", "auto", "pe_array.precision"),
    ("pragmatic16", "lanes", 4, "pe_array.lanes"),
    ("pragmatic16", "dataflow", "os", "pe_array.dataflow"),
])
def test_a_bad_yaml_block_is_one_line_naming_file_and_field_exit_2(tmp_path, capsys, name, key, value, field):
    d = yaml.safe_load((ARCH_DIR / f"{name}.yaml").read_text())
    d["pe_array"][key] = value
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(ArchsimError) as e:
        load_arch(p)
    assert e.value.field.startswith(field)
    assert main(["validate", str(p)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(p) in err and field in err
