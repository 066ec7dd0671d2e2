"""The systolic family's mappers (archsim/mappers): a plan is pure geometry,
checked here by hand on small layers, and creates no node."""
from __future__ import annotations

import pytest

from archsim.config import load_arch
from archsim.ir.errors import ArchsimError
from archsim.hw import registry
from archsim.mappers.output_stationary import plan_output_stationary
from archsim.mappers.stationary import plan_stationary
from archsim.ir.layer_spec import LayerSpec
from archsim.tiling import LayerTiler, _Builder


def _tiler(layer, overrides=()):
    arch = load_arch("sa32_ws", list(overrides))
    pe = registry.create("pe_array", arch.pe_array.kind, arch.pe_array, arch)
    return pe, LayerTiler(_Builder(), arch, pe, layer, 0, None)


def test_ws_plan_folds_and_chunks():
    # K=100 over 32 rows -> 4 row folds; N=70 over 32 cols -> 3 column folds
    pe, t = _tiler(LayerSpec("fc", "linear", M=50, N=70, K=100))
    p = plan_stationary(pe, t, True, "spill")
    assert (p.nr, p.nc, p.span, p.S) == (4, 3, 32, 50)
    assert p.s_chunk == 50 and p.n_s == 1  # 50 streamed rows fit every buffer
    assert p.loop_order == "ws, partial sums on chip" and not p.spill_psums
    assert t.b.nodes == []  # a plan creates nothing


def test_ws_plan_spills_or_tiles_outputs_when_partial_sums_overflow():
    big = LayerSpec("fc", "linear", M=4096, N=32, K=64)  # 4096 x 32 x 4 B = 512 KiB of partial sums
    pe, t = _tiler(big)
    spill = plan_stationary(pe, t, True, "spill")
    tiled = plan_stationary(pe, t, True, "tile_outputs")
    assert spill.spill_psums and len(spill.blocks) == 1
    assert not tiled.spill_psums and len(tiled.blocks) > 1
    assert tiled.blocks[0][0] == 0 and tiled.blocks[-1][1] == tiled.n_s
    assert all(b1 - b0 <= tiled.blocks[0][1] for b0, b1 in tiled.blocks)


def test_os_plan_reduction_chunks_cover_k():
    pe, t = _tiler(LayerSpec("fc", "linear", M=70, N=40, K=1000), ["pe_array.dataflow=os"])
    p = plan_output_stationary(pe, t)
    assert (p.nt, p.nc) == (3, 2)
    assert sum(p.k_lens) == 1000


def test_a_tile_too_large_for_its_buffer_is_refused_by_the_plan():
    pe, t = _tiler(LayerSpec("fc", "linear", M=8, N=64, K=64), ["buffers.weight.capacity_bytes=512"])
    with pytest.raises(ArchsimError) as e:
        plan_stationary(pe, t, True, "spill")
    assert e.value.field == "buffers.weight.capacity_bytes"
