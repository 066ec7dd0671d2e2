"""LLM studies: a study file's workload may be an LLM preset ({llm: NAME,
prompt, generate, batch, kv, weights}, the flags of `archsim run --model`),
its compression weight and KV formats by name, its objectives TTFT, TPOT,
tokens/s, energy per token and area; run by `archsim explore` on the same
executors, storage and resume as CNN studies. And `archsim list` shows the
LLM presets and formats."""
import sqlite3

import pytest
import yaml

from archsim.cli import llm_param_count, main
from archsim.explore import LocalExecutor, explore, results_dataframe
from archsim.ir.errors import ArchsimError
from archsim.llm import simulate_llm
from archsim.study import load_study
from workloads.zoo.llm import PRESETS


def write_llm_study(tmp_path, workload=None, **kw):
    study = {"name": "tiny", "workload": {"llm": "llama-tiny", "prompt": 16, "generate": 4, "batch": 1, "kv": "int8"},
             "archs": ["llm_edge"],
             "space": {"dram.bandwidth_bytes_per_cycle": {"choices": [3.2, 25.6]}},
             "compression": {"weights": {"choices": ["int8", "aqlm-2x8"]}},
             "objectives": ["tpot", "energy_per_token"], "sampler": "grid", "trials": 10}
    study["workload"].update(workload or {})
    study.update(kw)
    path = tmp_path / "llm_study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def test_the_schema_takes_an_llm_workload_with_run_defaults(tmp_path):
    study = load_study(write_llm_study(tmp_path))
    assert study.is_llm and set(study.all_params()) == {"dram.bandwidth_bytes_per_cycle", "weights"}
    path = tmp_path / "defaults.yaml"
    path.write_text(yaml.safe_dump({"name": "d", "workload": {"llm": "llama2"}, "archs": ["llm_hbm"],
                                    "objectives": ["ttft", "tokens_per_s", "area"],
                                    "constraints": ["tpot <= 30", "energy_per_token <= 1e6"]}))
    w = load_study(path).workload
    # the defaults of `archsim run --model llama2-7b`
    assert [w.llm_value(k) for k in ("prompt", "generate", "kv", "weights")] == [512, 128, "int8", "int8"]


@pytest.mark.parametrize("edit,field", [
    ({"workload": {"llm": "llama9-7b"}}, "workload.llm"),
    ({"workload": {"prompts": 16}}, "workload.prompts"),
    ({"workload": {"kv": "int7"}}, "workload.kv"),
    ({"workload": {"kv": "fp16"}}, "workload.kv"),              # 16-bit KV on an 8-bit array
    ({"workload": {"prompt": 1020, "generate": 8}}, "workload.generate"),  # llama-tiny has 1024 positions
    ({"workload": {"generate": 1}}, "workload.generate"),        # no decode step to measure TPOT on
    ({"workload": {"finetune_steps": 10}}, "workload.finetune_steps"),
    ({"compression": {"weights": {"choices": ["int8", "int5"]}}}, "compression.weights"),
    ({"compression": {"weights": {"range": [2, 8]}}, "sampler": "random"}, "compression.weights"),
    ({"compression": {"method": {"choices": ["none", "vq"]}}}, "compression.method"),
    ({"compression": {"weights": {"choices": ["aqlm-2x8"]}}, "archs": ["sa32_ws"], "space": {}},
     "compression.weights"),                                     # no decoder for AQLM there
    ({"objectives": ["tpot", "latency"]}, "objectives.1"),
    ({"constraints": ["energy <= 5"]}, "constraints.0"),
    ({"objectives": ["accuracy"]}, "objectives.0"),
])
def test_a_bad_llm_study_is_one_line_naming_file_and_field(tmp_path, capsys, edit, field):
    workload = edit.pop("workload", None)
    path = write_llm_study(tmp_path, workload, **edit)
    with pytest.raises(ArchsimError) as e:
        load_study(path)
    assert e.value.file == str(path) and e.value.field == field, e.value.one_line()
    assert main(["explore", str(path), "--out", str(tmp_path / "o")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize("edit,field", [
    ({"objectives": ["latency", "tpot"]}, "objectives.1"),
    ({"constraints": ["ttft <= 5"]}, "constraints.0"),
    ({"workload": {"model": "resnet20", "prompt": 16}}, "workload.prompt"),
    ({"compression": {"weights": {"choices": ["int8"]}}}, "compression.weights"),
])
def test_llm_fields_on_a_cnn_study_are_one_line_errors(tmp_path, edit, field):
    study = {"name": "cnn", "workload": {"model": "resnet20"}, "archs": ["sa32_ws"],
             "objectives": ["latency", "energy"], **edit}
    path = tmp_path / "cnn.yaml"
    path.write_text(yaml.safe_dump(study))
    with pytest.raises(ArchsimError) as e:
        load_study(path)
    assert e.value.file == str(path) and e.value.field == field, e.value.one_line()


def test_a_tiny_llm_study_runs_through_explore_and_matches_simulate_llm(tmp_path, capsys):
    path = write_llm_study(tmp_path, constraints=["ttft <= 1e6"])
    out = tmp_path / "out"
    assert main(["explore", str(path), "--out", str(out), "--workers", "2", "--csv", str(tmp_path / "p.csv")]) == 0
    text = capsys.readouterr().out
    assert "4 points, 4 feasible; Pareto front" in text and "TPOT" in text
    assert (out / "tiny.db").exists()
    df = results_dataframe(explore(load_study(path), out, LocalExecutor(1)))  # finished: nothing more runs
    assert len(df) == 4 and (df["state"] == "COMPLETE").all()
    assert df[["param:dram.bandwidth_bytes_per_cycle", "param:weights"]].apply(tuple, axis=1).is_unique
    row = df[(df["param:weights"] == "aqlm-2x8") & (df["param:dram.bandwidth_bytes_per_cycle"] == 3.2)].iloc[0]
    r = simulate_llm("llama-tiny", "llm_edge", prompt=16, generate=4, weights="aqlm-2x8", kv_format="int8",
                     overrides=["dram.bandwidth_bytes_per_cycle=3.2"])
    assert row["tpot_ms"] == pytest.approx(r.tpot_ms) and row["ttft_ms"] == pytest.approx(r.ttft_ms)
    assert row["energy_per_token_uj"] == pytest.approx(r.energy_per_token_uj)
    assert row["kv"] == "int8" and row["area_mm2"] > 0
    by = df.set_index(["param:weights", "param:dram.bandwidth_bytes_per_cycle"])
    for weights in ("int8", "aqlm-2x8"):  # a wider DRAM channel never slows decode down
        assert by.loc[(weights, 25.6), "tpot_ms"] <= by.loc[(weights, 3.2), "tpot_ms"]
    # 2-bit AQLM moves fewer weight bytes per token than INT8
    assert by.loc[("aqlm-2x8", 3.2), "dram_bytes_per_token"] < by.loc[("int8", 3.2), "dram_bytes_per_token"]
    # the per-layer comparison is a CNN's: one line naming --compare
    assert main(["explore", str(path), "--out", str(out), "--compare", "0,1"]) == 2
    assert "--compare" in capsys.readouterr().err


def _states(db) -> dict:
    with sqlite3.connect(db) as c:
        return dict(c.execute("select state, count(*) from trials group by state").fetchall())


def test_an_interrupted_llm_study_resumes_with_no_point_lost_or_done_twice(tmp_path):
    path = write_llm_study(tmp_path)
    study, out = load_study(path), tmp_path / "out"
    done = []

    def stop_after_one(number, params, metrics, err):
        done.append(number)
        raise KeyboardInterrupt  # as `archsim explore` does on Ctrl-C

    ex = LocalExecutor(1)
    with pytest.raises(KeyboardInterrupt):
        explore(study, out, ex, on_point=stop_after_one)
    ex.close(interrupted=True)
    states = _states(out / "tiny.db")
    assert states.get("COMPLETE") == 1 and states.get("RUNNING", 0) >= 1  # points cut off
    df = results_dataframe(explore(study, out, LocalExecutor(2)))
    assert len(df) == 4 and (df["state"] == "COMPLETE").all()
    assert df[[c for c in df.columns if c.startswith("param:")]].apply(tuple, axis=1).is_unique
    assert _states(out / "tiny.db") == {"COMPLETE": 4}  # the cut-off ones ran under their own numbers


def test_an_llm_study_runs_on_a_dask_cluster(tmp_path):
    import distributed
    from archsim.explore import DaskExecutor

    path = write_llm_study(tmp_path, space={}, compression={"kv": {"choices": ["int8", "int4"]}})
    study = load_study(path)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        df = results_dataframe(explore(study, tmp_path / "dask", DaskExecutor(client=client)))
    assert len(df) == 2 and (df["state"] == "COMPLETE").all()
    serial = results_dataframe(explore(study, tmp_path / "serial", LocalExecutor(1)))
    cols = ["param:kv", "tpot_ms", "energy_per_token_uj"]
    assert df[cols].sort_values("param:kv").reset_index(drop=True).equals(
        serial[cols].sort_values("param:kv").reset_index(drop=True))


def test_archsim_list_shows_llm_presets_and_formats(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "architectures (the weight formats each runs):" in out  # the other sections stay
    llm = out[out.index("LLM presets"):]
    for name in PRESETS:
        assert name in llm
    assert "6.74 B" in llm and "32/8" in llm and "meta-llama/Llama-2-7b-hf" in llm
    assert "aqlm-2x8: aqlm, 2.01 bits/weight" in llm and "lcvq-res" in llm
    assert "KV-cache formats" in llm and "int4-head: 4-bit elements" in llm


@pytest.mark.parametrize("name", [n for n, c in PRESETS.items() if c.published_params])
def test_the_parameter_count_from_the_config_is_the_published_one(name):
    assert llm_param_count(PRESETS[name]) == PRESETS[name].published_params
