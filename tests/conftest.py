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
