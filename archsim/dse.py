"""Design-space exploration: simulate one workload on every point of a grid
of architecture overrides, append each result to a JSON-lines file as soon as
it is known, and resume from that file after an interruption (a point already
in the file is never simulated again; a torn last line is ignored)."""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Callable, Iterable

from .config import load_arch
from .errors import ArchsimError

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
    """Every (architecture, overrides) point of the cartesian product."""
    keys = sorted(grid)
    points = []
    for arch in archs:
        for values in itertools.product(*(grid[k] for k in keys)):
            points.append((arch, tuple(f"{k}={v}" for k, v in zip(keys, values))))
    return points


def point_key(arch: str, overrides: tuple[str, ...]) -> str:
    return json.dumps([arch, list(overrides)])


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


def _summary(report) -> dict:
    t = report.totals
    return {"latency_cycles": t["total_cycles"], "latency_ms": t["latency_ms"],
            "energy_uj": t["energy_total_pj"] / 1e6, "area_mm2": report.area_um2["total"] / 1e6,
            "utilisation": t["utilisation"], "stall_cycles": t["stall_cycles"],
            "dram_bytes": t["dram_read_bytes"] + t["dram_write_bytes"]}


def sweep(layers, archs: list[str], grid: dict[str, list], out: str | Path,
          on_point: Callable[[dict], None] | None = None) -> list[dict]:
    """Simulate `layers` (list[LayerSpec]) on every point; returns all rows
    (old and new) in grid order. A point the architecture cannot run (e.g. a
    buffer too small for one tile) is recorded with its error, not retried."""
    from .api import simulate

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = load_done(out)
    rows = []
    for arch_name, overrides in expand(archs, grid):
        key = point_key(arch_name, overrides)
        if key not in done:
            row = {"key": key, "arch": arch_name, "overrides": list(overrides)}
            try:
                arch = load_arch(arch_name, list(overrides))
                row.update(_summary(simulate(layers, arch)), error=None)
            except ArchsimError as e:
                if e.field and e.field.startswith("--"):
                    raise
                row["error"] = e.one_line()
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
                f.flush()
                os.fsync(f.fileno())
            done[key] = row
            if on_point:
                on_point(row)
        rows.append(done[key])
    return rows


def pareto_front(rows: list[dict], x: str = "latency_ms", y: str = "energy_uj") -> list[dict]:
    """Points not dominated in (x, y), both minimised, sorted by x."""
    ok = sorted((r for r in rows if not r.get("error")), key=lambda r: (r[x], r[y]))
    front, best_y = [], float("inf")
    for r in ok:
        if r[y] < best_y:
            front.append(r)
            best_y = r[y]
    return front
