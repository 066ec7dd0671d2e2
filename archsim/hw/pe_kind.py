"""The PE-kind interface: everything specific to one datapath, declared where
the datapath is defined (one module per kind under archsim/hw/).

A PE kind is a class registered with `@register_pe_kind` that declares:
  Spec                  its pydantic block; `pe_array` in a YAML is validated
                        against the Spec of the class its `kind` names, so a
                        kind adds its own parameters and unknown keys stay errors;
  map_layer(t)          how a layer maps onto it: the loop nest, fold shapes,
                        which operand is stationary. `t` is the generic
                        archsim.tiling.LayerTiler that creates load / decode /
                        compute / store nodes and knows residency and double
                        buffering; the kind only decides the order and shapes;
  fold_cycles(fold)     closed-form timing of one fold chunk;
  fold_actions(fold)    named actions of one fold chunk ('component.action':
                        count), priced by action_costs;
  action_costs(em)      pJ per action, each with where it came from;
  area_um2(em)          area per component, each tagged logic or sram (static
                        power is area x the table's leakage/clock density);
  peak_macs_per_cycle   for utilisation;
  weight_formats        {format name: the rule it runs by}: every weight format
                        it executes (one a decoder rebuilds counts as executed
                        only with a decoder that lists it too); any other is
                        refused before tiling (archsim.hw.compat);
  format_problem(fmt)   why it cannot run one format's parameters (None: it can).
A compute node carries `cycles` and `actions` worked out by the kind when the
layer is mapped, so the engine runs any kind without knowing it.
"""
from __future__ import annotations

from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from ..ir.errors import ArchsimError
from .registry import register
from .row_sim import execute_rows


class ComponentSpec(BaseModel):
    """Base of every YAML block: unknown keys are errors, and NaN or infinity
    is never a size, a rate or a clock."""
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class PESpec(ComponentSpec):
    kind: str
    rows: PositiveInt
    cols: PositiveInt
    act_bits: PositiveInt = 8
    fidelity: Literal["fold", "rows", "tile"] = Field(
        "fold", description="fold: each fold chunk is its closed form; rows: each PE row is a SimPy process "
        "(archsim/hw/row_sim.py; slow, for cross-checks and per-row traces); tile: as fold, but the folds of a "
        "weight-stationary nest that one weight transfer feeds, with nothing else between them (no decode, "
        "no spilled partial sums, one streamed chunk: LLM decode), are one compute node")
    row_fifo_depth: PositiveInt = Field(
        2, description="fidelity rows: entries of each FIFO between neighbouring rows and at a row's edge "
        "(documented choice: 2, a double-buffered register; any depth >= 1 gives the same lock-step cycles)")
    source: str = ""


class Fold(NamedTuple):
    """One fold chunk: the PE rows and columns it uses, the streamed length,
    whether it is the fold's first (pays the fill) and last (pays the drain)
    chunk, and whether it is the layer's first fold. The layer's weight
    format comes beside it (None where the operand is an activation)."""
    rows_used: int
    cols_used: int
    stream_len: int
    first: bool
    last: bool
    layer_first: bool = False
    # fidelity rows, a lock-step kind: each PE row's mean cycles per streamed step
    # (kind's fold_lanes); () for a MAC array (one cycle per row holding weights)
    lanes: tuple = ()

    def __repr__(self):
        # lanes shown only where set: a fold-fidelity tile graph prints (and fingerprints) as before
        lanes = f", lanes={self.lanes!r}" if self.lanes else ""
        return (f"Fold(rows_used={self.rows_used!r}, cols_used={self.cols_used!r}, stream_len={self.stream_len!r}, "
                f"first={self.first!r}, last={self.last!r}, layer_first={self.layer_first!r}{lanes})")


def register_pe_kind(name: str):
    """Register a PE kind class under `kind: <name>`."""
    return register("pe_array", name)


class PEKind:
    Spec: type[PESpec] = PESpec
    kind = "abstract"

    def __init__(self, spec: PESpec, arch):
        self.spec = spec
        self.arch = arch
        self.rows = spec.rows
        self.cols = spec.cols
        self._fold_cache: dict = {}  # (Fold, id(format)) -> (cycles, actions); formats outlive one tile()
        # a kind runs on the rows only if it says what its rows do per step (fold_lanes)
        if spec.fidelity == "rows" and (getattr(self, "fold_lanes", None) is None
                                        or type(self).execute is not PEKind.execute):
            raise ArchsimError(f"fidelity: rows is not modelled for kind {spec.kind}; it covers the systolic "
                               "and bit-serial kinds", file=getattr(arch, "path", None), field="pe_array.fidelity")

    # -- weight formats ------------------------------------------------------------
    weight_formats: dict[str, str] = {"dense": "MACs on the stored weights"}

    def format_problem(self, fmt) -> tuple[str, str] | None:
        """(why this array cannot run `fmt`, the field to change), or None."""
        return None

    # -- mapping --------------------------------------------------------------
    # True when map_layer's nodes depend only on the layer (shape, format,
    # profile) and the architecture, and it touches no earlier layer's nodes:
    # the tiler then replays a repeated layer's nodes instead of running the
    # nest again. A kind that keeps state across layers (or waits on earlier
    # layers' nodes) sets False.
    layers_independent = True

    def map_layer(self, t) -> int | None:
        """Emit the layer's nodes through the LayerTiler `t`; return its last store."""
        raise NotImplementedError

    def loads_own_side_data(self, layer) -> bool:
        """True where map_layer loads the layer's side data itself (into its
        own buffers); the tiler then does not load it generically."""
        return False

    def loop_order(self, t) -> str:
        """Name of the loop order chosen for this layer (shown in the report)."""
        return ""

    def fold_estimate(self, layer) -> int:
        """A rough count of the layer's fold chunks (the CLI refuses a run
        whose total is too large to simulate), weight-stationary unless a
        kind says otherwise."""
        return self._stationary_fold_estimate(layer, layer.N, layer.M)

    def _stationary_fold_estimate(self, layer, ncol: int, S: int) -> int:
        # a streamed chunk's partial sums (cols x acc_bits) must fit in the
        # output buffer's tile room, so each fold has at least S / that many chunks
        ceil = lambda a, b: -(-a // b)
        psum_bytes = max(1, ceil(self.cols * getattr(self, "acc_bits", 32), 8))
        per_chunk = max(1, self.arch.buffers.output.tile_limit_bytes // psum_bytes)
        return layer.groups * ceil(layer.K, self.rows) * ceil(ncol, self.cols) * ceil(S, per_chunk)

    # -- one fold -------------------------------------------------------------
    def fold_cycles(self, fold: Fold, fmt) -> int:
        raise NotImplementedError

    def fold_actions(self, fold: Fold, fmt) -> dict[str, int]:
        raise NotImplementedError

    def fold_cost(self, fold: Fold, fmt) -> tuple[int, tuple]:
        """(cycles, actions as a tuple of pairs), cached: many folds share a shape."""
        key = (fold, id(fmt))  # formats are hashed field by field: their identity is cheaper
        hit = self._fold_cache.get(key)
        if hit is None:
            hit = self._fold_cache[key] = (self.fold_cycles(fold, fmt),
                                          tuple((k, v) for k, v in self.fold_actions(fold, fmt).items() if v))
        return hit

    # -- cost -----------------------------------------------------------------
    @property
    def peak_macs_per_cycle(self) -> int:
        return self.rows * self.cols

    def action_costs(self, em) -> dict[str, tuple[float, str]]:
        """{'component.action': (pJ per action, where the number came from)}."""
        raise NotImplementedError

    def area_um2(self, em) -> dict[str, tuple[float, str]]:
        """{component: (um^2, 'logic' | 'sram')}."""
        raise NotImplementedError

    # -- simulation -----------------------------------------------------------
    def execute(self, env, node):
        """Run one compute node. Most kinds are a closed-form fold: the event
        that fires after its cycles. A kind with internal units (its own
        SimPy processes and Stores) is instead a SimPy generator, and may
        return {unit: (busy, waiting for data, waiting for room) cycles},
        added to the layer's stats. At `fidelity: rows` the node runs on the
        PE rows as SimPy processes (archsim/hw/row_sim.py)."""
        if self.spec.fidelity == "rows":
            return execute_rows(self, env, node)
        return env.timeout(node["cycles"])
