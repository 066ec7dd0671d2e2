"""Components register against a kind name, so a new PE type or memory is a
new class plus a YAML block (`kind: <name>`), not an edit of the engine."""
from __future__ import annotations

from ..errors import ArchsimError

_REGISTRY: dict[str, dict[str, type]] = {}


def register(role: str, kind: str):
    def deco(cls):
        _REGISTRY.setdefault(role, {})[kind] = cls
        cls.kind = kind
        return cls
    return deco


def create(role: str, kind: str, *args, source: str | None = None, field: str | None = None, **kw):
    try:
        cls = _REGISTRY[role][kind]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY.get(role, {})))
        raise ArchsimError(f"unknown {role} kind {kind!r} (known: {known})", file=source, field=field) from None
    return cls(*args, **kw)


def kinds(role: str) -> list[str]:
    return sorted(_REGISTRY.get(role, {}))
