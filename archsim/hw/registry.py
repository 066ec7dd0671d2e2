"""Components register against a role and a kind name, so a new PE type or
memory is a new class plus a YAML block (`kind: <name>`), not an edit of the
engine. A class may carry `Spec`, the pydantic model of its YAML block."""
from __future__ import annotations

from ..errors import ArchsimError

_REGISTRY: dict[str, dict[str, type]] = {}


def register(role: str, kind: str):
    def deco(cls):
        _REGISTRY.setdefault(role, {})[kind] = cls
        cls.kind = kind
        return cls
    return deco


def lookup(role: str, kind: str, source: str | None = None, field: str | None = None) -> type:
    _load_builtins()
    try:
        return _REGISTRY[role][kind]
    except (KeyError, TypeError):
        known = ", ".join(sorted(_REGISTRY.get(role, {})))
        raise ArchsimError(f"unknown {role} kind {kind!r} (known: {known})", file=source, field=field) from None


def create(role: str, kind: str, *args, source: str | None = None, field: str | None = None, **kw):
    return lookup(role, kind, source, field)(*args, **kw)


def kinds(role: str) -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY.get(role, {}))


_loaded = False


def _load_builtins():
    """Import every module of archsim/hw once, so each registers its kinds: a
    new built-in kind is a new module here and nothing else. A user's own kind
    registers itself when its module is imported."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib
    import pkgutil

    from .. import hw

    for m in pkgutil.iter_modules(hw.__path__):
        importlib.import_module(f"{hw.__name__}.{m.name}")
