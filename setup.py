from setuptools import find_packages, setup

setup(
    name="archsim",
    version="0.1.0",
    description="Discrete-event simulator for DNN accelerators running compressed models",
    packages=find_packages(include=["archsim", "archsim.*", "workloads", "workloads.*"]),
    package_data={"archsim": ["data/*.csv"], "workloads": ["checkpoints/*.pt", "checkpoints/*.json"]},
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
        "tqdm>=4.60",
    ],
    extras_require={"test": ["pytest>=7"]},
    entry_points={"console_scripts": ["archsim=archsim.cli:main"]},
)
