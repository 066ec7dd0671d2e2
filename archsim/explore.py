"""`archsim explore STUDY.yaml`: multi-objective search over architecture
fields and compression settings, with Optuna (NSGA-II for several
objectives, TPE for one, or an exhaustive grid), results in Optuna's RDB
storage (SQLite by default, any SQLAlchemy URL for a shared server).

How a study runs:
  * the workload is traced once; its layers travel to the workers without
    their weight tensors (the simulator needs only shapes and formats);
  * each distinct compression setting is compressed once (and, when accuracy
    is asked for, fine-tuned and scored once on the real test set) and cached
    on disk under <out>/cache, keyed by a hash of model, method, parameters
    and seed; every hardware point with that setting reuses it. On the local
    pool the settings run on the workers, beside other points; with Dask the
    client computes them (its workers need not have the data set).
    Hardware-only studies never import the data set;
  * hardware points run on an executor: a local process pool (default) or a
    Dask cluster (`--executor dask --scheduler tcp://HOST:PORT`); a point whose
    worker dies is retried;
  * resuming: trials that a killed run left RUNNING are evaluated again under
    their own trial numbers, so no point is lost or done twice;
  * an LLM study (workload.llm) runs archsim.llm.simulate_llm per point, on
    the same executors, storage and resume: hardware only, its weight and KV
    formats built from their names (nothing is traced, compressed or cached),
    one point a job.
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

from .ir.errors import ArchsimError
from .study import OBJECTIVE_LABELS, OBJECTIVES, Study
from archsim.tiling import NOT_MAPPING

_RETRIES = 3


# -- one hardware point (runs in a worker) -----------------------------------------

_TILES = None  # this worker process's TileCache


def evaluate_point(layers, arch_data: dict, arch_source: str, overrides: list[str], table) -> dict:
    """Simulate resolved inputs: layers (shapes + formats), the base
    architecture as a dict, overrides and the energy table object. The tile
    graph comes from the worker's TileCache: points that map the workload
    the same way (explore sends them together) tile it once."""
    from .config import load_arch_dict
    from .energy import EnergyModel
    from .engine import run
    from .report import build_report
    from archsim.tiling import TileCache

    global _TILES
    if _TILES is None:
        _TILES = TileCache()
    arch = load_arch_dict(arch_data, overrides, source=arch_source)
    em = EnergyModel(arch, table)
    return build_report(run(_TILES.tile(layers, arch), arch), arch, em).headline()


def _each_point(evaluate, what, arch_data: dict, arch_source: str, overrides_list: list, table) -> list:
    """evaluate(what, ...) for each point's overrides: its metrics, or the
    ArchsimError it raised (a bad point does not fail its neighbours)."""
    out = []
    for overrides in overrides_list:
        try:
            out.append(evaluate(what, arch_data, arch_source, overrides, table))
        except ArchsimError as e:
            out.append(e)
    return out


def evaluate_points(layers, arch_data: dict, arch_source: str, overrides_list: list, table) -> list:
    """One job: several points on the same layers and base architecture."""
    return _each_point(evaluate_point, layers, arch_data, arch_source, overrides_list, table)


LLM_METRICS = ("ttft_ms", "tpot_ms", "tokens_per_s", "energy_per_token_uj", "prefill_energy_uj")


def evaluate_llm_point(llm: dict, arch_data: dict, arch_source: str, overrides: list[str], table) -> dict:
    """One LLM point: `llm` is simulate_llm's model, prompt, generate, batch,
    weights and kv_format. Its metrics: TTFT, TPOT, tokens/s, energy per
    token and of the prefill, the area of the architecture, DRAM bytes per
    decoded token and the weights' storage."""
    from .config import load_arch_dict
    from .energy import EnergyModel
    from .llm import simulate_llm

    arch = load_arch_dict(arch_data, overrides, source=arch_source)
    r = simulate_llm(llm["model"], arch, prompt=llm["prompt"], generate=llm["generate"], batch=llm["batch"],
                     weights=llm["weights"], kv_format=llm["kv_format"])
    out = {k: getattr(r, k) for k in LLM_METRICS}
    out["area_mm2"] = EnergyModel(arch, table).area_um2()["total"] / 1e6
    # codebook bytes are a part of the weights' bytes
    out["dram_bytes_per_token"] = sum(v for k, v in r.dram_bytes_per_token.items() if k != "codebook")
    out["weight_storage_bytes"] = r.weight_storage_bytes
    return out


def evaluate_llm_points(llm: dict, arch_data: dict, arch_source: str, overrides_list: list, table) -> list:
    """As evaluate_points, for LLM points of one weight and KV format."""
    return _each_point(evaluate_llm_point, llm, arch_data, arch_source, overrides_list, table)


_WORKLOAD = None  # this worker process's Workload: (study and cache folder, Workload)


def compute_setting(study: Study, cache_dir: str, method: str, params: dict) -> dict:
    """One compression setting in a local worker (the client caches what it
    returns)."""
    global _WORKLOAD
    ident = (study.model_dump_json(), cache_dir)
    if _WORKLOAD is None or _WORKLOAD[0] != ident:
        _WORKLOAD = (ident, Workload(study, Path(cache_dir)))
    return _WORKLOAD[1].compute(method, params)


# -- executors --------------------------------------------------------------------

class _Executor:
    """Runs jobs; `died` are the errors of a job whose worker died (the job
    is then submitted again, up to _RETRIES times). `shares_files`: the
    workers see the client's files and data set, so compression settings
    run on them too; otherwise the client computes them."""
    died: tuple = ()
    workers = 1
    shares_files = False

    def submit(self, fn, args):
        raise NotImplementedError

    def wait_first(self, futures) -> list:
        """The futures of `futures` that are done, after waiting for one."""
        raise NotImplementedError

    def close(self, interrupted: bool = False):
        pass


def _init_worker(parent: int):
    """A pool worker: one torch thread (the workers share the cores, and a
    forked child must not enter the OpenMP pool the parent started: it would
    wait forever for threads that were not forked), and it ends when the
    study process dies, kill -9 included, instead of waiting on the job
    queue forever."""
    import os
    import signal
    import sys
    import threading
    import time

    # Ctrl-C is the study process's to handle (it says what was saved and
    # ends the pool); a worker that got it too would print a traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


class LocalExecutor(_Executor):
    """A process pool over the machine's cores; rebuilt if a worker dies."""
    died = (BrokenProcessPool,)
    shares_files = True

    def __init__(self, workers: int | None = None):
        import os

        self.workers = workers or os.cpu_count() or 1
        self._pool = None

    def _new_pool(self):
        import os

        return ProcessPoolExecutor(self.workers, initializer=_init_worker, initargs=(os.getpid(),))

    def submit(self, fn, args):
        if self._pool is None:
            self._pool = self._new_pool()
        try:
            return self._pool.submit(fn, *args)
        except BrokenProcessPool:  # a worker died: the pool is gone, start another
            self._pool.shutdown(cancel_futures=True)
            self._pool = self._new_pool()
            return self._pool.submit(fn, *args)

    def wait_first(self, futures) -> list:
        from concurrent.futures import FIRST_COMPLETED, wait

        return list(wait(futures, return_when=FIRST_COMPLETED).done)

    def close(self, interrupted: bool = False):
        """Jobs still queued are dropped, not run (their trials stay RUNNING in
        the store and run again on resume). After Ctrl-C the running ones are
        cut off too, instead of being waited for."""
        if self._pool is None:
            return
        procs = list((getattr(self._pool, "_processes", None) or {}).values()) if interrupted else []
        self._pool.shutdown(wait=not interrupted, cancel_futures=True)
        for proc in procs:
            proc.terminate()
        self._pool = None


class DaskExecutor(_Executor):
    """Any Dask cluster through the dask.distributed client."""

    def __init__(self, scheduler=None, client=None):
        from distributed import Client, KilledWorker

        self.died = (KilledWorker,)
        self.client = client or Client(scheduler)
        self._own = client is None
        self.workers = max(1, len(self.client.scheduler_info().get("workers", {})))

    def submit(self, fn, args):
        return self.client.submit(fn, *args, pure=False)

    def wait_first(self, futures) -> list:
        from distributed import wait

        return list(wait(list(futures), return_when="FIRST_COMPLETED").done)

    def close(self, interrupted: bool = False):
        if self._own:
            self.client.close()


# -- workload, compression settings and their cache ----------------------------------

def check_study_size(study: Study) -> None:
    """Refuse, before any work, a study whose batch cannot be traced in this
    machine's memory or simulated in reasonable time on its smallest array
    (archsim.sizing), naming workload.batch."""
    if study.workload.batch == 1 or study.workload.topology is not None or study.workload.onnx is not None \
            or study.is_llm:
        return
    from .config import load_arch
    from .sizing import check_batch
    from workloads.compile import trace

    w = study.workload
    model, x = _model_and_input(study.model_copy(update={"workload": w.model_copy(update={"batch": 1})}))
    smallest = []
    for name in study.archs:
        small = [f"{k}={min(_numbers(p))}" for k, p in study.space.items()
                 if k in ("pe_array.rows", "pe_array.cols") and _numbers(p)]
        smallest.append(load_arch(name, small))
    check_batch(trace(model, x), w.batch, smallest, study.path, "workload.batch")


def _numbers(p) -> list:
    vals = list(p.choices) if p.choices is not None else list(p.range or p.log_range)
    return [int(v) for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]


def _model_and_input(study: Study):
    import torch

    from workloads import zoo

    w = study.workload
    if w.checkpoint is not None:
        from workloads.zoo.fmnist_models import FMNIST_MODELS, load_fmnist_model

        size = FMNIST_MODELS[w.checkpoint][1]
        return load_fmnist_model(w.checkpoint), torch.zeros(w.batch, 1, size, size)
    return zoo.build(w.model), zoo.default_input(w.model, batch=w.batch)


class Workload:
    """The traced layers and, on demand, compressed formats and accuracy."""

    def __init__(self, study: Study, cache_dir: Path):
        self.study = study
        self.cache_dir = cache_dir
        self._model = None
        w = study.workload
        if w.llm is not None:  # simulate_llm builds its layers per point
            from workloads.zoo.llm import preset, step_workload

            # one block traced here: the tracer's imports (seconds) happen once,
            # not again in each local pool worker (forked from this process)
            step_workload(preset(w.llm), 1, 1, n_blocks=1)
            self.layers = None
            self.model_id = f"llm:{w.llm}"
        elif w.topology is not None:
            from workloads.scalesim_import import read_topology

            self.layers = read_topology(w.topology)
            self.model_id = "topology:" + hashlib.sha256(Path(w.topology).read_bytes()).hexdigest()[:16]
        elif w.onnx is not None:
            from workloads.onnx_import import load_onnx

            self.layers = load_onnx(w.onnx, batch=w.batch)
            self.model_id = "onnx:" + hashlib.sha256(Path(w.onnx).read_bytes()).hexdigest()[:16]
        else:
            from workloads.compile import trace

            self._model, x = _model_and_input(study)
            self.layers = trace(self._model, x)
            self.model_id = f"{w.checkpoint or w.model}:{_weights_hash(self._model)}"

    def setting(self, method: str, params: dict) -> dict:
        """{'formats': {layer: WeightFormat}, 'accuracy': float | None}, cached."""
        data = self.cached(method, params)
        if data is None:
            data = self.compute(method, params)
            self.save(method, params, data)
        return self.resolve(data)

    def _path(self, method: str, params: dict) -> Path:
        w = self.study.workload
        need_acc = self.study.needs_accuracy()
        key_data = {"model": self.model_id, "method": method, "params": params, "seed": self.study.seed,
                    "eval": [w.eval_images, w.calib_batches] if need_acc else None}
        if need_acc and w.finetune_steps and method != "none":
            key_data["finetune_steps"] = w.finetune_steps  # absent when 0: older caches stay valid
        return self.cache_dir / (hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:24]
                                 + ".json")

    def cached(self, method: str, params: dict) -> dict | None:
        """The setting's cached data (formats described, accuracy), or None."""
        path = self._path(method, params)
        return json.loads(path.read_text()) if path.exists() else None

    def save(self, method: str, params: dict, data: dict) -> None:
        path = self._path(method, params)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)  # atomic: a killed run never leaves half an entry

    @staticmethod
    def resolve(data: dict) -> dict:
        from archsim.ir.formats import format_from_dict

        return {"formats": {k: format_from_dict(v) for k, v in data["formats"].items()},
                "accuracy": data["accuracy"]}

    def compute(self, method: str, params: dict) -> dict:
        """Compress (fine-tune) and score one setting: {'formats': {layer:
        described format}, 'accuracy'}. Runs on the client, or in a local
        worker (`compute_setting`), on one torch thread either way: the same
        numbers wherever it runs, and the pool's processes share the cores."""
        import torch

        prev = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._compute(method, params)
        finally:
            torch.set_num_threads(prev)

    def _compute(self, method: str, params: dict) -> dict:
        need_acc = self.study.needs_accuracy()
        if method != "none" and self._model is None:
            raise ArchsimError("compression needs a torch model, not a topology or an ONNX file",
                               file=self.study.path, field="workload")
        formats, model = {}, self._model
        if method != "none":
            from workloads.compression import CompressionError, compress

            try:
                res = compress(self._model, method, calib=self._calib() if need_acc else None,
                               seed=self.study.seed, num_threads=1, **params)
            except CompressionError as e:
                raise ArchsimError(str(e), file=self.study.path, field=f"compression.params.{method}") from None
            steps = self.study.workload.finetune_steps
            if need_acc and steps:
                from workloads.compression import finetune_result

                res = finetune_result(res, self._model, self._training_batches(steps), steps,
                                      seed=self.study.seed, progress=False)
            formats = {k: f.describe() for k, f in res.formats.items()}
            model = res.model
        return {"formats": formats, "accuracy": self._accuracy(model) if need_acc else None}

    def _calib(self):
        import torch

        from workloads.datasets import iterate_batches, load_fashion_mnist, to_float_tensor
        from workloads.zoo.fmnist_models import prepare_images

        x, y = load_fashion_mnist("train")
        w = self.study.workload
        xs = prepare_images(w.checkpoint, to_float_tensor(x[: 256 * w.calib_batches]))
        return list(iterate_batches(xs, torch.as_tensor(y[: len(xs)]).long(), 256))

    def _training_batches(self, steps: int) -> list:
        """The fine-tuning batches: the same for every setting (the table
        script's recipe: one seeded shuffle of the training set, 128 a batch)."""
        from workloads.datasets import load_fashion_mnist, training_batches
        from workloads.zoo.fmnist_models import prepare_images

        x, y = load_fashion_mnist("train", as_tensor=True, normalize=True)
        name = self.study.workload.checkpoint
        return training_batches(x, y, 128, steps, self.study.seed, transform=lambda xb: prepare_images(name, xb))

    def _accuracy(self, model) -> float:
        """Top-1 (%) on the first eval_images test images, by the shared
        evaluator (workloads.evaluate, itself cached by weights + data)."""
        from workloads.evaluate import EvalSet, evaluate
        from workloads.zoo.fmnist_models import FMNIST_MODELS

        w = self.study.workload
        data = EvalSet.fashion_mnist("test", size=w.eval_images, input_size=FMNIST_MODELS[w.checkpoint][1])
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
        # a traced model keeps its DAG (the non-GEMM operators a vector unit runs)
        return self.layers.with_layers(out) if hasattr(self.layers, "with_layers") else out


def _weights_hash(model) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


# -- the search -------------------------------------------------------------------

def _sampler_kind(study: Study) -> str:
    if study.sampler == "auto":
        return "nsga2" if len(study.objectives) > 1 else "tpe"
    return study.sampler


def _sampler(study: Study):
    import optuna

    kind = _sampler_kind(study)
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
        def __init__(self, space, seed):
            super().__init__(space, seed=seed)
            # Optuna >= 5 runs its (seeded, shuffled) grid in order, trial n
            # on grid point n. Keep the shuffle, but make the points that
            # differ only in fields no mapper reads (DRAM, clock, energy)
            # consecutive: explore sends them to one worker, which tiles once.
            names = getattr(self, "_param_names", None)
            if names is not None and hasattr(self, "_all_grids"):
                keep = [i for i, n in enumerate(names) if n.split(".", 1)[0] not in NOT_MAPPING]
                groups: dict = {}
                for g in self._all_grids:
                    groups.setdefault(tuple(g[i] for i in keep), []).append(g)
                self._all_grids = [g for grp in groups.values() for g in grp]

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


def _point(study: Study, params: dict) -> dict:
    """A trial's point: {'arch', 'overrides', 'method', 'params' (the method's)};
    an LLM study's: {'arch', 'overrides', 'weights', 'kv'}."""
    arch = params.get("arch", study.archs[0])
    overrides = [f"{k}={v}" for k, v in params.items() if k in study.space]
    if study.is_llm:
        w = study.workload
        return {"arch": arch, "overrides": overrides, "weights": params.get("weights", w.llm_value("weights")),
                "kv": params.get("kv", w.llm_value("kv"))}
    method = params.get("method", "none")
    mparams = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith(f"{method}.")}
    return {"arch": arch, "overrides": overrides, "method": method, "params": mparams}


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
    runner = _Runner(study, ostudy, wl, bases, fp32, executor, on_point)
    # TPE learns from every result: one point per worker at a time. The other
    # samplers may run ahead, which keeps every worker busy and lets points
    # that share a mapping travel (and be tiled) together.
    ahead = 1 if _sampler_kind(study) == "tpe" else _AHEAD
    try:
        # trials a killed run left RUNNING: evaluate them again, under their own numbers
        resumed = [(Trial(ostudy, t._trial_id), t.params)
                   for t in ostudy.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
        room = target - len(resumed) - len(ostudy.get_trials(deepcopy=False,
                                                             states=(TrialState.COMPLETE, TrialState.FAIL)))
        runner.submit(resumed)
        while True:
            while room > 0 and runner.jobs_in_flight() < ahead * executor.workers:
                n = min(room, ahead * executor.workers)
                asked = []
                for _ in range(n):
                    trial = ostudy.ask()
                    asked.append((trial, _suggest(trial, study)))
                room -= n
                runner.submit(asked)
            if not runner.jobs_in_flight():
                break
            runner.collect()
    finally:
        if own_executor:
            executor.close()
    return ostudy


_AHEAD = 4  # jobs in flight per worker, and points asked per worker at a time


class _Runner:
    """Trials -> jobs on the executor -> results told to the Optuna study.
    A job is the points of one setting, base architecture and mapping (they
    differ only in fields the mapper does not read, e.g. DRAM bandwidth), so
    its worker tiles the workload once for all of them."""

    def __init__(self, study, ostudy, wl, bases, fp32, executor, on_point):
        self.study, self.ostudy, self.wl, self.bases, self.fp32 = study, ostudy, wl, bases, fp32
        self.executor, self.on_point = executor, on_point
        self.in_flight: dict = {}  # future -> (job args, [(trial, params, meta)], tries)
        # compression settings computed on the workers: future -> (method, params, tries),
        # and the trials waiting for each setting
        self.settings: dict = {}
        self.waiting: dict = {}  # (method, params json) -> [(trial, params)]

    def jobs_in_flight(self) -> int:
        # a trial waiting for its setting counts as a job: the sampler asks
        # no further ahead than when every setting is cached
        return len(self.in_flight) + sum(len(w) for w in self.waiting.values())

    def _wait_for_setting(self, method: str, mparams: dict, trial, params):
        """An uncached setting, with workers that share the client's files: one
        of them computes it while other points run, and the trial waits."""
        key = (method, json.dumps(mparams, sort_keys=True))
        if key not in self.waiting:
            self.waiting[key] = []
            self._submit_setting(method, mparams, 0)
        self.waiting[key].append((trial, params))

    def _submit_setting(self, method, mparams, tries):
        fut = self.executor.submit(compute_setting, (self.study, str(self.wl.cache_dir), method, mparams))
        self.settings[fut] = (method, mparams, tries)

    def _setting_done(self, fut):
        method, mparams, tries = self.settings.pop(fut)
        try:
            self.wl.save(method, mparams, fut.result())
        except self.executor.died:
            if tries + 1 >= _RETRIES:
                raise RuntimeError(f"a worker died {_RETRIES} times on setting {method} {mparams}") from None
            self._submit_setting(method, mparams, tries + 1)
            return
        except ArchsimError as e:
            for trial, params in self.waiting.pop((method, json.dumps(mparams, sort_keys=True))):
                self._tell(trial, params, _point(self.study, params), None, e.one_line())
            return
        self.submit(self.waiting.pop((method, json.dumps(mparams, sort_keys=True))))

    def _submit_llm(self, trials):
        """LLM points: one job each (simulate_llm shares no tiles between points)."""
        w = self.study.workload
        for trial, params in trials:
            meta = _point(self.study, params)
            llm = {"model": w.llm, "prompt": w.llm_value("prompt"), "generate": w.llm_value("generate"),
                   "batch": w.batch, "weights": meta["weights"], "kv_format": meta["kv"]}
            data, source, table = self.bases[meta["arch"]]
            job = (llm, data, source, [meta["overrides"]], table)
            self.in_flight[self.executor.submit(evaluate_llm_points, job)] = (job, [(trial, params, meta)], 0)

    def _resubmit(self, job):
        return self.executor.submit(evaluate_llm_points if self.study.is_llm else evaluate_points, job)

    def submit(self, trials):
        if self.study.is_llm:
            return self._submit_llm(trials)
        groups: dict = {}
        for trial, params in trials:
            meta = _point(self.study, params)
            arch, overrides, method, mparams = meta["arch"], meta["overrides"], meta["method"], meta["params"]
            try:
                data = self.wl.cached(method, mparams)
                if data is None and self.executor.shares_files:
                    self._wait_for_setting(method, mparams, trial, params)
                    continue
                setting = self.wl.resolve(data) if data is not None else self.wl.setting(method, mparams)
            except ArchsimError as e:
                self._tell(trial, params, meta, None, e.one_line())
                continue
            meta["accuracy"] = setting["accuracy"]
            key = (arch, method, json.dumps(mparams, sort_keys=True),
                   tuple(o for o in overrides if o.split(".", 1)[0].split("=", 1)[0] not in NOT_MAPPING))
            if key not in groups:
                data, source, table = self.bases[arch]
                groups[key] = ((self.wl.layers_for(setting["formats"]), data, source, [], table), [])
            job, members = groups[key]
            job[3].append(overrides)
            members.append((trial, params, meta))
        for job, members in groups.values():
            self.in_flight[self.executor.submit(evaluate_points, job)] = (job, members, 0)

    def collect(self):
        """Wait for a job or a setting; tell a job's points (or submit it again
        if its worker died), cache a setting and submit its waiting points."""
        for fut in self.executor.wait_first([*self.in_flight, *self.settings]):
            if fut in self.settings:
                self._setting_done(fut)
                continue
            job, members, tries = self.in_flight.pop(fut)
            try:
                results = fut.result()
            except self.executor.died:
                if tries + 1 >= _RETRIES:
                    raise RuntimeError(f"a worker died {_RETRIES} times on trials "
                                       f"{[t.number for t, _, _ in members]}") from None
                self.in_flight[self._resubmit(job)] = (job, members, tries + 1)
                continue
            for (trial, params, meta), res in zip(members, results):
                if isinstance(res, ArchsimError):
                    self._tell(trial, params, meta, None, res.one_line())
                else:
                    self._tell(trial, params, meta, res, None)

    def _tell(self, trial, params, meta, res, err):
        from optuna.trial import TrialState

        attrs = {**meta, "error": err}
        if res is not None:
            if not self.study.is_llm:
                res = {**res, "accuracy": meta["accuracy"]}
            attrs["metrics"] = res
            attrs["constraints"] = _constraint_values(self.study, res, self.fp32)
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        if res is not None:
            for i, c in enumerate(attrs["constraints"]):
                trial.set_constraint(f"c{i}", c)  # <= 0 holds; the samplers prefer feasible points
        if res is None:
            self.ostudy.tell(trial, state=TrialState.FAIL)
        else:
            self.ostudy.tell(trial, [res[OBJECTIVES[o][0]] for o in self.study.objectives])
        if self.on_point:
            self.on_point(trial.number, params, res, err)


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

    if study.is_llm:
        raise ArchsimError("--compare draws a CNN's per-layer breakdown; an LLM study's points are in --csv "
                           "(or `archsim run --model` one of them)", file=study.path, field="--compare")
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
        row = {"trial": t.number, "state": t.state.name, "arch": t.user_attrs.get("arch"),
               # an LLM point's weight format plays the method's part (plots colour by it)
               "method": t.user_attrs.get("method", t.user_attrs.get("weights"))}
        if "weights" in t.user_attrs:
            row.update(weights=t.user_attrs["weights"], kv=t.user_attrs.get("kv"))
        row.update({f"param:{k}": v for k, v in t.params.items()})
        row.update(t.user_attrs.get("metrics") or {})
        row["feasible"] = all(c <= 0 for c in t.user_attrs.get("constraints", [0])) and t.state == TrialState.COMPLETE
        row["error"] = t.user_attrs.get("error")
        rows.append(row)
    return pd.DataFrame(rows)


def objective_axes(objectives: list[str]) -> list[dict]:
    """The objectives as plots/ takes them: metric column, direction, axis label with its unit."""
    return [{"key": OBJECTIVES[o][0], "direction": OBJECTIVES[o][1], "label": OBJECTIVE_LABELS[o]}
            for o in objectives]


def pareto_rows(df, objectives: list[str]):
    """The feasible, non-dominated rows for the study's objectives."""
    ok = df[df["feasible"]] if "feasible" in df else df
    keys = [(OBJECTIVES[o][0], 1 if OBJECTIVES[o][1] == "minimize" else -1) for o in objectives]
    vals = [[r[k] * s for k, s in keys] for _, r in ok.iterrows()]
    keep = [i for i, v in enumerate(vals)
            if not any(all(w[j] <= v[j] for j in range(len(v))) and w != v for w in vals)]
    return ok.iloc[keep]


__all__ = ["explore", "evaluate_point", "evaluate_llm_point", "LocalExecutor", "DaskExecutor", "results_dataframe", "pareto_rows",
           "open_study", "grid_size", "objective_axes", "check_study_size"]
