"""`archsim explore STUDY.yaml`: multi-objective search over architecture
fields and compression settings, with Optuna (NSGA-II for several
objectives, TPE for one, or an exhaustive grid), results in Optuna's RDB
storage (SQLite by default, any SQLAlchemy URL for a shared server).

How a study runs:
  * the workload is traced once; its layers travel to the workers without
    their weight tensors (the simulator needs only shapes and formats);
  * each distinct compression setting is compressed once (and, when accuracy
    is asked for, scored once on the real test set) and cached on disk under
    <out>/cache, keyed by a hash of model, method, parameters and seed; every
    hardware point with that setting reuses it. Hardware-only studies never
    import the data set;
  * hardware points run on an executor: a local process pool (default) or a
    Dask cluster (`--executor dask --scheduler tcp://HOST:PORT`); a point whose
    worker dies is retried;
  * resuming: trials that a killed run left RUNNING are evaluated again under
    their own trial numbers, so no point is lost or done twice.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable

from .errors import ArchsimError
from .study import OBJECTIVES, Study

_RETRIES = 3


# -- one hardware point (runs in a worker) -----------------------------------------

def evaluate_point(layers, arch_data: dict, arch_source: str, overrides: list[str], table) -> dict:
    """Simulate resolved inputs: layers (shapes + formats), the base
    architecture as a dict, overrides and the energy table object."""
    from .config import load_arch_dict
    from .energy import EnergyModel
    from .engine import run
    from .report import build_report
    from workloads.tiling import tile

    arch = load_arch_dict(arch_data, overrides, source=arch_source)
    em = EnergyModel(arch, table)
    rep = build_report(run(tile(layers, arch), arch), arch, em)
    t = rep.totals
    lat_ms, e_uj = t["latency_ms"], t["energy_total_pj"] / 1e6
    return {"latency_ms": lat_ms, "energy_uj": e_uj, "edp_uj_ms": lat_ms * e_uj,
            "area_mm2": rep.area_um2["total"] / 1e6, "utilisation": t["utilisation"],
            "dram_bytes": t["dram_read_bytes"] + t["dram_write_bytes"]}


# -- executors --------------------------------------------------------------------

class _Executor:
    """Runs points and retries the ones whose worker died (`died`)."""
    died: tuple = ()

    def _submit(self, fn, args):
        raise NotImplementedError

    def _reset(self):
        pass

    def map(self, fn, arg_lists: list[tuple]) -> list:
        """Results (or the exception each point raised), in order."""
        out: list = [None] * len(arg_lists)
        todo = list(range(len(arg_lists)))
        for _ in range(_RETRIES):
            futs = {i: self._submit(fn, arg_lists[i]) for i in todo}
            todo = []
            for i, f in futs.items():
                try:
                    out[i] = f.result()
                except self.died:
                    todo.append(i)
                except Exception as e:  # noqa: BLE001 — returned to the caller, per point
                    out[i] = e
            if not todo:
                return out
            self._reset()
        for i in todo:
            out[i] = RuntimeError(f"worker died {_RETRIES} times on this point")
        return out

    def close(self):
        pass


class LocalExecutor(_Executor):
    """A process pool over the machine's cores; rebuilt if a worker dies."""
    died = (BrokenProcessPool,)

    def __init__(self, workers: int | None = None):
        import os

        self.workers = workers or os.cpu_count() or 1
        self._pool = None

    def _submit(self, fn, args):
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers)
        return self._pool.submit(fn, *args)

    def _reset(self):
        self._pool.shutdown(cancel_futures=True)
        self._pool = None

    def close(self):
        if self._pool is not None:
            self._pool.shutdown()


class DaskExecutor(_Executor):
    """Any Dask cluster through the dask.distributed client."""

    def __init__(self, scheduler=None, client=None):
        from distributed import Client, KilledWorker

        self.died = (KilledWorker,)
        self.client = client or Client(scheduler)
        self._own = client is None
        self.workers = max(1, len(self.client.scheduler_info().get("workers", {})))

    def _submit(self, fn, args):
        return self.client.submit(fn, *args, pure=False)

    def close(self):
        if self._own:
            self.client.close()


# -- workload, compression settings and their cache ----------------------------------

def _model_and_input(study: Study):
    import torch

    from workloads import zoo

    w = study.workload
    if w.checkpoint == "fmnist_cnn":
        from workloads.zoo.fmnist_cnn import load_fmnist_cnn

        return load_fmnist_cnn(), torch.zeros(w.batch, 1, 28, 28)
    return zoo.build(w.model), zoo.default_input(w.model, batch=w.batch)


class Workload:
    """The traced layers and, on demand, compressed formats and accuracy."""

    def __init__(self, study: Study, cache_dir: Path):
        self.study = study
        self.cache_dir = cache_dir
        self._model = None
        w = study.workload
        if w.topology is not None:
            from workloads.scalesim_import import read_topology

            self.layers = read_topology(w.topology)
            self.model_id = "topology:" + hashlib.sha256(Path(w.topology).read_bytes()).hexdigest()[:16]
        else:
            from workloads.compile import trace

            self._model, x = _model_and_input(study)
            self.layers = trace(self._model, x)
            self.model_id = f"{w.checkpoint or w.model}:{_weights_hash(self._model)}"

    def setting(self, method: str, params: dict) -> dict:
        """{'formats': {layer: WeightFormat}, 'accuracy': float | None}, cached."""
        from workloads.formats import format_from_dict

        need_acc = self.study.needs_accuracy()
        w = self.study.workload
        key_data = {"model": self.model_id, "method": method, "params": params, "seed": self.study.seed,
                    "eval": [w.eval_images, w.calib_batches] if need_acc else None}
        key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:24]
        path = self.cache_dir / f"{key}.json"
        if path.exists():
            data = json.loads(path.read_text())
        else:
            data = self._compute(method, params, need_acc)
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            tmp.replace(path)  # atomic: a killed run never leaves half an entry
        return {"formats": {k: format_from_dict(v) for k, v in data["formats"].items()},
                "accuracy": data["accuracy"]}

    def _compute(self, method: str, params: dict, need_acc: bool) -> dict:
        if method != "none" and self._model is None:
            raise ArchsimError("compression needs a model, not a topology", file=self.study.path,
                               field="workload")
        formats, model = {}, self._model
        if method != "none":
            from workloads.compression import CompressionError, compress

            try:
                res = compress(self._model, method, calib=self._calib() if need_acc else None,
                               seed=self.study.seed, num_threads=1, **params)
            except CompressionError as e:
                raise ArchsimError(str(e), file=self.study.path, field=f"compression.params.{method}") from None
            formats = {k: f.describe() for k, f in res.formats.items()}
            model = res.model
        return {"formats": formats, "accuracy": self._accuracy(model) if need_acc else None}

    def _calib(self):
        import torch

        from workloads.datasets import iterate_batches, load_fashion_mnist, to_float_tensor

        x, y = load_fashion_mnist("train")
        xs = to_float_tensor(x[: 256 * self.study.workload.calib_batches])
        return list(iterate_batches(xs, torch.as_tensor(y[: len(xs)]).long(), 256))

    def _accuracy(self, model) -> float:
        """Top-1 (%) on the first eval_images test images, by the shared
        evaluator (workloads.evaluate, itself cached by weights + data)."""
        from workloads.evaluate import EvalSet, evaluate

        data = EvalSet.fashion_mnist("test", size=self.study.workload.eval_images)
        return 100 * evaluate(model, data, cache_dir=self.cache_dir / "eval")["top1"]

    def layers_for(self, formats: dict) -> list:
        """The layers with their formats and without weight tensors."""
        out = []
        for L in self.layers:
            L2 = copy.copy(L)
            L2.weight = None
            if L.name in formats:
                L2.fmt = formats[L.name]
            out.append(L2)
        return out


def _weights_hash(model) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


# -- the search -------------------------------------------------------------------

def _sampler(study: Study):
    import optuna

    kind = study.sampler
    if kind == "auto":
        kind = "nsga2" if len(study.objectives) > 1 else "tpe"
    if kind == "grid":
        space = {k: list(p.choices) for k, p in study.all_params().items()}
        return _GridSampler(space, seed=study.seed)
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=study.seed)
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=study.seed)
    return optuna.samplers.RandomSampler(seed=study.seed)


def _grid_sampler_class():
    import optuna

    class GridSampler(optuna.samplers.GridSampler):
        # Optuna's grid stops the study when the grid is exhausted, which only
        # works inside study.optimize(); explore() counts points itself.
        def after_trial(self, study, trial, state, values):
            pass

    return GridSampler


def _GridSampler(space, seed):
    return _grid_sampler_class()(space, seed=seed)


def grid_size(study: Study) -> int | None:
    if study.sampler != "grid":
        return None
    return math.prod(len(p.choices) for p in study.all_params().values())


def _suggest(trial, study: Study) -> dict:
    """Ask the trial for every dimension (define-by-run; a method's own
    parameters only when that method is drawn, except on a grid)."""
    params = {}
    grid = study.sampler == "grid"
    methods = set(study.compression.params) if study.compression else set()
    for key, p in study.all_params().items():
        head = key.split(".", 1)[0]
        if "." in key and head in methods and not grid and params.get("method") != head:
            continue  # another method's parameter
        if p.choices is not None:
            params[key] = trial.suggest_categorical(key, p.choices)
        else:
            lo, hi = p.range or p.log_range
            f = trial.suggest_int if p.integer else trial.suggest_float
            params[key] = f(key, int(lo) if p.integer else lo, int(hi) if p.integer else hi,
                            log=p.log_range is not None)
    return params


def _point(study: Study, params: dict) -> tuple[str, list[str], str, dict]:
    arch = params.get("arch", study.archs[0])
    overrides = [f"{k}={v}" for k, v in params.items() if k in study.space]
    method = params.get("method", "none")
    mparams = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith(f"{method}.")}
    return arch, overrides, method, mparams


def open_study(study: Study, out_dir: Path):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out_dir.mkdir(parents=True, exist_ok=True)
    storage = study.storage or f"sqlite:///{(out_dir / (study.name + '.db')).resolve()}"
    directions = [OBJECTIVES[o][1] for o in study.objectives]
    return optuna.create_study(study_name=study.name, storage=storage, directions=directions,
                               sampler=_sampler(study), load_if_exists=True)


def explore(study: Study, out_dir: str | Path = "archsim_out/explore", executor=None,
            on_point: Callable[[int, dict, dict | None, str | None], None] | None = None):
    """Run (or resume) the study until `trials` points are finished; returns
    the optuna.Study. `executor`: LocalExecutor (default) or DaskExecutor."""
    from optuna.trial import Trial, TrialState

    from .config import load_arch, resolve_arch_path
    from .energy import EnergyTable

    out_dir = Path(out_dir)
    ostudy = open_study(study, out_dir)
    wl = Workload(study, out_dir / "cache")
    bases = {}
    for name in study.archs:
        a = load_arch(name)
        bases[name] = (a.model_dump(), str(resolve_arch_path(name)), EnergyTable.for_arch(a))
    fp32 = None
    if study.needs_accuracy() and any(rel for *_, rel, _ in study.parsed_constraints()):
        fp32 = wl.setting("none", {})["accuracy"]
    target = study.trials if grid_size(study) is None else min(study.trials, grid_size(study))
    own_executor = executor is None
    executor = executor or LocalExecutor()
    try:
        # trials a killed run left RUNNING: evaluate them again, under their own numbers
        pending = [(Trial(ostudy, t._trial_id), t.params)
                   for t in ostudy.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
        while True:
            done = len(ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)))
            if not pending:
                n = min(getattr(executor, "workers", 2), target - done - len(pending))
                if n <= 0:
                    break
                for _ in range(n):
                    trial = ostudy.ask()
                    pending.append((trial, _suggest(trial, study)))
            batch, pending = pending, []
            _run_batch(study, ostudy, wl, bases, fp32, executor, batch, on_point)
    finally:
        if own_executor:
            executor.close()
    return ostudy


def _run_batch(study, ostudy, wl, bases, fp32, executor, batch, on_point):
    from optuna.trial import TrialState

    jobs, metas = [], []
    for trial, params in batch:
        arch, overrides, method, mparams = _point(study, params)
        meta = {"arch": arch, "overrides": overrides, "method": method, "params": mparams}
        try:
            setting = wl.setting(method, mparams)
        except ArchsimError as e:
            metas.append((trial, params, meta, None, e.one_line()))
            continue
        meta["accuracy"] = setting["accuracy"]
        data, source, table = bases[arch]
        jobs.append((wl.layers_for(setting["formats"]), data, source, overrides, table))
        metas.append((trial, params, meta, len(jobs) - 1, None))
    results = executor.map(evaluate_point, jobs) if jobs else []
    for trial, params, meta, j, err in metas:
        res = results[j] if j is not None else None
        if isinstance(res, Exception):
            if not isinstance(res, ArchsimError):
                raise res
            err, res = res.one_line(), None
        attrs = {**meta, "error": err}
        if res is not None:
            res = {**res, "accuracy": meta["accuracy"]}
            attrs["metrics"] = res
            attrs["constraints"] = _constraint_values(study, res, fp32)
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        if res is not None:
            for i, c in enumerate(attrs["constraints"]):
                trial.set_constraint(f"c{i}", c)  # <= 0 holds; the samplers prefer feasible points
        if res is None:
            ostudy.tell(trial, state=TrialState.FAIL)
        else:
            ostudy.tell(trial, [res[OBJECTIVES[o][0]] for o in study.objectives])
        if on_point:
            on_point(trial.number, params, res, err)


def _constraint_values(study: Study, metrics: dict, fp32: float | None) -> list[float]:
    """Optuna's convention: a value <= 0 means the constraint holds."""
    out = []
    for obj, op, rel, value in study.parsed_constraints():
        bound = (fp32 - value) if rel else value
        x = metrics[OBJECTIVES[obj][0]]
        out.append(x - bound if op == "<=" else bound - x)
    return out


# -- results ----------------------------------------------------------------------

def design_report(study: Study, out_dir: str | Path, number: int):
    """The full per-layer Report of one finished trial, simulated again from
    its recorded point (the compression comes from the cache)."""
    from .api import simulate
    from .config import load_arch

    ostudy = open_study(study, Path(out_dir))
    trials = {t.number: t for t in ostudy.get_trials(deepcopy=False)}
    if number not in trials or "arch" not in trials[number].user_attrs:
        raise ArchsimError(f"no finished trial #{number} in study {study.name}", field="--compare")
    a = trials[number].user_attrs
    wl = Workload(study, Path(out_dir) / "cache")
    setting = wl.setting(a["method"], a["params"])
    return simulate(wl.layers_for(setting["formats"]), load_arch(a["arch"], a["overrides"]))


def results_dataframe(ostudy):
    """One row per finished trial: number, state, parameters, metrics, error."""
    import pandas as pd
    from optuna.trial import TrialState

    rows = []
    for t in ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        row = {"trial": t.number, "state": t.state.name}
        row.update({f"param:{k}": v for k, v in t.params.items()})
        row.update(t.user_attrs.get("metrics") or {})
        row["feasible"] = all(c <= 0 for c in t.user_attrs.get("constraints", [0])) and t.state == TrialState.COMPLETE
        row["error"] = t.user_attrs.get("error")
        rows.append(row)
    return pd.DataFrame(rows)


def pareto_rows(df, objectives: list[str]):
    """The feasible, non-dominated rows for the study's objectives."""
    ok = df[df["feasible"]] if "feasible" in df else df
    keys = [(OBJECTIVES[o][0], 1 if OBJECTIVES[o][1] == "minimize" else -1) for o in objectives]
    vals = [[r[k] * s for k, s in keys] for _, r in ok.iterrows()]
    keep = [i for i, v in enumerate(vals)
            if not any(all(w[j] <= v[j] for j in range(len(v))) and w != v for w in vals)]
    return ok.iloc[keep]


__all__ = ["explore", "evaluate_point", "LocalExecutor", "DaskExecutor", "results_dataframe", "pareto_rows",
           "open_study", "grid_size"]
