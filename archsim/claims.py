"""A paper's headline claim beside what archsim measures: the record every
`archsim reproduce PAPER` function returns (archsim/reproduce.py,
archsim/reproduce_pqa.py), kept apart so that those modules need not import
each other."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Claim:
    metric: str
    unit: str
    paper_value: float | list  # a number, or [low, high] where the paper gives a range
    measured: float
    workload: str
    arch: str
    baseline: str
    note: str = ""
    curve: dict = field(default_factory=dict)  # optional x -> measured, e.g. speedup over bandwidth
    rule: str = ""  # how the operating point was chosen, when the claim had several candidates
