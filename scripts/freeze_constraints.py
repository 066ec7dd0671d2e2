"""Write constraints.txt: the installed version of every package in archsim's
dependency closure (its dependencies + the test extra, recursively, as the
installed archsim's metadata lists them, i.e. as pyproject.toml does), so that
`pip install -c constraints.txt -e ".[test]"` reproduces this environment.

Usage: python scripts/freeze_constraints.py > constraints.txt
"""
from __future__ import annotations

import importlib.metadata as md
import re
import sys

from packaging.requirements import Requirement


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def roots() -> list[str]:
    """archsim's dependencies and its test extra (run after installing it)."""
    reqs = [Requirement(r) for r in md.requires("archsim") or []]
    return [r.name for r in reqs if r.marker is None or r.marker.evaluate({"extra": "test"})]


def closure(names: list[str]) -> dict[str, tuple[str, str]]:
    seen: dict[str, tuple[str, str]] = {}
    todo = list(names)
    while todo:
        n = todo.pop()
        if _norm(n) in seen:
            continue
        d = md.distribution(n)
        seen[_norm(n)] = (d.metadata["Name"], d.version)
        for r in d.requires or []:
            req = Requirement(r)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def main() -> int:
    deps = closure(roots())
    print("# Exact versions of archsim's dependency closure, as tested.")
    print("# Regenerate: python scripts/freeze_constraints.py > constraints.txt")
    print("# torch is the CPU build: add --extra-index-url https://download.pytorch.org/whl/cpu")
    for key in sorted(deps):
        name, version = deps[key]
        print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
