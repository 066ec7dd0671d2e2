"""Kinds from other installed packages: archsim imports every module named
under the entry-point group `archsim.hw` (archsim.hw.registry). Here the
"installed package" is a real dist-info folder on sys.path (what pip writes),
so importlib.metadata finds it as it would any package; tests/test_install.py
pip-installs examples/my_pe_kind itself."""
import pytest
import yaml

from archsim.cli import main
from archsim.config import ARCH_DIR
from archsim.hw import registry

KIND_MODULE = '''
from typing import Literal
from archsim.hw.pe_kind import register_pe_kind
from archsim.hw.systolic import SystolicArray, SystolicSpec


class Spec(SystolicSpec):
    kind: Literal["plugin_test_array"] = "plugin_test_array"


@register_pe_kind("plugin_test_array")
class PluginTestArray(SystolicArray):
    Spec = Spec
'''


def _install(site, module: str, target: str, code: str | None = None):
    """Write what pip writes for a package declaring one `archsim.hw` entry point."""
    dist = site / f"{module}_pkg-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[archsim.hw]\n{module} = {target}\n")
    if code is not None:
        (site / f"{module}.py").write_text(code)


@pytest.fixture
def fresh_registry(monkeypatch, tmp_path):
    """Entry points are read again, and whatever the test registers is gone after it."""
    monkeypatch.setattr(registry, "_REGISTRY", {role: dict(kinds) for role, kinds in registry._REGISTRY.items()})
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return tmp_path / "site"


def test_a_kind_from_an_installed_package_runs_from_yaml(fresh_registry, tmp_path, monkeypatch, capsys):
    _install(fresh_registry, "plugin_test_kind", "plugin_test_kind", KIND_MODULE)
    assert "plugin_test_array" in registry.kinds("pe_array")
    d = yaml.safe_load((ARCH_DIR / "sa32_ws.yaml").read_text())
    d["pe_array"]["kind"] = "plugin_test_array"
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(d))
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "a.yaml"]) == 0
    assert "32x32 plugin_test_array" in capsys.readouterr().out


def test_a_plugin_that_fails_to_import_is_one_line_exit_2(fresh_registry, capsys):
    _install(fresh_registry, "plugin_broken", "plugin_broken_missing_module")
    assert main(["validate", "sa32_ws"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "plug-in plugin_broken = plugin_broken_missing_module (package plugin_broken-pkg 0.1)" in err
    assert "ModuleNotFoundError" in err
