import re
from pathlib import Path

from setuptools import find_packages, setup

VERSION = re.search(r'__version__ = "([^"]+)"', (Path(__file__).parent / "archsim" / "version.py").read_text()).group(1)

setup(
    name="archsim",
    version=VERSION,
    description="Discrete-event simulator for DNN accelerators running compressed models",
    # Everything a command reads is installed with the code: the built-in
    # architectures (kept at the top of the checkout, installed as the package
    # data archsim/arch_configs), the energy table, the trained checkpoints and
    # the plotting helpers.
    packages=find_packages(include=["archsim", "archsim.*", "workloads", "workloads.*", "plots"])
    + ["archsim.arch_configs"],
    package_dir={"archsim.arch_configs": "arch_configs"},
    package_data={"archsim": ["data/*.csv"], "archsim.arch_configs": ["*.yaml"],
                  "workloads": ["checkpoints/*.pt", "checkpoints/*.json"]},
    python_requires=">=3.10",
    install_requires=[
        # CPU build; an unpinned torch pulls a multi-GB CUDA build (README: install it from PyTorch's CPU index)
        "torch==2.13.0",
        "simpy>=4.1",
        "numpy>=1.24",
        "networkx>=3.0",
        "pydantic>=2.5",
        "PyYAML>=6.0",
        "matplotlib>=3.7",
        "pandas>=2.0",
        "faiss-cpu>=1.7",
        "optuna>=4.0",             # archsim explore: samplers and RDB (SQLite) storage
        "distributed>=2024.1",     # archsim explore --executor dask (brings dask)
        "tqdm>=4.60",
    ],
    extras_require={"test": ["pytest>=7", "hypothesis>=6.100"]},
    entry_points={"console_scripts": ["archsim=archsim.cli:main"]},
)
