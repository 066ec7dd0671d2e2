"""The packages stack in one direction (issue 17):

    archsim.ir            the hardware-free IR: layer specs, the DAG, weight formats, errors, progress bars
    workloads             models, compression, compile, importers: import only archsim.ir
    archsim (simulator)   config, tiling, allocator, mappers, engine, energy, report, hw:
                          never import workloads
    archsim front end     api, cli, explore, dse, study, reproduce*, claims, llm, sizing: may import both

Every import counts, at module level or inside a function."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FRONT_END = {"api", "cli", "explore", "dse", "study", "reproduce", "reproduce_pqa", "claims", "llm", "sizing",
             "__main__"}


def _imports(path: Path, package: str) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def _modules(top: str):
    for path in sorted((ROOT / top).rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        package = ".".join(parts[:-1] if parts[-1] != "__init__" else parts[:-1])
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path, package


def test_workloads_import_only_the_ir():
    bad = []
    for name, path, package in _modules("workloads"):
        for mod in _imports(path, package):
            if mod == "archsim" or (mod.startswith("archsim.") and not mod.startswith("archsim.ir")):
                bad.append(f"{name} imports {mod}")
    assert not bad, "\n".join(bad)


def test_the_simulator_never_imports_workloads():
    bad = []
    for name, path, package in _modules("archsim"):
        if name.split(".")[1:2] and name.split(".")[1] in FRONT_END:
            continue
        for mod in _imports(path, package):
            if mod == "workloads" or mod.startswith("workloads."):
                bad.append(f"{name} imports {mod}")
    assert not bad, "\n".join(bad)


def test_the_ir_imports_nothing_else_of_archsim():
    bad = []
    for name, path, package in _modules("archsim/ir"):
        for mod in _imports(path, package):
            if (mod.startswith("archsim.") and not mod.startswith("archsim.ir")) or mod.startswith("workloads"):
                bad.append(f"{name} imports {mod}")
    assert not bad, "\n".join(bad)
