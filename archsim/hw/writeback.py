"""Write-back: drains finished output (or spilled partial-sum) tiles from the
output buffer to DRAM over the shared channel; writes are posted, so the DRAM
latency does not hold the write-back queue."""
from __future__ import annotations

from .registry import register


@register("writeback", "writeback")
class WriteBack:
    def __init__(self, env, dram):
        self.env = env
        self.dram = dram

    def execute(self, env, node):
        return self.dram.transfer(node["bytes"], write=True, addr=node.get("addr"), stream=node["unit"])
