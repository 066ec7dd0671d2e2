"""Design-space exploration: simulate one workload on every point of a grid
of architecture overrides, append each result to a JSON-lines file as soon as
it is known, and resume from that file after an interruption (a point already
in the file is never simulated again; a torn last line is ignored).

A point is "already in the file" only when everything that decides its result
is the same: the key is a hash of the workload (every layer's name, shape,
weight format and weight values), the fully resolved architecture (after the
overrides), the energy table (path and content) and archsim's
COST_MODEL_VERSION. Each row also says, in plain words, what produced it
(`produced_by`). Rows hold no time stamps or wall times: the same sweep writes
the same file, byte for byte."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
from pathlib import Path
from typing import Callable, Iterable

from .ir import progress
from .config import load_arch, resolve_arch_path
from .ir.errors import ArchsimError
from .version import COST_MODEL_VERSION, __version__

OBJECTIVES = ("latency_ms", "energy_uj", "area_mm2")


def parse_grid(items: Iterable[str]) -> dict[str, list]:
    """['pe_array.rows=16,32', ...] -> {'pe_array.rows': [16, 32]}"""
    import yaml

    grid = {}
    for item in items:
        if "=" not in item:
            raise ArchsimError(f"expected path.to.field=v1,v2,..., got {item!r}", field="--grid")
        key, values = item.split("=", 1)
        try:
            grid[key.strip()] = [yaml.safe_load(v) for v in values.split(",") if v.strip()]
        except yaml.YAMLError as e:
            raise ArchsimError(f"{key.strip()}: a value is not valid YAML ({getattr(e, 'problem', None) or e})",
                               field="--grid") from None
        if not grid[key.strip()]:
            raise ArchsimError(f"no values for {key}", field="--grid")
    return grid


def check_grid(archs: list[str], grid: dict[str, list]) -> None:
    """Check every key and value of the grid against the schema on each base
    architecture before anything runs: a misspelled field or a value the
    schema refuses is the user's mistake at every point, so it is an
    ArchsimError naming --grid and the field, not one failed row per point.
    (A combination of valid values can still fail at its point, e.g. a
    buffer too small for one tile; that is recorded in the point's row.)"""
    for arch in archs:
        load_arch(arch)  # the base itself: its own errors name its file
        for key in sorted(grid):
            for value in grid[key]:
                load_arch(arch, [f"{key}={value}"], flag="--grid")


def expand(archs: list[str], grid: dict[str, list]) -> list[tuple[str, tuple[str, ...]]]:
    """Every (architecture, overrides) point of the cartesian product; fields
    no mapper reads (DRAM, clock, energy) vary fastest, so neighbouring
    points share a tile graph (TileCache)."""
    from archsim.tiling import NOT_MAPPING

    walk = sorted(grid, key=lambda k: (k.split(".", 1)[0] in NOT_MAPPING, k))
    keys = sorted(grid)  # each point's overrides, in name order
    points = []
    for arch in archs:
        for values in itertools.product(*(grid[k] for k in walk)):
            value = dict(zip(walk, values))
            points.append((arch, tuple(f"{k}={value[k]}" for k in keys)))
    return points


def _plain(v):
    """A JSON-able, order-stable view of a layer field (tensors by content hash)."""
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    if hasattr(v, "describe"):
        return v.describe()
    if dataclasses.is_dataclass(v):
        return {f.name: _plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if hasattr(v, "detach"):  # a torch tensor: its shape, dtype and bytes
        t = v.detach().cpu().contiguous()
        return {"shape": list(t.shape), "dtype": str(t.dtype),
                "sha256": hashlib.sha256(t.float().numpy().tobytes()).hexdigest()}
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in sorted(v.items())}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return repr(v)


def _sha256(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def workload_digest(layers) -> str:
    """Hash of everything about the layers the simulation reads."""
    return _sha256(json.dumps([_plain(L) for L in layers], sort_keys=True))


def _file_sha256(path) -> str | None:
    try:
        return _sha256(Path(path).read_bytes())
    except OSError:
        return None


def resolve_point(arch_name: str, overrides: tuple[str, ...], energy_table=None) -> tuple:
    """(ArchSpec or the ArchsimError that refused it, {what decides the point
    besides the workload}): the resolved architecture and the energy table's
    path and content hash."""
    from .energy import EnergyTable

    try:
        arch = load_arch(arch_name, list(overrides))
    except ArchsimError as e:
        if e.field and e.field.startswith("--"):
            raise
        try:
            base = str(resolve_arch_path(arch_name))
        except ArchsimError:
            base = arch_name
        return e, {"arch": {"base": arch_name, "base_sha256": _file_sha256(base), "overrides": list(overrides)}}
    try:
        table = str(energy_table) if energy_table else EnergyTable.for_arch(arch).path
    except ArchsimError as e:
        return e, {"arch": arch.model_dump(mode="json")}
    return arch, {"arch": arch.model_dump(mode="json"),
                  "energy_table": {"path": table, "sha256": _file_sha256(table)}}


def point_key(workload_sha256: str, resolved: dict) -> str:
    # the energy table by content only: a moved checkout (another absolute
    # path to the same table) must not re-simulate finished points
    keyed = dict(resolved)
    if "energy_table" in keyed:
        keyed["energy_table"] = {"sha256": keyed["energy_table"]["sha256"]}
    return _sha256(json.dumps({"cost_model_version": COST_MODEL_VERSION, "workload": workload_sha256,
                               **keyed}, sort_keys=True))[:32]


def load_done(path: Path) -> dict[str, dict]:
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by an interruption: that point runs again
            done[row["key"]] = row
    return done


def sweep(layers, archs: list[str], grid: dict[str, list], out: str | Path,
          on_point: Callable[[dict], None] | None = None, *, workload: str = "", weights: str = "",
          energy_table: str | Path | None = None,
          on_reused: Callable[[dict], None] | None = None) -> list[dict]:
    """Simulate `layers` (list[LayerSpec]) on every point; returns the rows
    of this sweep's points (reused and new) in grid order. A point the
    architecture cannot run (e.g. a buffer too small for one tile) is
    recorded with its error, not retried. `workload` and `weights` name what
    is simulated in each row's `produced_by` (they are labels; the key hashes
    the layers themselves). on_point(row) follows each simulated point,
    on_reused(row) each point taken from the file."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _locked(out) as f:
        return _sweep(layers, archs, grid, out, f, on_point, workload, weights, energy_table, on_reused)


@contextlib.contextmanager
def _locked(out: Path):
    """The results file, open for appending and locked for this process: a
    second sweep writing the same file is refused instead of doubling its
    lines. The lock goes with the process, however it ends."""
    import fcntl

    try:
        f = out.open("a")
    except OSError as e:
        raise ArchsimError(f"cannot write the results: {e.strerror or e}", file=str(out), field="--out") from None
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ArchsimError("another sweep is writing this file now; wait for it or give another --out "
                               "(a finished sweep's points are reused)", file=str(out), field="--out") from None
        yield f
    finally:
        f.close()


def _sweep(layers, archs, grid, out: Path, f, on_point, workload, weights, energy_table, on_reused):
    from archsim.tiling import TileCache

    from .api import describe_weights, simulate

    done = load_done(out)
    digest = workload_digest(layers)
    weights = weights or describe_weights(layers)
    rows = []
    tiles = TileCache()  # points that differ only in DRAM, clock or energy share a tile graph
    points = expand(archs, grid)
    for arch_name, overrides in progress.bar(points, desc="sweep", unit="point"):
        arch, resolved = resolve_point(arch_name, overrides, energy_table)
        key = point_key(digest, resolved)
        if key in done:
            if on_reused:
                on_reused(done[key])
        else:
            row = {"key": key, "arch": arch_name, "overrides": list(overrides)}
            try:
                if isinstance(arch, ArchsimError):
                    raise arch
                row.update(simulate(layers, arch, energy_table=energy_table, workload=workload,
                                     weights=weights, tiles=tiles).headline(), error=None)
            except ArchsimError as e:
                if e.field and e.field.startswith("--"):
                    raise
                row["error"] = e.one_line()
            et = resolved.get("energy_table", {})
            row["produced_by"] = {"archsim_version": __version__, "cost_model_version": COST_MODEL_VERSION,
                                  "workload": workload, "workload_sha256": digest, "weights": weights,
                                  "energy_table": et.get("path"), "energy_table_sha256": et.get("sha256")}
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
            done[key] = row
            if on_point:
                on_point(row)
        rows.append(done[key])
    return rows


def foreign_rows(path: str | Path, rows: list[dict]) -> list[dict]:
    """Rows of the results file that this sweep did not produce or reuse
    (another workload, weights, architecture, energy table or cost model)."""
    mine = {r["key"] for r in rows}
    return [r for k, r in load_done(Path(path)).items() if k not in mine]


def pareto_front(rows: list[dict], x: str = "latency_ms", y: str = "energy_uj") -> list[dict]:
    """Points not dominated in (x, y), both minimised, sorted by x."""
    ok = sorted((r for r in rows if not r.get("error")), key=lambda r: (r[x], r[y]))
    front, best_y = [], float("inf")
    for r in ok:
        if r[y] < best_y:
            front.append(r)
            best_y = r[y]
    return front
