"""The golden cases: every PE kind, every weight format and the ws loop
orders, on the zoo's seeded ResNet-18 / ResNet-20 (batch 1). Their results
are recorded in golden.json, and tests/test_golden.py checks that a change
of the simulator reproduces them exactly; a change meant to move them
bumps archsim.COST_MODEL_VERSION and regenerates the file:

    python tests/data/golden/cases.py

The recorded results are those of commit 085a5c7, before issue 10's speed
work: that work changed no number.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))


def cases():
    """{name: (layers, arch, overrides)}, built from seeded weights."""
    from archsim.reproduce_pqa import _calib, _pq_layers
    from workloads import zoo
    from workloads.compile import trace
    from workloads.compression import compress
    from workloads.profile import attach_profiles, profile_activations

    def layers(name, method=None, **kw):
        model = zoo.build(name)
        formats = compress(model, method, num_threads=1, **kw).formats if method else None
        return trace(model, zoo.default_input(name), formats=formats)

    r18, r20 = layers("resnet18"), layers("resnet20")
    out = {f"resnet18/{a}": (r18, a, []) for a in ("sa32_ws", "sa32_os", "ews64")}
    out["resnet18/sa32_ws/spill"] = (r18, "sa32_ws", ["pe_array.psum_overflow=spill"])
    out["resnet18/sa32_ws/is"] = (r18, "sa32_ws", ["pe_array.dataflow=is"])
    out["resnet18/sa32_ws/small-buffers"] = (r18, "sa32_ws", ["buffers.input.capacity_bytes=8192",
                                                              "buffers.weight.capacity_bytes=8192",
                                                              "buffers.output.capacity_bytes=4096"])
    out["resnet20-vq/vq32_ws"] = (layers("resnet20", "vq", k=256, d=4), "vq32_ws", [])
    out["resnet20-mvq/mvq64"] = (layers("resnet20", "mvq", n=1, m=4, k=256, d=16), "mvq64", [])
    out["resnet20-ssvq/ssvq32_ws"] = (layers("resnet20", "ssvq", k=256, d=16, steps=0), "ssvq32_ws", [])
    # N:M weights on the N:M sparse array (a dense array refuses them: archsim.hw.compat)
    out["resnet20-nm/nm32_ws"] = (layers("resnet20", "nm", n=2, m=4), "sa32_ws", ["pe_array.kind=nm_systolic"])
    out["resnet20-swis/swis16_ws"] = (layers("resnet20", "swis", shared_bits=2, group_size=8), "swis16_ws", [])
    prof = attach_profiles(r20, profile_activations(zoo.build("resnet20"), zoo.default_input("resnet20", batch=8)))
    out["resnet20/stripes16"] = (prof, "stripes16", [])
    out["resnet20/pragmatic16"] = (prof, "pragmatic16", [])
    out["resnet20-pq/pqa"] = (_pq_layers(zoo.build("resnet20"), zoo.default_input("resnet20"),
                                         _calib("resnet20"), 9, 16, 8, 16), "pqa", [])
    return out


# Nodes per fingerprint chunk: a changed graph is named down to the first
# chunk (and layer) that moved, without recording every node.
CHUNK_NODES = 256


def _node_key(attrs: dict) -> str:
    return repr(sorted(attrs.items()))


def fingerprint(graph) -> dict:
    """Hashes of the ordered tile-graph nodes (every attribute) and their
    incoming edges, in chunks of CHUNK_NODES nodes. Node order is each
    queue's order, so equal fingerprints mean an equal simulation."""
    import hashlib

    n = graph.number_of_nodes()
    chunks, layer_of_chunk = [], []
    for c0 in range(0, n, CHUNK_NODES):
        h = hashlib.sha256()
        for v in range(c0, min(n, c0 + CHUNK_NODES)):
            h.update(_node_key(graph.nodes[v]).encode())
            h.update(repr(sorted(graph.pred[v])).encode())
        chunks.append(h.hexdigest()[:16])
        layer_of_chunk.append(graph.nodes[c0]["layer"])
    return {"nodes": n, "edges": graph.number_of_edges(), "chunk_nodes": CHUNK_NODES, "chunks": chunks,
            "chunk_first_layer": layer_of_chunk}


def _sum_dicts(rows, key) -> dict:
    out: dict = {}
    for row in rows:
        for k, v in row[key].items():
            out[k] = out.get(k, 0) + v
    return dict(sorted(out.items()))


def results(cases_: dict) -> dict:
    from archsim.api import simulate
    from archsim.config import load_arch
    from archsim.tiling import TileCache

    out = {}
    for name, (layers, arch_name, overrides) in cases_.items():
        arch = load_arch(arch_name, overrides)
        cache = TileCache()
        graph = cache.tile(layers, arch)
        r = simulate(layers, arch, tiles=cache)
        stats = r.layer_counters
        out[name] = {"total_cycles": r.totals["total_cycles"], "energy_total_pj": r.totals["energy_total_pj"],
                     "dram_bytes": r.totals["dram_read_bytes"] + r.totals["dram_write_bytes"],
                     "layer_cycles": [l["total_cycles"] for l in r.layers],
                     "layer_compute_cycles": [l["compute_cycles"] for l in r.layers],
                     "dram_read_by_buffer": _sum_dicts(stats, "dram_read_by_buffer"),
                     "dram_write_bytes": r.totals["dram_write_bytes"],
                     "sram_read_bytes": _sum_dicts(stats, "sram_read_bytes"),
                     "sram_write_bytes": _sum_dicts(stats, "sram_write_bytes"),
                     "actions": _sum_dicts(stats, "actions"),
                     "fingerprint": fingerprint(graph)}
    return out


if __name__ == "__main__":
    from archsim import COST_MODEL_VERSION

    data = {"cost_model_version": COST_MODEL_VERSION, "results": results(cases())}
    (HERE / "golden.json").write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {HERE / 'golden.json'} ({len(data['results'])} cases)")
