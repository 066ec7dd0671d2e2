"""A layer codebook larger than the codebook buffer (issue 21): refused,
cached or streamed as `codebook.overflow` says (archsim/hw/codebook.py),
and the DRAM traffic and the decoder's waiting show it."""
import math
from functools import lru_cache

import pytest
import torch
from torch import nn

from archsim.api import simulate
from archsim.config import load_arch
from archsim.hw.codebook import MISS_BURST_BYTES
from archsim.ir.errors import ArchsimError
from archsim.ir.formats import llm_weight_format
from archsim.tiling import tile
from workloads.compile import trace

EDGE = "arch_configs/llm_edge.yaml"
N = 1024  # a 1024 x 1024 linear layer at batch 1: 64 weight tiles of 128 x 128 on llm_edge


@lru_cache(maxsize=None)
def layers(fmt_name="lcvq", n=N):
    m = nn.Sequential(nn.Linear(n, n, bias=False))
    return tuple(trace(m, torch.zeros(1, n), {"0": llm_weight_format(fmt_name, n)}))


def arch(entries=None, overflow=None):
    ov = ([f"codebook.entries={entries}"] if entries else []) + ([f"codebook.overflow={overflow}"] if overflow else [])
    return load_arch(EDGE, ov)


@lru_cache(maxsize=None)
def run(fmt_name="lcvq", entries=None, overflow=None):
    r = simulate(list(layers(fmt_name)), arch(entries, overflow))
    return r, r.layer_counters[0]


def cb_bytes(lc):
    return lc["dram_read_by_buffer"]["codebook"]


def n_decode_tiles(fmt_name="lcvq"):
    """Decode tiles of the layer, counted on the graph of a buffer the codebook fits."""
    fmt = layers(fmt_name)[0].fmt
    g = tile(list(layers(fmt_name)), arch(fmt.n_codebooks * fmt.k))
    return sum(1 for _, a in g.nodes(data=True) if a["kind"] == "decode")


def expected_cache_bytes(fmt, n_weights, entries):
    """First fill (C codewords + the scales) + expected misses x one burst-rounded codeword line."""
    K = fmt.n_codebooks * (fmt.k + getattr(fmt, "residual_k", 0))
    cw_bits = fmt.d * fmt.codebook_bits
    scale_bits = fmt.side_bits(n_weights) - K * cw_bits
    fill = math.ceil((entries * cw_bits + scale_bits) / 8)
    line = MISS_BURST_BYTES * math.ceil(cw_bits / 8 / MISS_BURST_BYTES)
    misses = fmt.decode_lookups(n_weights) * (1 - entries / K)
    return fill, misses, line


def test_refused_by_default_naming_the_field_and_the_way_out():
    with pytest.raises(ArchsimError) as e:
        simulate(list(layers()), arch(16384))
    assert e.value.field == "codebook.entries"
    assert "llm_edge.yaml" in str(e.value) and "codebook.overflow" in str(e.value)
    assert "stream or cache" in str(e.value)


def test_a_bad_overflow_value_is_a_one_line_error_naming_the_field():
    with pytest.raises(ArchsimError) as e:
        load_arch(EDGE, ["codebook.overflow=spill"])
    assert e.value.field == "codebook.overflow"
    assert "\n" not in str(e.value) and "codebook.overflow=spill" in str(e.value)
    assert "'refuse', 'stream' or 'cache'" in str(e.value)


@pytest.mark.parametrize("overflow", ["cache", "stream"])
def test_a_codebook_that_fits_gives_todays_numbers(overflow):
    today, today_lc = run()
    r, lc = run(overflow=overflow)
    assert r.totals == today.totals and lc == today_lc
    g0, g1 = tile(list(layers()), arch()), tile(list(layers()), arch(overflow=overflow))
    assert list(g0.nodes(data=True)) == list(g1.nodes(data=True)) and list(g0.edges) == list(g1.edges)
    # today: the whole codebook (and the scales) once per layer
    assert cb_bytes(lc) == layers()[0].fmt.side_bytes(N * N)


def test_cache_traffic_is_the_first_fill_plus_the_expected_misses():
    L = layers()[0]
    prev = cb_bytes(run()[1])
    for entries in (16384, 4096, 1024):
        fill, misses, line = expected_cache_bytes(L.fmt, L.n_weights, entries)
        lc = run(entries=entries, overflow="cache")[1]
        # the misses are rounded once, on the layer's running total
        assert abs(cb_bytes(lc) - (fill + misses * line)) <= line
        assert lc["actions"]["codebook.write"] == pytest.approx(entries + misses, abs=1)
        assert cb_bytes(lc) > prev  # fewer codewords held: more traffic
        prev = cb_bytes(lc)


def test_stream_rereads_the_codebook_for_every_decode_tile():
    L = layers()[0]
    codebook = (1 << 16) * 8 * 2
    tiles = n_decode_tiles()
    scales = L.fmt.side_bytes(L.n_weights) - codebook
    for entries in (16384, 4096):
        r, lc = run(entries=entries, overflow="stream")
        assert cb_bytes(lc) == tiles * codebook + scales
        assert lc["actions"]["codebook.write"] == tiles * (1 << 16)
        # each lookup is still made once, in the pass whose chunk holds its codeword
        assert r.totals["codebook_lookups"] == run()[0].totals["codebook_lookups"]
        cache_r, cache_lc = run(entries=entries, overflow="cache")
        assert cb_bytes(lc) >= cb_bytes(cache_lc)
        assert r.totals["total_cycles"] >= cache_r.totals["total_cycles"]


def test_the_decoder_waits_for_the_codebook_and_the_layer_slows_down():
    fits, fits_lc = run()
    prev_wait, prev_cycles = fits_lc["wait_data_cycles"]["decoder"], fits.totals["total_cycles"]
    for entries in (16384, 4096):
        r, lc = run(entries=entries, overflow="cache")
        assert lc["wait_data_cycles"]["decoder"] > prev_wait
        assert r.totals["total_cycles"] > prev_cycles
        # the channel is busy with the misses: at least their bytes over the bandwidth
        a = arch(entries, "cache")
        assert lc["busy_cycles"]["dma.codebook"] >= cb_bytes(lc) / a.dram.bandwidth_bytes_per_cycle
        prev_wait, prev_cycles = lc["wait_data_cycles"]["decoder"], r.totals["total_cycles"]
    s, s_lc = run(entries=4096, overflow="stream")
    assert s_lc["wait_data_cycles"]["decoder"] > prev_wait and s.totals["total_cycles"] > prev_cycles
    # the codebook's writes are priced
    assert run(entries=4096, overflow="stream")[0].totals["energy_codebook_pj"] > \
        run(entries=4096, overflow="cache")[0].totals["energy_codebook_pj"]


def test_aqlm_2x8_on_a_tiny_codebook_buffer():
    L = layers("aqlm-2x8")[0]
    fmt = L.fmt
    assert fmt.n_codebooks == 2 and fmt.k == 256
    with pytest.raises(ArchsimError) as e:
        run("aqlm-2x8", 64)
    assert e.value.field == "codebook.entries"
    # cache: 64 of the 512 codewords of the two codebooks held, 7/8 of the lookups miss
    fill, misses, line = expected_cache_bytes(fmt, L.n_weights, 64)
    assert misses == fmt.decode_lookups(L.n_weights) * 7 / 8
    lc = run("aqlm-2x8", 64, "cache")[1]
    assert abs(cb_bytes(lc) - (fill + misses * line)) <= line
    # stream: both codebooks (512 x 16 B) in 8 chunks of 64, for every decode tile
    tiles = n_decode_tiles("aqlm-2x8")
    scales = fmt.side_bytes(L.n_weights) - 512 * 16
    s, s_lc = run("aqlm-2x8", 64, "stream")
    assert cb_bytes(s_lc) == tiles * 512 * 16 + scales
    assert s.layers[0]["codebook_lookups"] == run("aqlm-2x8")[0].layers[0]["codebook_lookups"]
    # the additions that sum the two codewords are all made, split over the passes
    assert s_lc["actions"]["decoder.add"] == run("aqlm-2x8")[1]["actions"]["decoder.add"]
    assert s_lc["wait_data_cycles"]["decoder"] > run("aqlm-2x8")[1]["wait_data_cycles"]["decoder"]
