import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Reference data kept inside the repository (provenance: tests/data/scalesim/README.md).
REFERENCE = ROOT / "tests" / "data"
SCALESIM = REFERENCE / "scalesim"


@pytest.fixture
def reference_dir():
    return REFERENCE


@pytest.fixture
def env():
    import simpy

    return simpy.Environment()


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # The 2 CPU cores are shared: torch's OpenMP threads spin-wait on a busy
    # partner core, and the tests' small problems run many times faster on one.
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


# Hypothesis profiles (tests/test_properties.py, tests/test_fuzz_frontdoor.py).
#   ci   (default): few examples, derandomize=True so every CI run tries the
#                   same cases; the two property files run in about a minute.
#   slow: many more examples, random: `pytest --hypothesis-profile=slow` (the
#         hypothesis plugin's own option) or ARCHSIM_HYPOTHESIS_PROFILE=slow.
# deadline=None everywhere: timings vary on shared cores.
try:
    from hypothesis import HealthCheck, settings

    settings.register_profile("ci", max_examples=50, deadline=None, derandomize=True, print_blob=True,
                              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                                     HealthCheck.function_scoped_fixture])
    settings.register_profile("slow", max_examples=400, deadline=None, print_blob=True,
                              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                                     HealthCheck.function_scoped_fixture])
    import os as _os

    settings.load_profile(_os.environ.get("ARCHSIM_HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # hypothesis missing: the property files skip themselves
    pass
