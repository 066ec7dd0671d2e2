"""LLM inference (issue 21): TTFT, TPOT, tokens/s, energy per token and the
DRAM traffic split of TinyLlama-1.1B and Llama-2-7B on the two LLM designs
(llm_edge: LPDDR4 x32, bandwidth-bound; llm_hbm: one HBM2 stack) for INT8,
INT4, 2-bit additive VQ (AQLM 2x8) and 2-bit large-codebook VQ (2^16 x 8),
512-token prompt, 128 generated tokens, batch 1, INT8 KV cache; the speed
and memory of the simulation itself; and the exactness of the fast mode
(replay + sampled context) against the full simulation on llama-tiny.

Targets (issue 21): TinyLlama-1.1B <= 10 s, Llama-2-7B <= 60 s, both < 2 GB
RSS. Each speed run is a fresh process (peak RSS is its own; the time
includes tracing but not the torch import). `wall s` is elapsed time on the
shared 2-core development machine, `cpu s` the process's own CPU time.

Usage: python benchmarks/bench_llm.py [--quick] [--out benchmarks]
  writes llm_results.json, llm_tpot_<model>_<arch>.png and
  llm_tpot_long_<model>_llm_edge.png (decode to the model's last position)
  under --out.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ("llm_edge", "llm_hbm")
FORMATS = ("int8", "int4", "aqlm-2x8", "lcvq")
MODELS = ("tinyllama-1.1b", "llama2-7b")

SPEED_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
import torch  # imported before the clock starts
from archsim.llm import simulate_llm
t0, c0 = time.perf_counter(), time.process_time()
r = simulate_llm({model!r}, {root!r} + "/arch_configs/{arch}.yaml", prompt=512, generate=128,
                 weights={weights!r}, kv_format="int8")
print(json.dumps(dict(model={model!r}, arch={arch!r}, weights={weights!r}, wall_s=time.perf_counter() - t0,
                      cpu_s=time.process_time() - c0,
                      peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
"""


def speed(model: str, arch: str, weights: str) -> dict:
    child = SPEED_CHILD.format(root=str(ROOT), model=model, arch=arch, weights=weights)
    out = subprocess.run([sys.executable, "-c", child], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks"))
    ap.add_argument("--quick", action="store_true", help="TinyLlama only")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from archsim.llm import plot_tpot, simulate_llm

    out = Path(args.out)
    models = MODELS[:1] if args.quick else MODELS
    results = {"speed": [], "runs": [], "exactness": {}}

    for model in models:
        for arch in ARCHS:
            s = speed(model, arch, "int8")
            results["speed"].append(s)
            print(f"speed {model:15s} {s['arch']} {s['weights']}: {s['wall_s']:.1f} s wall, {s['cpu_s']:.1f} s cpu, "
                  f"{s['peak_rss_mb']:.0f} MB peak RSS")

    print(f"{'model':15s} {'arch':9s} {'weights':9s} {'GB stored':>9s} {'TTFT ms':>9s} {'TPOT ms':>9s} "
          f"{'tok/s':>7s} {'mJ/tok':>7s} {'W MB/tok':>9s} {'CB MB/tok':>9s} {'KV MB/tok':>9s} {'act MB/tok':>10s} "
          f"{'CB load ms':>10s} {'PE wait ms':>10s} {'KV layers on chip':>17s}")
    for model in models:
        for arch in ARCHS:
            reports = []
            for w in FORMATS:
                r = simulate_llm(model, ROOT / "arch_configs" / f"{arch}.yaml", prompt=512, generate=128,
                                 weights=w, kv_format="int8")
                reports.append(r)
                b = r.dram_bytes_per_token
                row = dict(r.headline(), weight_storage_gb=r.weight_storage_bytes / 1e9, ttft_ms=r.ttft_ms,
                           sim_wall_s=r.sim_wall_s, sampled_context=r.sampled_context,
                           prefill_energy_uj=r.prefill_energy_uj, prefill_dram_bytes=r.prefill_dram_bytes,
                           stall_ms_per_token=r.stall_ms_per_token,
                           kv_layers_on_chip=(r.prefill_kv_layers_on_chip, r.kv_layers_on_chip[0], r.kv_layers_on_chip[-1]))
                results["runs"].append(row)
                print(f"{model:15s} {arch:9s} {w:9s} {r.weight_storage_bytes / 1e9:9.3f} {r.ttft_ms:9.1f} "
                      f"{r.tpot_ms:9.2f} {r.tokens_per_s:7.2f} {r.energy_per_token_uj / 1e3:7.1f} "
                      f"{b['weights'] / 1e6:9.1f} {b['codebook'] / 1e6:9.1f} {b['kv'] / 1e6:9.2f} "
                      f"{b['activations'] / 1e6:10.3f} {r.stall_ms_per_token['codebook_load']:10.2f} "
                      f"{r.stall_ms_per_token['pe_waiting']:10.2f} "
                      f"{r.prefill_kv_layers_on_chip:g} / {r.kv_layers_on_chip[0]:g} / {r.kv_layers_on_chip[-1]:g}")
            plot_tpot(reports, out / f"llm_tpot_{model}_{arch}.png")

    # long context on the bandwidth-bound design: a 128-token prompt, then decode to the model's
    # last position; time per token grows as the caches leave the chip
    from workloads.zoo.llm import preset

    results["long_context"] = []
    for model in models:
        gen = preset(model).max_pos - 128
        reports = []
        for w in FORMATS:
            r = simulate_llm(model, ROOT / "arch_configs" / "llm_edge.yaml", prompt=128, generate=gen, weights=w,
                             kv_format="int8", decode_samples=9)
            reports.append(r)
            row = dict(model=model, weights=w, generate=gen, first_ms=r.ms_per_token[0], last_ms=r.ms_per_token[-1],
                       tpot_ms=r.tpot_ms, kv_mb_per_token=r.dram_bytes_per_token["kv"] / 1e6,
                       kv_layers_on_chip=(r.kv_layers_on_chip[0], r.kv_layers_on_chip[-1]), sim_wall_s=r.sim_wall_s)
            results["long_context"].append(row)
            print(f"long context {model} llm_edge {w:9s} 128 + {gen}: first step {row['first_ms']:.2f} ms, last "
                  f"{row['last_ms']:.2f} ms, mean {r.tpot_ms:.2f} ms, KV {row['kv_mb_per_token']:.1f} MB/token, "
                  f"KV layers on chip {row['kv_layers_on_chip'][0]:g} -> {row['kv_layers_on_chip'][1]:g} "
                  f"({r.sim_wall_s:.1f} s)")
        plot_tpot(reports, out / f"llm_tpot_long_{model}_llm_edge.png",
                  title=f"{model} on llm_edge, 128-token prompt")

    # a 2^16-entry codebook in a smaller buffer: cached (archsim/hw/codebook.py)
    results["codebook_overflow"] = []
    for entries in (65536, 16384, 4096):
        r = simulate_llm(models[0], ROOT / "arch_configs" / "llm_edge.yaml", prompt=512, generate=128, weights="lcvq",
                         overrides=[f"codebook.entries={entries}", "codebook.overflow=cache"])
        row = dict(entries=entries, tpot_ms=r.tpot_ms, codebook_bytes_per_token=r.dram_bytes_per_token["codebook"],
                   stall_ms_per_token=r.stall_ms_per_token)
        results["codebook_overflow"].append(row)
        print(f"codebook overflow {models[0]} lcvq llm_edge entries {entries:6d} (cache): TPOT {r.tpot_ms:.2f} ms, "
              f"codebook {row['codebook_bytes_per_token'] / 1e6:.1f} MB/token, codebook loads "
              f"{r.stall_ms_per_token['codebook_load']:.2f} ms/token")

    # exactness: the whole model simulated every step vs the fast mode, with the caches on chip and
    # with an 80 kB buffer (40 kB for the caches) they leave one layer at a time
    for case, over in (("caches on chip", []), ("caches leave the chip", ["memory.levels.0.capacity_bytes=80000"])):
        kw = dict(prompt=64, generate=64, overrides=over)
        fast = simulate_llm("llama-tiny", ROOT / "arch_configs" / "llm_edge.yaml", **kw)
        full = simulate_llm("llama-tiny", ROOT / "arch_configs" / "llm_edge.yaml", mode="full", **kw)
        ex = {f: (getattr(fast, f), getattr(full, f), getattr(fast, f) / getattr(full, f) - 1)
              for f in ("ttft_ms", "tpot_ms", "energy_per_token_uj")}
        ex["sim_wall_s"] = (fast.sim_wall_s, full.sim_wall_s)
        ex["sampled_context"] = fast.sampled_context
        ex["kv_layers_on_chip"] = (fast.kv_layers_on_chip[0], fast.kv_layers_on_chip[-1])
        results["exactness"][case] = ex
        for f in ("ttft_ms", "tpot_ms", "energy_per_token_uj"):
            print(f"exactness llama-tiny ({case}) {f}: fast {ex[f][0]:.4f} full {ex[f][1]:.4f} ({100 * ex[f][2]:+.3f}%)")
    (out / "llm_results.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
