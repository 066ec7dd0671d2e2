"""Tile-graph reuse: repeated layers replayed inside one tile() call, and
TileCache across architectures that map the workload the same way. Both
must give exactly the graph a fresh tile() builds."""
import copy
import pickle

import pytest

from archsim.config import load_arch
from archsim.engine import run
from archsim.hw.systolic import SystolicArray
from workloads import zoo
from workloads.compile import trace
from workloads.profile import ActProfile
from archsim.tiling import TileCache, tile

# a small output buffer: ResNet-20's partial sums overflow it, so the
# systolic mapper chooses a loop order per layer on the DRAM channel
ARCH = load_arch("sa32_ws", ["buffers.output.capacity_bytes=4096"])


@pytest.fixture(scope="module")
def layers():
    return trace(zoo.build("resnet20"), zoo.default_input("resnet20"))


def same_graph(a, b) -> bool:
    return (a.number_of_nodes() == b.number_of_nodes() and list(a.edges) == list(b.edges)
            and all(a.nodes[v] == b.nodes[v] for v in a) and a.graph == b.graph)


@pytest.mark.parametrize("overrides", [[], ["pe_array.dataflow=is"], ["pe_array.dataflow=os"],
                                       ["pe_array.psum_overflow=spill"]])
def test_replayed_layers_equal_the_nest_run_again(layers, monkeypatch, overrides):
    arch = ARCH.with_overrides(overrides)
    g = tile(layers, arch)
    shapes = [(L.M, L.N, L.K) for L in layers]
    assert len(set(shapes)) < len(shapes)  # ResNet-20 repeats layers: some are replayed
    monkeypatch.setattr(SystolicArray, "layers_independent", False)
    assert same_graph(g, tile(layers, arch))


def test_a_cache_hit_is_the_graph_tile_builds(layers):
    cache = TileCache()
    first = cache.tile(layers, ARCH)
    assert first.graph["dram_choices"]  # the mapper did choose on the channel
    # another bandwidth and clock, the same choices: the same graph, not tiled again
    other = ARCH.with_overrides(["dram.bandwidth_bytes_per_cycle=6.4", "clock_mhz=500"])
    assert cache.tile(layers, other) is first and (cache.hits, cache.misses) == (1, 1)
    assert same_graph(first, tile(layers, other))
    assert run(first, other).total_cycles == run(tile(layers, other), other).total_cycles


def test_a_changed_choice_or_mapping_field_misses(layers):
    cache = TileCache()
    first = cache.tile(layers, ARCH)
    # at 1000 B/cycle spilling partial sums becomes the cheaper order for some layers
    fast = ARCH.with_overrides(["dram.bandwidth_bytes_per_cycle=1000"])
    g = cache.tile(layers, fast)
    assert g is not first and same_graph(g, tile(layers, fast))
    assert [c for _, c in g.graph["dram_choices"]] != [c for _, c in first.graph["dram_choices"]]
    rows = ARCH.with_overrides(["pe_array.rows=16"])
    assert cache.tile(layers, rows) is not first
    assert cache.misses == 3 and len(cache._graphs) == 2  # the oldest was dropped


def test_equal_activation_profiles_hit_and_different_ones_miss(layers):
    # study workers unpickle their inputs: equal profiles arrive as new objects
    def with_profiles(bits):
        out = [copy.copy(L) for L in layers]
        for L in out:
            L.act_profile = ActProfile(act_bits=8, signed=False, max_abs=1.0, precision_bits=bits,
                                       mean_essential_bits=1.0, zero_fraction=0.0, reduction=L.K,
                                       n_vectors=1, lanes=((16, (1.0,), (2.0,)),))
        return out
    cache = TileCache()
    first = cache.tile(with_profiles(4), ARCH)
    assert cache.tile(pickle.loads(pickle.dumps(with_profiles(4))), ARCH) is first
    assert cache.tile(with_profiles(5), ARCH) is not first
    assert (cache.hits, cache.misses) == (1, 2)
