"""Only what pyproject.toml cannot say: the package list. It is every package
found under archsim/, workloads/ and plots/ (a new subpackage needs no edit
here) plus archsim.arch_configs, which is the top-level arch_configs/ folder
(the built-in architectures and study files) installed inside archsim."""
import atexit
import shutil
import tempfile

from setuptools import find_packages, setup

# Build in a temporary folder, so that `pip install .` leaves no build/ or
# archsim.egg-info/ in the checkout.
_tmp = tempfile.mkdtemp(prefix="archsim-build-")
atexit.register(shutil.rmtree, _tmp, ignore_errors=True)

setup(
    packages=find_packages(include=["archsim", "archsim.*", "workloads", "workloads.*", "plots"])
    + ["archsim.arch_configs", "archsim.arch_configs.studies"],
    package_dir={"archsim.arch_configs": "arch_configs"},
    # Everything a command reads is installed with the code: the architectures,
    # the study files, archsim/data (energy table, DRAM presets...) and the
    # trained checkpoints.
    package_data={"archsim": ["data/**/*"], "archsim.arch_configs": ["*.yaml"],
                  "archsim.arch_configs.studies": ["*.yaml"],
                  "workloads": ["checkpoints/*.pt", "checkpoints/*.json"]},
    options={"build": {"build_base": f"{_tmp}/build"}, "egg_info": {"egg_base": _tmp}},
)
