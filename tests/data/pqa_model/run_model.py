"""Run the PQA authors' analytical model (analytical_model/model.py of
github.com/abdelfattah-lab/PQA, unmodified) on the networks it ships
(analytical_model/networks.py) and write its per-layer compute cycles to
reference.json beside this script.

    git --git-dir=<mirror of abdelfattah-lab/PQA> archive HEAD analytical_model | tar -x -C /tmp/pqa
    python tests/data/pqa_model/run_model.py /tmp/pqa/analytical_model \
        $(git --git-dir=<mirror> rev-parse HEAD)

The model is imported from that directory and called as its own notebook
print_comparison_table.ipynb calls it (simulate_layer with a layer's shapes,
Np, Ls and the hardware's parallelism); nothing of it is copied here.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# networks whose tables fit on chip (the model's assumption); vgg-small and
# EfficientNet-B3 have LUTs of tens of MB per layer and are left out
NETWORKS = ("ResNet-20", "kws", "EMNIST")
# (np_vec, ls_vec, ns_vec, nout_vec): archsim's pqa.yaml, and the model's own defaults
PARALLELISM = {"pqa.yaml 16/4/16/16": (16, 4, 16, 16), "model default 8/16/24/32": (8, 16, 24, 32)}


def main(model_dir: str, commit: str) -> None:
    sys.path.insert(0, model_dir)
    import model  # noqa: E402  (the authors' file)
    from networks import networks  # noqa: E402

    rows = []
    for net in NETWORKS:
        for par, (np_v, ls_v, ns_v, nout_v) in PARALLELISM.items():
            for i, (inp, filt, stride, layer_params) in enumerate(networks[net]):
                r = model.simulate_layer(INPUT_SHAPE=inp, FILTER_SHAPE=filt, STRIDES=stride,
                                         NUM_PROTO_VEC=np_v, PROTO_LENGTH_VEC=ls_v, NUM_SUBSPACE_VEC=ns_v,
                                         NUM_OUT_VEC=nout_v, **layer_params)["PQ"]
                rows.append({"network": net, "parallelism": par, "layer": i, "input_shape": inp,
                             "filter_shape": filt, "stride": stride, "Np": layer_params["NUM_PROTO_LAYER"],
                             "Ls": layer_params["PROTO_LENGTH_LAYER"], "np_vec": np_v, "ls_vec": ls_v,
                             "ns_vec": ns_v, "nout_vec": nout_v,
                             "input_columns": inp[2] * inp[3] / (stride * stride),
                             "Ncycles_calculation_proto": r["Ncycles_calculation_proto"],
                             "Ncycles_calculation_pq": r["Ncycles_calculation_pq"],
                             "Ncycles_calculation": r["Ncycles_calculation"]})
    out = {"source": "github.com/abdelfattah-lab/PQA analytical_model/model.py, simulate_layer(...)['PQ']",
           "commit": commit, "layers": rows}
    (HERE / "reference.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {HERE / 'reference.json'} ({len(rows)} layers)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
