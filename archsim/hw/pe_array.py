"""PE arrays. What happens inside a fold is a closed-form function of the
fold's shape and the dataflow; one SimPy event is one fold chunk.

Systolic timing equals SCALE-Sim's (tests/data/scalesim/README.md):
  ws / is : fold = 2*rows + cols + T - 2   (T = streamed length)
  os      : fold = K + rows + cols - 2     (K = reduction length)
always with the full array dimensions, whatever part of the array a fold
uses. A fold may be split into chunks along its streamed dimension (to fit
the buffers); the fill overhead is charged to the first chunk and the drain to
the last, so the chunks of a fold add up to exactly the formula."""
from __future__ import annotations

from .registry import register


@register("pe_array", "systolic")
class SystolicArray:
    def __init__(self, env, spec):
        self.env = env
        self.spec = spec
        self.rows = spec.rows
        self.cols = spec.cols
        self.dataflow = spec.dataflow

    def fill_cycles(self) -> int:
        if self.dataflow == "os":
            return 0
        # stationary operand shifted in (rows) + input skew (rows - 1)
        return 2 * self.rows - 1

    def drain_cycles(self) -> int:
        if self.dataflow == "os":
            return self.rows + self.cols - 2
        return self.cols - 1

    def chunk_cycles(self, stream_len: int, first: bool, last: bool, weight_bits: int = 8) -> int:
        return stream_len + (self.fill_cycles() if first else 0) + (self.drain_cycles() if last else 0)
