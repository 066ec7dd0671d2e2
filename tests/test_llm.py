"""LLM inference (issue 21): the decoder-only family, its VQ formats, and
prefill + decode with a KV cache (archsim.llm)."""
import dataclasses
from functools import lru_cache

import pytest
import torch

from archsim.ir.errors import ArchsimError
from archsim.llm import KV_FORMATS, _Runner, simulate_llm
from archsim.config import load_arch
from archsim.ir.formats import (AdditiveVQFormat, LargeCodebookVQFormat, format_from_dict, llm_weight_format)
from workloads.zoo.llm import PRESETS, DecoderLM, build_llm, linear_shapes, preset, step_workload

EDGE = "arch_configs/llm_edge.yaml"
# llm_edge with no level for the KV cache: every step reads each layer's whole cache from DRAM
KV_IN_DRAM = ("memory.levels.0.serves=[activations, psums]", "memory.levels.0.quotas={}")
# llm_edge with an 80 kB global buffer (40 kB for the KV cache): llama-tiny's caches leave the chip layer by layer as they grow
SMALL_GB = ("memory.levels.0.capacity_bytes=80000",)


@lru_cache(maxsize=None)
def run(weights="int8", kv="int8", prompt=32, generate=8, model="llama-tiny", mode="fast", samples=5,
        overrides=()):
    return simulate_llm(model, EDGE, prompt=prompt, generate=generate, weights=weights, kv_format=kv,
                        mode=mode, decode_samples=samples, overrides=overrides)


# -- models ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", [n for n, c in PRESETS.items() if c.published_params])
def test_meta_parameter_count_is_the_published_one(name):
    m = build_llm(name, device="meta")
    assert all(p.is_meta for p in m.parameters())
    assert sum(p.numel() for p in m.parameters()) == PRESETS[name].published_params


def test_block_trace_has_the_gemms_of_the_config():
    cfg = preset("llama3-8b")
    layers = step_workload(cfg, tokens=1, past=100, n_blocks=1)
    lin = {L.name.removeprefix("blocks.0."): (L.N, L.K) for L in layers if L.name.startswith("blocks.0.")}
    assert lin == linear_shapes(cfg)
    qk, av = [L for L in layers if L.op == "matmul"]
    # GQA: 4 query heads share each of the 8 K/V heads, stacked as rows
    assert (qk.groups, qk.M, qk.K, qk.N) == (8, 4, 128, 101)
    assert (av.groups, av.M, av.K, av.N) == (8, 4, 101, 128)


def test_kv_cache_decode_equals_prefill():
    m = build_llm("llama-tiny", device="cpu")
    blk = m.blocks[0]
    x = torch.randn(1, 12, 256, generator=torch.Generator().manual_seed(0))
    empty = torch.zeros(1, 2, 0, 32)
    full, _, _ = blk(x, empty, empty)
    _, k, v = blk(x[:, :11], empty, empty)
    last, _, _ = blk(x[:, 11:], k, v)
    assert torch.allclose(full[:, 11:], last, atol=1e-5)


def test_step_kv_cache_is_a_persistent_tensor_the_step_appends_to():
    cfg = preset("llama-tiny")
    wl = step_workload(cfg, tokens=1, past=40, batch=2, n_blocks=2, kv_bits=8.5, kv_op="quantize")
    for i in range(2):
        for w in "kv":
            t = wl.tensors[f"blocks.{i}.attn.{w}_cache"]
            # the whole cache (40 + 1 tokens of every K/V head), stored at the KV format's width
            assert t.persistent and t.bits == 8.5 and t.elems == 2 * cfg.n_kv_heads * 41 * cfg.head_dim
            append = next(o for o in wl.ops if o.name == t.producer)
            # ... but a step writes only the new token's elements: the cache grows in place
            assert append.op == "quantize" and append.elems == 2 * cfg.n_kv_heads * cfg.head_dim
    qk = [L for L in wl if L.op == "matmul"][0]
    assert qk.inputs[1] == "blocks.0.attn.k_cache" and (qk.groups, qk.M, qk.N) == (2 * cfg.n_kv_heads, cfg.group, 41)
    assert not {"past_k", "past_v"} & set(wl.tensors) and "past_k" not in wl.inputs
    # the non-GEMM operators of a block are there for the vector unit
    kinds = {o.op for o in wl.vector_ops}
    assert {"embedding", "rmsnorm", "softmax", "silu", "add", "mul", "quantize"} <= kinds


# -- formats --------------------------------------------------------------------------

def test_llm_vq_formats_bits_per_weight_include_codebooks():
    n = 4096 * 4096
    aq = llm_weight_format("aqlm-2x8", 4096)
    assert aq.payload_bits(n) == n * 2                       # 2 indices of 8 bits per 8 weights
    assert aq.side_bits(n) == 2 * 256 * 8 * 16 + 4096 * 16   # two FP16 codebooks + channel scales
    assert aq.decode_lookups(8) == 2 and aq.decode_adds(8) == 8
    lc = llm_weight_format("lcvq", 4096)
    assert lc.side_bytes(n) == (1 << 16) * 8 * 2 + 4096 * 2  # the 1 MiB codebook
    assert lc.bits_per_weight(n) == pytest.approx(2 + (8 * 2 ** 20 + 4096 * 16) / n)
    res = llm_weight_format("lcvq-res", 4096)
    assert res.payload_bits(n) == n // 8 * 24 and res.decode_lookups(8) == 2
    for f in (aq, lc, res):
        assert format_from_dict(f.describe()) == f


def test_compress_real_weights_seeded():
    from workloads.compression import compress

    m = build_llm("llama-tiny", device="cpu")
    keep = {"blocks.0.attn.q_proj"}
    skip = [n for n, mod in m.named_modules() if isinstance(mod, torch.nn.Linear) and n not in keep]
    a = compress(m, "aqlm", seed=3, skip_layers=skip, niter=5, num_threads=1)
    b = compress(m, "aqlm", seed=3, skip_layers=skip, niter=5, num_threads=1)
    fmt = a.formats["blocks.0.attn.q_proj"]
    assert isinstance(fmt, AdditiveVQFormat) and fmt.k == 256 and fmt.n_codebooks == 2
    assert torch.equal(a.model.blocks[0].attn.q_proj.weight, b.model.blocks[0].attn.q_proj.weight)
    w = m.blocks[0].attn.q_proj.weight
    err = (a.model.blocks[0].attn.q_proj.weight - w).pow(2).mean() / w.pow(2).mean()
    assert err < 0.5  # two 256-entry codebooks of d=8 on Gaussian weights: about 0.3
    lc = compress(m, "lcvq", seed=0, skip_layers=skip, k=1024, residual_k=16, niter=3, num_threads=1)
    f2 = lc.formats["blocks.0.attn.q_proj"]
    assert isinstance(f2, LargeCodebookVQFormat) and (f2.k, f2.residual_k) == (1024, 16)
    # real weights: not a hardware-only run; the compressed layer is simulated in its format
    r = simulate_llm(a.model, EDGE, prompt=8, generate=2, weights=a.formats)
    assert not r.hardware_only and "aqlm" in r.weights
    assert run().hardware_only and "HARDWARE-ONLY" in run().describe()


# -- prefill + decode -----------------------------------------------------------------

@pytest.mark.parametrize("overrides", [(), SMALL_GB], ids=["caches-on-chip", "caches-leave-the-chip"])
def test_replayed_sampled_simulation_equals_the_full_one(overrides):
    fast = run(prompt=16, generate=7, samples=3, overrides=overrides)
    full = run(prompt=16, generate=7, mode="full", overrides=overrides)
    assert len(fast.sampled_context) == 3 < len(full.sampled_context) == 6
    for f in ("ttft_ms", "tpot_ms", "energy_per_token_uj", "prefill_energy_uj"):
        assert getattr(fast, f) == pytest.approx(getattr(full, f), rel=0.01), f
    for k in ("weights", "codebook", "kv"):
        assert fast.dram_bytes_per_token[k] == pytest.approx(full.dram_bytes_per_token[k], rel=0.01, abs=1), k
    assert fast.kv_layers_on_chip == full.kv_layers_on_chip


def test_fast_equals_full_while_the_caches_leave_the_chip():
    # 64 decode steps over which llama-tiny's caches go from all 4 layers on chip to 2
    fast = run(prompt=64, generate=64, overrides=SMALL_GB)
    full = run(prompt=64, generate=64, mode="full", overrides=SMALL_GB)
    assert fast.kv_layers_on_chip[0] == 4 and fast.kv_layers_on_chip[-1] == 2
    for f in ("ttft_ms", "tpot_ms", "energy_per_token_uj"):
        assert getattr(fast, f) == pytest.approx(getattr(full, f), rel=0.01), f  # measured 0.0-0.7%


def test_roofline_batch1_decode_on_the_bandwidth_bound_design():
    r = run()
    bw_bytes_per_ms = load_arch(EDGE).dram.bandwidth_bytes_per_cycle * load_arch(EDGE).clock_mhz * 1e3
    floor_ms = r.dram_bytes_per_token["weights"] / bw_bytes_per_ms
    assert floor_ms <= r.tpot_ms <= 1.15 * floor_ms


def test_compression_law():
    base = run("int8")
    total = lambda r: sum(v for k, v in r.dram_bytes_per_token.items() if k != "codebook")
    for w in ("int4", "aqlm-2x8"):
        r = run(w)
        assert 1 < base.tpot_ms / r.tpot_ms <= total(base) / total(r), w
    # a 1 MiB codebook per layer costs more than it saves on layers this small
    assert run("lcvq").dram_bytes_per_token["codebook"] > run("aqlm-2x8").dram_bytes_per_token["codebook"]
    assert run("lcvq").tpot_ms > run("aqlm-2x8").tpot_ms


def test_codebook_traffic_is_every_layers_codebook_every_step():
    cfg = preset("llama-tiny")
    r = run("lcvq")
    per_layer = sum(llm_weight_format("lcvq", o).side_bytes(o * i) for o, i in linear_shapes(cfg).values())
    head = llm_weight_format("lcvq", cfg.vocab).side_bytes(cfg.vocab * cfg.dim)
    assert r.dram_bytes_per_token["codebook"] == pytest.approx(cfg.n_layers * per_layer + head, rel=1e-9)
    # ... and the stalls: every codebook load takes its bytes over the channel, and the decoder
    # (then the PE array) waits for it: here a 1 MiB codebook per layer of 16-128 KiB of indices
    arch = load_arch(EDGE)
    load_ms = r.dram_bytes_per_token["codebook"] / (arch.dram.bandwidth_bytes_per_cycle * arch.clock_mhz * 1e3)
    st = r.stall_ms_per_token
    # (plus the DRAM latency of each load, and the channel shared with index tiles: measured +2.6%)
    assert load_ms <= st["codebook_load"] <= 1.05 * load_ms
    assert st["decoder_waiting"] > 0.9 * st["codebook_load"] and st["pe_waiting"] > 0.9 * st["codebook_load"]
    assert run("aqlm-2x8").stall_ms_per_token["codebook_load"] < 0.05 * st["codebook_load"]


def test_growth_prefill_quadratic_attention_linear_rest():
    cfg = preset("llama-tiny")
    dense = {n: llm_weight_format("int8", o) for n, (o, _) in linear_shapes(cfg).items()}
    # activations through DRAM too: a buffer that holds them at one prompt length and not at the
    # other would hide the law
    arch = load_arch(EDGE, list(KV_IN_DRAM) + ["memory.retain_activations=false"])
    r = _Runner(cfg, arch, KV_FORMATS["int8"], 1, [dense] * cfg.n_layers,
                llm_weight_format("int8", cfg.vocab))
    at = lambda t: r.first(t, t, ("dram", "dram"), core=True)
    whole = lambda t: r.first(t, t, ("dram", "dram"))
    a1, a2 = at(256), at(512)
    rest1, rest2 = whole(256) + a1 * -1, whole(512) + a2 * -1
    # measured 3.89x and 1.89x (fixed costs: pipeline fill, DRAM latency, the weights)
    assert 3.5 < a2.cycles / a1.cycles <= 4.2
    assert 1.6 < rest2.cycles / rest1.cycles <= 2.1


def test_decode_time_grows_with_context_once_the_cache_leaves_the_chip():
    off = run(prompt=32, generate=64, overrides=KV_IN_DRAM)
    assert all(b >= a for a, b in zip(off.ms_per_token, off.ms_per_token[1:]))
    on = run(prompt=32, generate=64)  # llm_edge's 4 MiB holds every cache
    assert on.kv_layers_on_chip == [cfg_layers := preset("llama-tiny").n_layers] * 63 and on.dram_bytes_per_token["kv"] == 0
    leaving = run(prompt=64, generate=64, overrides=SMALL_GB)
    grow = lambda r: r.ms_per_token[-1] - r.ms_per_token[0]
    assert grow(on) < 0.25 * grow(off)
    # the caches leave the chip one by one, and each one off chip adds its reads to every step
    assert leaving.kv_layers_on_chip[-1] < leaving.kv_layers_on_chip[0] == cfg_layers
    assert leaving.ms_per_token[-1] > leaving.ms_per_token[0]


@pytest.mark.parametrize("weights, coalesced", [("int8", True), ("int4", True), ("aqlm-2x8", False)])
def test_fidelity_tile_is_one_node_per_weight_transfer_and_exact(weights, coalesced):
    from archsim.api import simulate
    from archsim.ir.layer_spec import LayerSpec
    from archsim.tiling import tile

    layers = [LayerSpec(n, "linear", M=1, N=1024, K=2048, fmt=llm_weight_format(weights, 1024)) for n in "ab"]
    fold, per_tile = load_arch(EDGE, ["pe_array.fidelity=fold"]), load_arch(EDGE)
    assert per_tile.pe_array.fidelity == "tile"
    computes = lambda arch: sum(a["kind"] == "compute" for _, a in tile(layers, arch).nodes(data=True))
    loads = sum(a["unit"] == "dma.weight" for _, a in tile(layers, per_tile).nodes(data=True))
    # decode: a 128 KiB weight transfer feeds 8 folds of 16 KiB; a VQ tile's decode separates its folds
    assert computes(per_tile) == (loads if coalesced else computes(fold)) < computes(fold) * (1 if coalesced else 2)
    a, b = simulate(layers, fold), simulate(layers, per_tile)
    for k in ("total_cycles", "energy_total_pj", "dram_read_bytes", "dram_write_bytes"):
        assert a.totals[k] == pytest.approx(b.totals[k], rel=1e-12), k


def test_a_cache_that_stops_fitting_is_copied_to_dram_once():
    r = run(prompt=64, generate=64, overrides=SMALL_GB)
    on = r.kv_layers_on_chip
    drops = [i for i in range(1, len(on)) if on[i] < on[i - 1]]
    assert drops
    for i in (i for i in drops if i + 1 < len(on)):
        # the step that evicts pays the copy; the next one does not
        assert r.ms_per_token[i] > r.ms_per_token[i + 1]
    # no vector unit to copy it: not simulated, and the notes say so
    bare = run(prompt=64, generate=64, overrides=SMALL_GB + ("vector_unit=null",))
    assert "not simulated (no vector unit)" in bare.notes[0]


def test_gqa_cuts_kv_bytes_by_the_group_factor():
    cfg = preset("llama-tiny")
    with torch.device("meta"):
        mha = DecoderLM(dataclasses.replace(cfg, name="llama-tiny-mha", n_kv_heads=cfg.n_heads))
    gqa = run(overrides=KV_IN_DRAM)
    full = simulate_llm(mha, EDGE, prompt=32, generate=8, overrides=KV_IN_DRAM)
    assert full.dram_bytes_per_token["kv"] == pytest.approx(cfg.group * gqa.dram_bytes_per_token["kv"], rel=1e-3)
    # and the KV bytes are the cache, whole, every step (elements + per-token scales), plus the
    # new token's K and V appended
    bits = KV_FORMATS["int8"].bits_per_elem(cfg.head_dim)
    per_token_layer = 2 * cfg.n_kv_heads * cfg.head_dim * bits / 8
    mean_ctx = sum(gqa.context) / len(gqa.context)
    want = cfg.n_layers * (mean_ctx + 1) * per_token_layer
    assert gqa.dram_bytes_per_token["kv"] == pytest.approx(want, rel=1e-3)


def test_kv_formats_order_and_fp16_needs_a_16_bit_datapath():
    b4 = run(kv="int4", overrides=KV_IN_DRAM).dram_bytes_per_token["kv"]
    b8 = run(kv="int8", overrides=KV_IN_DRAM).dram_bytes_per_token["kv"]
    b16 = run(kv="fp16", overrides=KV_IN_DRAM + ("pe_array.act_bits=16",)).dram_bytes_per_token["kv"]
    assert b4 < b8 < b16
    with pytest.raises(ArchsimError) as e:
        run(kv="fp16")
    assert "pe_array.act_bits" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("kw, field", [
    (dict(prompt=0), "prompt"), (dict(model="llama-9b"), "model"), (dict(kv="int3"), "kv_format"),
    (dict(weights="int5"), "weights"), (dict(prompt=1000, generate=100), "generate"),
])
def test_bad_input_is_one_line(kw, field):
    with pytest.raises(ArchsimError) as e:
        run(**kw)
    assert e.value.field == field and "\n" not in str(e.value)


def test_same_inputs_same_outputs():
    a = simulate_llm("llama-tiny", EDGE, prompt=8, generate=3, weights="aqlm-2x8")
    b = simulate_llm("llama-tiny", EDGE, prompt=8, generate=3, weights="aqlm-2x8")
    assert a.headline() == b.headline() and a.ms_per_token == b.ms_per_token


def test_plot(tmp_path):
    from archsim.llm import plot_tpot

    plot_tpot([run("int8"), run("aqlm-2x8")], tmp_path / "tpot.png")
    assert (tmp_path / "tpot.png").read_bytes()[:4] == b"\x89PNG"


def test_one_weight_format_for_every_linear():
    fmt = AdditiveVQFormat(k=256, d=8, n_codebooks=2)
    r = simulate_llm("llama-tiny", EDGE, prompt=8, generate=2, weights=fmt)
    assert r.weights == "aqlm:k=256" and r.hardware_only
    bits = 4 * sum(fmt.storage_bits(o * i) for o, i in linear_shapes(preset("llama-tiny")).values())
    assert r.weight_storage_bytes == -(-(bits + fmt.storage_bits(1024 * 256)) // 8)


def test_cli_run_writes_the_report(tmp_path, capsys):
    import argparse
    import json

    from archsim.llm import cli_run

    ns = dict(model="llama-tiny", arch=EDGE, prompt=8, generate=3, batch=1, weights="aqlm:k=16,d=8",
              kv="int4", set=[], out=str(tmp_path), no_plot=False)
    assert cli_run(argparse.Namespace(**ns)) == 0
    out = capsys.readouterr().out
    assert "TPOT" in out and "HARDWARE-ONLY" in out
    (run_dir,) = tmp_path.iterdir()
    rep = json.loads((run_dir / "llm_report.json").read_text())
    assert rep["weights"].startswith("aqlm:k=16") and rep["kv_format"] == "int4"
    assert (run_dir / "tpot.png").exists()
    with pytest.raises(ArchsimError) as e:
        cli_run(argparse.Namespace(**{**ns, "prompt": 0}))
    assert e.value.field == "prompt"


@pytest.mark.parametrize("name, per_block", [("llama-tiny", 9), ("opt-tiny", 8)])
def test_whole_meta_model_traces(name, per_block):
    from workloads.compile import trace

    m = build_llm(name, device="meta")
    layers = trace(m, torch.zeros(2, 16, dtype=torch.long, device="meta"))
    cfg = preset(name)
    assert len(layers) == cfg.n_layers * per_block + 1 and layers[-1].name == "head.lm_head"
    assert [L.op for L in layers].count("matmul") == 2 * cfg.n_layers
    assert layers[-1].M == 2  # the head projects the last token of each sequence


def test_blocks_in_different_formats_replay_per_distinct_block():
    cfg = preset("llama-tiny")
    w = {f"blocks.{i}.{n}": llm_weight_format("aqlm-2x8" if i in (0, 2) else "int4", o)
         for i in range(cfg.n_layers) for n, (o, _) in linear_shapes(cfg).items()}
    fast = simulate_llm("llama-tiny", EDGE, prompt=8, generate=4, weights=w, decode_samples=2)
    full = simulate_llm("llama-tiny", EDGE, prompt=8, generate=4, weights=w, mode="full")
    assert "2 distinct block(s)" in fast.notes[-1] and fast.weights == "compressed: aqlm,dense"
    for f in ("ttft_ms", "tpot_ms", "energy_per_token_uj"):
        assert getattr(fast, f) == pytest.approx(getattr(full, f), rel=0.01), f


def test_archsim_run_llm_flags(tmp_path, capsys):
    from archsim.cli import main

    assert main(["run", "--model", "llama-tiny", "--arch", EDGE, "--prompt", "8", "--generate", "3",
                 "--kv", "int4", "--out", str(tmp_path), "-q"]) == 0
    assert "TPOT" in capsys.readouterr().out
    assert main(["run", "--model", "llama-tiny", "--arch", EDGE, "--prompt", "0", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    # no --arch: an LLM preset runs on the LLM design, not the CNN default
    assert main(["run", "--model", "llama-tiny", "--prompt", "8", "--generate", "2", "--out", str(tmp_path / "d"),
                 "-q"]) == 0
    assert "on llm_edge" in capsys.readouterr().out
