"""Versions. `__version__` is the package's; COST_MODEL_VERSION numbers the
cost model (tiling, timing, energy and area rules): bump it in any change that
changes a simulated number, so that saved sweep results made by an older model
are simulated again instead of being reused (archsim.dse keys on it)."""

__version__ = "0.1.0"
COST_MODEL_VERSION = 3
