"""SWIS: shared weight bit sparsity (Li, Romaszkan, Graening, Gupta).

Source weights: per-output-channel sign + B-bit magnitude, |q| = round(|w|/s)
in 0..2^B-1 with s = max|w_channel| / (2^B - 1) (B = `weight_bits` = 8; the
paper's storage formula 1 + N + N*ceil(log2 B)/G counts a sign plus N of B
magnitude bit positions, so positions 0..B-1 are all searchable).

Groups of G consecutive weights along the input channels (padded with zeros,
which every position set represents exactly) share N bit positions
S_g = {s_1..s_N}; each weight becomes sign * sum_i b_i 2^{s_i}.

Decomposition (exhaustive, vectorised): for every N-subset S of the B
positions (C(B, N) of them) the representable magnitudes are the 2^N subset
sums; every weight's best bit choice under S is the nearest representable
magnitude (searchsorted on the sorted sums, ties to the smaller). All sets
are scored for all groups at once (in chunks) and each group keeps the set of
least squared error (ties: the first set in itertools.combinations order).

Per-group N under a bit budget is a pluggable policy (`SWIS_POLICIES` or a
callable policy(err_table [G_count, n_max-n_min+1], n_min, shared_bits) ->
N per group):
  * 'uniform': every group gets N = shared_bits (an integer);
  * 'greedy': start all groups at n_min and hand out the remaining budget
    round(shared_bits * groups) - n_min * groups one shared bit at a time to
    the group whose error drops most (every extra bit costs the same,
    G + ceil(log2 B) bits). Each group's reductions are clipped to be
    non-increasing (running minimum) so greedy == a global top-K selection,
    which is vectorised. Variable N costs ceil(log2(n_max - n_min + 1)) bits
    per group to store N_g (SWISFormat.group_n_bits).
Optional retraining: latent FP32 weights, projected each forward pass onto
their group's fixed position set with a straight-through estimator,
cross-entropy on calibration data.
"""
from __future__ import annotations

import itertools
import math
from functools import lru_cache
from typing import Callable, Union

import torch

from archsim.ir.formats import SWISFormat, _ceil_log2
from ._common import (CompressionError, CompressionResult, channel_shape, compress_weights, finetune, from_rows,
                      pad_cols, run_len_of, summarize, target_layers, to_rows)


@lru_cache(maxsize=None)
def position_sets(weight_bits: int, n: int) -> tuple:
    """(sets [nS, n] long, sorted representable magnitudes [nS, 2^n] float,
    bit masks [nS] long) for every n-subset of positions 0..weight_bits-1."""
    combos = list(itertools.combinations(range(weight_bits), n))
    sets = torch.tensor(combos, dtype=torch.long).reshape(len(combos), n)
    # every on/off choice of the n bits: [2^n, n]
    choice = torch.tensor(list(itertools.product((0, 1), repeat=n)), dtype=torch.long).reshape(2 ** n, n)
    sums = choice @ (2 ** sets).T  # [2^n, nS]
    vals = torch.sort(sums.T.to(torch.float64), dim=1).values.float()
    masks = (2 ** sets).sum(1) if n else torch.zeros(len(combos), dtype=torch.long)
    return sets, vals, masks


def nearest_values(t: torch.Tensor, vals: torch.Tensor) -> torch.Tensor:
    """Nearest entry of each row's sorted `vals` [R, V] for targets t [R, n];
    ties go to the smaller value."""
    v = vals.shape[1]
    i = torch.searchsorted(vals.contiguous(), t.contiguous())
    lo = vals.gather(1, (i - 1).clamp(0, v - 1))
    hi = vals.gather(1, i.clamp(0, v - 1))
    return torch.where((t - lo).abs() <= (hi - t).abs(), lo, hi)


@lru_cache(maxsize=None)
def nearest_tables(weight_bits: int, n: int) -> tuple:
    """For integer targets 0..2^B-1: nearest representable magnitude [nS, 2^B]
    and its squared error [nS, 2^B] under every position set. The targets
    are B-bit integers, so a table lookup replaces a search per weight."""
    _, vals, _ = position_sets(weight_bits, n)
    t = torch.arange(2 ** weight_bits, dtype=torch.float32).unsqueeze(0).expand(vals.shape[0], -1)
    near = nearest_values(t, vals)
    return near, (near - t) ** 2


def best_sets(t: torch.Tensor, weight_bits: int, n: int, chunk_elems: int = 1 << 22) -> tuple:
    """Exhaustive search for groups t [Ng, G] of integer magnitudes in
    0..2^B-1 (as float). Returns (set index per group [Ng], squared error per
    group [Ng], q [Ng, G] the nearest representable magnitudes)."""
    near_tab, err_tab = nearest_tables(weight_bits, n)
    n_sets = near_tab.shape[0]
    ng, g = t.shape
    ti = t.to(torch.long)
    if not torch.equal(ti.to(t.dtype), t) or ti.min() < 0 or ti.max() >= 2 ** weight_bits:
        raise ValueError(f"targets must be integers in 0..{2 ** weight_bits - 1}")
    rows_per_chunk = max(1, chunk_elems // (n_sets * g))
    best = torch.empty(ng, dtype=torch.long)
    err = torch.empty(ng)
    for s in range(0, ng, rows_per_chunk):
        tc = ti[s:s + rows_per_chunk]
        e = err_tab[:, tc.reshape(-1)].reshape(n_sets, tc.shape[0], g).sum(-1)  # [nS, ng]
        ev, ei = e.min(0)  # first minimum: deterministic tie-break
        best[s:s + rows_per_chunk] = ei
        err[s:s + rows_per_chunk] = ev
    q = near_tab[best.unsqueeze(1), ti]
    return best, err, q


# ---------------------------------------------------------------- policies

def policy_uniform(err_table: torch.Tensor, n_min: int, shared_bits: float) -> torch.Tensor:
    if shared_bits != int(shared_bits):
        raise CompressionError(f"policy 'uniform' needs an integer, got {shared_bits}", field="shared_bits")
    if not n_min <= shared_bits < n_min + err_table.shape[1]:
        raise CompressionError("outside [n_min, n_max]", field="shared_bits")
    return torch.full((err_table.shape[0],), int(shared_bits), dtype=torch.long)


def policy_greedy(err_table: torch.Tensor, n_min: int, shared_bits: float) -> torch.Tensor:
    ng, nn_ = err_table.shape
    budget = int(round(shared_bits * ng)) - n_min * ng
    if not 0 <= budget <= ng * (nn_ - 1):
        raise CompressionError(f"{shared_bits} outside [n_min, n_max] for policy 'greedy'", field="shared_bits")
    gains = (err_table[:, :-1] - err_table[:, 1:]).double()
    gains = torch.cummin(gains, dim=1).values  # non-increasing per group
    order = torch.sort(gains.flatten(), descending=True, stable=True).indices[:budget]
    taken = torch.zeros(ng * (nn_ - 1), dtype=torch.long)
    taken[order] = 1
    return n_min + taken.reshape(ng, nn_ - 1).sum(1)


SWIS_POLICIES = {"uniform": policy_uniform, "greedy": policy_greedy}


# ---------------------------------------------------------------- one tensor

def swis_tensor(w: torch.Tensor, group_size: int = 8, shared_bits: float = 3, weight_bits: int = 8,
                policy: Union[str, Callable] = "uniform", n_min: int = 0, n_max=None,
                scale_bits: int = 32) -> tuple:
    """SWIS-decompose one weight tensor. Returns (w_hat, SWISFormat, state);
    state: scale, sign rows, q rows (integer magnitudes, padded rows),
    n per group, set bit mask per group, group values table for projection."""
    pol = SWIS_POLICIES[policy] if isinstance(policy, str) else policy
    if n_max is None:
        n_max = weight_bits if policy == "uniform" else min(weight_bits, math.ceil(shared_bits) + 2)
    if policy == "uniform":
        n_min = n_max = int(shared_bits)  # one N: search only that
    if not 0 <= n_min <= n_max <= weight_bits:
        raise CompressionError(f"need 0 <= n_min <= n_max <= weight_bits, got {n_min}, {n_max}, {weight_bits}",
                               field="n_min")
    qmax = 2 ** weight_bits - 1
    amax = w.abs().reshape(w.shape[0], -1).amax(1).reshape(channel_shape(w))
    scale = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
    mag = torch.clamp(torch.round(w.abs() / scale), 0, qmax)
    rows = pad_cols(to_rows(mag), group_size)
    t = rows.reshape(-1, group_size)
    ng = t.shape[0]
    ns = list(range(n_min, n_max + 1))
    per_n = {n: best_sets(t, weight_bits, n) for n in ns}
    err_table = torch.stack([per_n[n][1] for n in ns], 1)
    n_g = pol(err_table, n_min, shared_bits).long()
    q = torch.empty_like(t)
    set_mask = torch.empty(ng, dtype=torch.long)
    vmax = 2 ** n_max
    group_vals = torch.empty(ng, vmax)
    for n in ns:
        sel = n_g == n
        if not sel.any():
            continue
        best, _, qn = per_n[n]
        q[sel] = qn[sel]
        _, vals, masks = position_sets(weight_bits, n)
        set_mask[sel] = masks[best[sel]]
        v = vals[best[sel]]
        group_vals[sel] = torch.cat([v, v[:, -1:].expand(-1, vmax - v.shape[1])], 1)  # pad by repeating the max
    sign = torch.where(w >= 0, 1.0, -1.0)
    length = run_len_of(w.shape)
    q_w = from_rows(q.reshape(rows.shape)[:, :length], w.shape)
    w_hat = sign * q_w * scale
    variable = policy != "uniform"
    fmt = SWISFormat(group_size=group_size, weight_bits=weight_bits,
                     shared_bits=float(n_g.float().mean()) if variable else int(shared_bits),
                     max_shared_bits=int(n_g.max()),
                     group_n_bits=_ceil_log2(n_max - n_min + 1) if variable else 0,
                     n_scales=w.shape[0], scale_bits=scale_bits, run_len=length,
                     group_n="".join(map(str, n_g.tolist())))
    state = {"scale": scale, "q_rows": q.reshape(rows.shape), "n_per_group": n_g, "set_mask": set_mask,
             "group_vals": group_vals, "rows_shape": tuple(rows.shape), "run_len": length,
             "shape": tuple(w.shape), "group_size": group_size}
    return w_hat, fmt, state


def swis_project(latent: torch.Tensor, state: dict) -> torch.Tensor:
    """Project latent weights onto their groups' fixed position sets with a
    straight-through estimator (forward: nearest representable, backward:
    identity)."""
    scale = state["scale"]
    t = pad_cols(to_rows(latent.abs() / scale), state["group_size"]).reshape(-1, state["group_size"])
    with torch.no_grad():
        qt = nearest_values(t.detach(), state["group_vals"])
    q = t + (qt - t).detach()
    q_w = from_rows(q.reshape(state["rows_shape"])[:, :state["run_len"]], state["shape"])
    sign = torch.where(latent >= 0, 1.0, -1.0).detach()
    return sign * q_w * scale


def compress_swis(model, calib=None, seed=0, group_size: int = 8, shared_bits: float = 3,
                  weight_bits: int = 8, policy: Union[str, Callable] = "uniform", n_min: int = 0,
                  n_max=None, retrain_steps: int = 0, lr: float = 1e-4, scale_bits: int = 32,
                  skip_layers=()) -> CompressionResult:
    """SWIS of every Conv/Linear (defaults G=8, N=3 of B=8, uniform N).
    retrain_steps > 0 needs calib ((inputs, labels) batches)."""
    if retrain_steps and calib is None:
        raise CompressionError("swis: retrain_steps > 0 needs calib data", field="calib")
    if isinstance(policy, str) and policy not in SWIS_POLICIES:
        raise CompressionError(f"must be one of {sorted(SWIS_POLICIES)} or a callable, got {policy!r}",
                               field="policy")
    params = dict(group_size=group_size, shared_bits=shared_bits, weight_bits=weight_bits,
                  policy=policy if isinstance(policy, str) else "callable", n_min=n_min, n_max=n_max,
                  retrain_steps=retrain_steps, lr=lr, scale_bits=scale_bits, skip_layers=tuple(skip_layers))

    def layer(w, _seed):
        return swis_tensor(w, group_size, shared_bits, weight_bits, policy, n_min, n_max, scale_bits)

    new, fmts, err, n_w, states, t0 = compress_weights(model, "swis", params, layer, seed, skip_layers)
    extra = {}
    if retrain_steps:
        orig = dict(model.named_modules())
        latents = {n: torch.nn.Parameter(orig[n].weight.detach().float().clone()) for n in states}

        def build():
            return {f"{n}.weight": swis_project(latents[n], states[n]) for n in states}

        extra["finetune_loss"] = finetune(new, build, list(latents.values()), calib, retrain_steps, lr, seed=seed)
        err = {}
        with torch.no_grad():
            for name, mod in target_layers(new, skip_layers):
                w_hat = swis_project(latents[name], states[name])
                mod.weight.copy_(w_hat)
                err[name] = float(((w_hat - orig[name].weight.float()) ** 2).sum())
    info = summarize("swis", params, fmts, err, n_w, t0)
    info.update(extra)
    return CompressionResult(new, fmts, info, states)
