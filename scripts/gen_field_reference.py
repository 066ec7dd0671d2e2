"""Write docs/arch_yaml_reference.md: every field an architecture YAML may
hold, generated from the pydantic schemas (archsim.config.ArchSpec and the
Spec of every built-in kind in archsim.hw.registry), so the reference cannot
drift from what the loader accepts. tests/test_field_reference.py fails when
the committed file differs from what this script writes.

Usage: python scripts/gen_field_reference.py          (rewrites the file)
       python scripts/gen_field_reference.py --check  (exit 1 if it is stale)
"""
from __future__ import annotations

import sys
import typing
from pathlib import Path

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "arch_yaml_reference.md"

HEADER = """# Architecture YAML: field reference

Generated from the pydantic schemas by `python scripts/gen_field_reference.py`
(do not edit by hand; `tests/test_field_reference.py` fails when this file is
stale). For what the blocks mean and how they are simulated, see the README
and `docs/`; for complete examples, the built-in files in `arch_configs/`
(`archsim validate FILE` checks one).

Rules for every block: unknown keys are errors; numbers are never NaN or
infinite; units are in the field names (`_bytes`, `_cycles`, `_mhz`, `_bits`,
`_pj_per_bit`); `source` says where the block's numbers came from. Any field
can be changed from the command line with `--set block.field=value`
(e.g. `--set pe_array.rows=64`). A block with a `kind` picks the class that
simulates it; each kind adds its own fields (listed below under the block).
A kind from an installed plug-in package (docs/plugins.md) brings its own
Spec and is not listed here.
"""


def _model_of(annotation) -> type[BaseModel] | None:
    """The pydantic model a field holds (through Optional, SerializeAsAny...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        m = _model_of(arg)
        if m is not None:
            return m
    return None


def _variants(annotation) -> list[type[BaseModel]]:
    """Every model a field may hold, when it is a union of several."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out = []
    for arg in typing.get_args(annotation):
        out += [m for m in _variants(arg) if m not in out]
    return out


def _type(prop: dict) -> str:
    if "anyOf" in prop:
        parts = [_type(p) for p in prop["anyOf"] if p.get("type") != "null"]
        return " or ".join(parts) + (" or null" if any(p.get("type") == "null" for p in prop["anyOf"]) else "")
    if "const" in prop:
        return f"`{prop['const']}`"
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if prop.get("type") == "array":
        return f"list of {_type(prop.get('items', {}))}"
    if prop.get("type") == "object":
        return "mapping"
    return {"integer": "int", "number": "float", "string": "str", "boolean": "bool"}.get(prop.get("type"), "value")


def _limits(prop: dict) -> str:
    ops = (("exclusiveMinimum", "> "), ("minimum", ">= "), ("exclusiveMaximum", "< "), ("maximum", "<= "))
    found = [f"{op}{prop[k]}" for k, op in ops if k in prop]
    for p in prop.get("anyOf", []):
        found += [f"{op}{p[k]}" for k, op in ops if k in p]
    return ", ".join(found)


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _default(f) -> str:
    value = f.get_default(call_default_factory=True)
    if value is None:
        return "absent"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"  # as YAML writes it
    return "`\"\"`" if value == "" else f"`{value}`"


def _table(model: type[BaseModel], prefix: str, nested: list) -> list[str]:
    """One row per leaf field; blocks inside are queued in `nested`."""
    props = model.model_json_schema()["properties"]
    rows = ["| field | type | default | limits | meaning |", "| --- | --- | --- | --- | --- |"]
    for name, f in model.model_fields.items():
        if f.exclude:
            continue  # not a YAML key
        path = f"{prefix}{name}"
        sub = _model_of(f.annotation)
        if sub is not None:
            nested.append((path, f, sub))
            many = typing.get_origin(f.annotation) in (list, tuple)
            default = "required" if f.is_required() else "absent" if f.default is None else \
                _default(f) if many else "see block"
            rows.append(f"| `{name}` | {'list of blocks' if many else 'block'}, see [`{path}`](#{path.replace('.', '')}) "
                        f"| {default} | | {_cell(f.description or '')} |")
            continue
        prop = props.get(name, {})
        default = "required" if f.is_required() else _default(f)
        rows.append(f"| `{name}` | {_type(prop)} | {default} | {_limits(prop)} | {_cell(f.description or '')} |")
    return rows


def _builtin_kinds(block: str) -> list[tuple[str, type, type[BaseModel]]]:
    """(kind, class, schema) of every built-in class registered for a plug-in
    block; the registry's role is the block's name (pe_array, decoder, dram).
    A class without a Spec of its own is read with the model of archsim.config
    whose `kind` defaults to its name (e.g. DRAMSpec for kind: dram)."""
    from archsim import config
    from archsim.hw import registry

    registry.kinds(block)  # imports every built-in module
    classes = {k: c for k, c in registry._REGISTRY.get(block, {}).items() if c.__module__.startswith("archsim.")}
    if not any(hasattr(c, "Spec") for c in classes.values()):
        return []  # not a plug-in block
    by_kind = {m.model_fields["kind"].default: m for m in vars(config).values()
               if isinstance(m, type) and issubclass(m, BaseModel) and "kind" in m.model_fields}
    return [(k, c, getattr(c, "Spec", None) or by_kind[k]) for k, c in sorted(classes.items())]


def _doc(obj) -> str:
    text = (obj.__doc__ or "").strip().split("\n\n")[0]
    return " ".join(text.split())


def render() -> str:
    from archsim.config import ArchSpec

    lines = [HEADER, "## Top level", ""]
    queue: list = []
    lines += _table(ArchSpec, "", queue)
    while queue:
        path, field, model = queue.pop(0)
        lines += ["", f"## `{path}`", ""]
        if field.description:
            lines += [_cell(field.description), ""]
        variants = _variants(field.annotation)
        kinds = _builtin_kinds(path) if "." not in path else []
        if len(variants) > 1 and not kinds:
            for v in variants:
                lines += [f"### `{path}`: {v.__name__}", "", _doc(v) or "", ""]
                lines += _table(v, f"{path}.", queue)
                lines.append("")
            continue
        if kinds:
            names = ", ".join(f"[`{k}`](#{path.replace('.', '')}-kind-{k})" for k, _, _ in kinds)
            lines += [f"`kind` picks the class; built in: {names}."]
            if model.model_fields:
                lines[-1] += " Fields common to every kind:"
        if model.model_fields:
            lines += [""] + _table(model, f"{path}.", queue)
        for kind, cls, spec in kinds:
            lines += ["", f"### `{path}` kind: `{kind}`", f'<a id="{path.replace(".", "")}-kind-{kind}"></a>', ""]
            if _doc(cls) or _doc(sys.modules[cls.__module__]):
                lines += [_doc(cls) or _doc(sys.modules[cls.__module__]), ""]
            lines += [f"Class `{cls.__module__}.{cls.__name__}`, schema `{spec.__name__}`; "
                      "every field of the block with this kind:", ""]
            lines += _table(spec, f"{path}.", [])
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is stale: run python scripts/gen_field_reference.py", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
