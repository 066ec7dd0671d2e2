"""Banked DRAM (`kind: banked_dram`): channels, ranks, bank groups, banks,
row buffers, JEDEC timing, refresh and an FR-FCFS controller, checked against
DRAMsim3 (tests/test_dram_banked.py)."""
from .replay import replay  # noqa: F401
from .spec import BankedDRAMSpec, presets  # noqa: F401
from .component import BankedDRAM  # noqa: F401
