"""archsim's PQA pipeline (archsim/hw/pq_lut.py) against the PQA authors'
own analytical model (abdelfattah-lab/PQA analytical_model/model.py), layer
by layer on the networks it ships (tests/data/pqa_model/: its outputs, the
script that ran it and the commit).

The model counts the steady state only: columns x max(proto lookup, LUT
lookup) x subspace groups. archsim adds the pipeline's fill and drain once
per layer (the tables fit on chip here: one pass). So every layer's compute
cycles must equal the model's plus exactly that fill and drain, worked out
here from the model's own per-group figures; and within 1% of the model
wherever the steady state dominates. The layers where it does not are
listed in EXPLAINED (and in the data README, with their numbers)."""
import json
from pathlib import Path

import pytest

from archsim.config import load_arch
from archsim.engine import run
from archsim.ir.formats import PQFormat
from archsim.ir.layer_spec import LayerSpec
from archsim.tiling import tile

REF = json.loads((Path(__file__).parent / "data" / "pqa_model" / "reference.json").read_text())
# tables on chip, as the model assumes: every LUT and prototype table fits its buffer
BIG = ["buffers.weight.capacity_bytes=8388608", "buffers.input.capacity_bytes=8388608",
       "buffers.output.capacity_bytes=8388608", "pe_array.proto_buffer_bytes=1048576"]
# (network, parallelism, layer): a steady state of 256-388 cycles, so the 4-5 cycles
# of fill and drain that the model leaves out are 1.0-1.6% of it (README.md)
EXPLAINED = {("ResNet-20", "model default 8/16/24/32", i) for i in range(12, 18)} | {
    ("kws", "model default 8/16/24/32", 2), ("kws", "model default 8/16/24/32", 3),
    ("EMNIST", "model default 8/16/24/32", 9)}


def _groups():
    g = {}
    for r in REF["layers"]:
        g.setdefault((r["network"], r["parallelism"]), []).append(r)
    return g


def _layer(r):
    K = r["input_shape"][1] * r["filter_shape"][1] * r["filter_shape"][2]
    L = LayerSpec(name=f"{r['network']}.{r['layer']}", op="linear", M=int(r["input_columns"]),
                  N=r["filter_shape"][0], K=K)
    L.fmt = PQFormat(Ls=r["Ls"], Np=r["Np"]).for_layer(L)
    return L


def test_reference_covers_resnet20_and_two_more_networks():
    assert {r["network"] for r in REF["layers"]} == {"ResNet-20", "kws", "EMNIST"}
    assert len(REF["commit"]) == 40
    assert all(r["input_columns"] == int(r["input_columns"]) for r in REF["layers"])


@pytest.mark.parametrize("net,par", sorted(_groups()))
def test_compute_cycles_equal_pqa_model_plus_one_fill_and_drain(net, par):
    rows = _groups()[(net, par)]
    r0 = rows[0]
    arch = load_arch("pqa", BIG + [f"pe_array.{k}={r0[k]}" for k in ("ls_vec", "np_vec", "ns_vec", "nout_vec")])
    st = run(tile([_layer(r) for r in rows], arch), arch)
    for r, ls in zip(rows, st.layers):
        model = r["Ncycles_calculation"]
        proto, lut = r["Ncycles_calculation_proto"], r["Ncycles_calculation_pq"]
        # fill: the first subspace group's encoding; drain: a cycle through the adder tree
        # and one through the write-out (after the last group's LUT reads where encoding is slowest)
        fill_drain = (lut if proto >= lut else proto) + 2
        assert ls.compute_cycles == model + fill_drain, (net, par, r["layer"])
        err = (ls.compute_cycles - model) / model
        if (net, par, r["layer"]) in EXPLAINED:
            assert err > 0.01  # the list names exactly the layers outside 1%
        else:
            assert err <= 0.01, (net, par, r["layer"], err)
