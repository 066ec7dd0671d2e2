"""docs/arch_yaml_reference.md is what scripts/gen_field_reference.py writes
from the schemas now: a new or changed YAML field, or a new built-in kind,
makes this fail until the file is regenerated."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_field_reference", ROOT / "scripts" / "gen_field_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_committed_field_reference_is_current():
    gen = _generator()
    assert gen.OUT.read_text() == gen.render(), \
        "docs/arch_yaml_reference.md is stale: run python scripts/gen_field_reference.py and commit it"


def test_the_reference_lists_every_yaml_field_and_builtin_kind():
    from archsim.config import ArchSpec
    from archsim.hw import registry

    text = _generator().render()
    for name, f in ArchSpec.model_fields.items():
        assert f.exclude or f"| `{name}` |" in text, name
    for role in ("pe_array", "decoder", "dram"):  # the plug-in blocks: `kind` picks the class
        registry.kinds(role)
        for kind, cls in registry._REGISTRY[role].items():
            if cls.__module__.startswith("archsim."):
                assert f"### `{role}` kind: `{kind}`" in text, kind
                for field in (cls.Spec.model_fields if hasattr(cls, "Spec") else ()):
                    assert f"| `{field}` |" in text, (kind, field)
