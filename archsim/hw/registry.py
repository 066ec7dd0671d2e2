"""Components register against a role and a kind name, so a new PE type or
memory is a new class plus a YAML block (`kind: <name>`), not an edit of the
engine. A class may carry `Spec`, the pydantic model of its YAML block.

Kinds come from three places: the modules of archsim/hw (built in), any
module a program imports before loading a YAML, and the modules other
installed packages name under the entry-point group `archsim.hw` (a user's
own package, see examples/my_pe_kind and docs/plugins.md)."""
from __future__ import annotations

from ..ir.errors import ArchsimError

_REGISTRY: dict[str, dict[str, type]] = {}
ENTRY_POINT_GROUP = "archsim.hw"


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
    new built-in kind is a new module here and nothing else. Then import the
    module each `archsim.hw` entry point of an installed package names, so a
    user's own kinds register without any edit of archsim."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib
    import pkgutil
    from importlib.metadata import entry_points

    from .. import hw

    for m in pkgutil.iter_modules(hw.__path__):
        importlib.import_module(f"{hw.__name__}.{m.name}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as e:  # a broken plug-in is named, not a traceback from deep inside a YAML load
            dist = f" (package {ep.dist.name} {ep.dist.version})" if ep.dist else ""
            raise ArchsimError(f"plug-in {ep.name} = {ep.value}{dist}, entry point group {ENTRY_POINT_GROUP}: "
                               f"failed to import: {type(e).__name__}: {e}") from e
