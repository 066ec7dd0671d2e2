import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REFERENCE = ROOT.parent / "shared" / "reference"


@pytest.fixture
def reference_dir():
    if not REFERENCE.exists():
        pytest.skip(f"reference data not found at {REFERENCE} (clone with ../shared beside the repo)")
    return REFERENCE


@pytest.fixture
def env():
    import simpy

    return simpy.Environment()
