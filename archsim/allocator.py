"""The static allocator: which tensors stay in which shared memory level.

Decided once per run, at tiling time, before any node exists. Private
buffers (`buffers:`) keep their tile-level reservations in the engine; this
module decides whole-tensor residency in the shared levels (`memory.levels`):

  weights, side data   the layer's own interval (re-reads within the layer
                       come from chip); the whole run with `pin_weights`
  activations          producer to last consumer, with `retain_activations`
                       (a network output is always written to DRAM)
  partial sums         the layer's interval, sized at the whole output at
                       accumulator width (an upper bound on what it spills)
  KV cache (kv)        persistent: the whole run, placed before anything
                       else; a kept one is on chip before the run and after
                       it (the caller, archsim.llm, may decide its level
                       across runs: TensorInfo.level)

A tensor is placed greedily in program order of its first use, in the
innermost level that serves its role and has room over its whole interval
(within the role's quota, if the level sets one); otherwise it lives in DRAM.
Nothing is evicted: a kept tensor keeps its room until its last use. A shared
level holds whole tensors only, so keeping a tensor never shrinks a private
buffer and the consumer's loop nest is the one it would be without it: its
DRAM traffic can only go down.

A tensor that is not kept moves between DRAM and the private buffers
directly (it does not stream through the shared level).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .config import ArchSpec

# Tensors filled from DRAM on their first touch; the others are produced on chip.
FROM_DRAM_ROLES = ("weights", "side")


@dataclass
class TensorPlan:
    """One tensor's residency decision."""
    name: str
    role: str          # weights | side | activations | psums
    bytes: int
    first: int         # first and last op index that use it
    last: int
    level: str = "dram"
    from_dram: bool = False  # its first touch reads it from DRAM (weights, side data, network inputs)
    keep: bool = True        # False: never kept (a network output goes to DRAM); `reason` says why
    reason: str = ""
    decided: bool = False    # placed (partial sums are placed when first spilled)
    forced: str | None = None  # the level the caller chose ('dram' or a level name), persistent tensors only

    def describe(self) -> dict:
        return {"name": self.name, "role": self.role, "bytes": self.bytes, "first_op": self.first,
                "last_op": self.last, "level": self.level, "reason": self.reason}


@dataclass
class Allocation:
    """Residency of every candidate tensor, and each level's static occupancy per op."""
    tensors: dict[str, TensorPlan] = field(default_factory=dict)
    occupancy: dict[str, list[int]] = field(default_factory=dict)  # level -> bytes held during each op
    capacity: dict[str, int] = field(default_factory=dict)
    by_role: dict = field(default_factory=dict)  # (level, role) -> bytes of that role held during each op
    arch: ArchSpec | None = None
    levels: list = field(default_factory=list)   # the shared levels, innermost first
    n_ops: int = 0

    def place(self, t: TensorPlan):
        """Keep `t` in the innermost level serving its role with room over its
        whole lifetime (within the role's quota), else leave it in DRAM with
        the reason."""
        self._decide(t, commit=True)

    def would_place(self, t: TensorPlan) -> str:
        return self._decide(t, commit=False)

    def _decide(self, t: TensorPlan, commit: bool) -> str:
        """The level `t` goes to ('dram' if none); with `commit`, record it."""
        mem, n_ops = self.arch.memory, self.n_ops
        if commit:
            t.decided = True
        if not t.keep:
            return "dram"
        if t.forced is not None:  # placed by the caller (a persistent tensor across runs)
            lv = next((lv for lv in self.levels if lv.name == t.forced), None)
            if lv is None:
                if commit:
                    t.reason = "kept in DRAM by the caller"
                return "dram"
            servers = [lv]
        elif t.role == "activations" and not mem.retain_activations:
            if commit:
                t.reason = "memory.retain_activations is off"
            return "dram"
        else:
            servers = [lv for lv in self.levels if t.role in lv.serves]
        if not servers:
            if commit:
                t.reason = f"no level serves {t.role}"
            return "dram"
        span = range(t.first, t.last + 1)
        why = []
        for lv in servers:
            occ = self.occupancy[lv.name]
            free = lv.capacity_bytes - max(occ[i] for i in span)
            role_occ = self.by_role.setdefault((lv.name, t.role), [0] * n_ops)
            quota = lv.quotas.get(t.role)
            if quota is not None:
                free = min(free, int(quota * lv.capacity_bytes) - max(role_occ[i] for i in span))
            else:
                # roles without a quota share what the quotas leave
                reserved = sum(int(q * lv.capacity_bytes) for q in lv.quotas.values())
                unquoted = [r for r in lv.serves if r not in lv.quotas]
                held = [sum(self.by_role.get((lv.name, r), [0] * n_ops)[i] for r in unquoted) for i in span]
                free = min(free, lv.capacity_bytes - reserved - max(held))
            if t.bytes <= free:
                if commit:
                    for i in span:
                        occ[i] += t.bytes
                        role_occ[i] += t.bytes
                    t.level = lv.name
                    t.reason = f"fits in {lv.name} over ops {t.first}..{t.last}"
                return lv.name
            why.append(f"{lv.name} has {max(free, 0):,} B free over ops {t.first}..{t.last}, needs {t.bytes:,} B")
        if commit:
            t.reason = "; ".join(why)
        return "dram"

    def level_of(self, name: str) -> str:
        t = self.tensors.get(name)
        return t.level if t is not None else "dram"

    def peak_bytes(self) -> dict[str, int]:
        return {lv: max(occ, default=0) for lv, occ in self.occupancy.items()}

    def check(self):
        """Peak occupancy within capacity at every level (the allocator's invariant)."""
        for lv, occ in self.occupancy.items():
            peak = max(occ, default=0)
            if peak > self.capacity[lv]:
                raise AssertionError(f"level {lv} holds {peak} B, over its {self.capacity[lv]} B")


def _levels_innermost_first(arch: ArchSpec) -> list:
    levels = list(arch.memory.levels)
    depth = {}
    parent = {lv.name: lv.parent for lv in levels}
    for lv in levels:
        d, cur = 0, lv.parent
        while cur != "dram":
            d, cur = d + 1, parent[cur]
        depth[lv.name] = d
    return sorted(levels, key=lambda lv: -depth[lv.name])


def allocate(candidates: list[TensorPlan], n_ops: int, arch: ArchSpec) -> Allocation:
    """Place `candidates` (in the order given: program order of first use).
    Partial sums are only registered: a layer's are placed when its nest
    first spills them (Allocation.place, from the Router), in the room the
    other tensors leave at that op, so a layer that never spills holds none."""
    alloc = Allocation(occupancy={lv.name: [0] * n_ops for lv in arch.memory.levels},
                       capacity={lv.name: lv.capacity_bytes for lv in arch.memory.levels},
                       arch=arch, levels=_levels_innermost_first(arch), n_ops=n_ops)
    for t in candidates:
        alloc.tensors[t.name] = t
        if t.role != "psums":
            alloc.place(t)
    return alloc


class Router:
    """Where each transfer of a tiled layer comes from or goes to, given the
    allocation: node attributes for the tiler. A tensor filled from DRAM
    (weights, side data, the network input) reads its first `bytes` from DRAM
    through the level that keeps it (staging it there) and every later byte
    from that level; a tensor produced on chip is written to and read from
    its level only."""

    def __init__(self, alloc: Allocation):
        self.alloc = alloc
        self.fetched: dict[str, int] = {}  # tensor -> bytes staged from DRAM so far

    def _plan(self, name: str | None) -> TensorPlan | None:
        t = self.alloc.tensors.get(name) if name else None
        if t is not None and not t.decided:
            self.alloc.place(t)
        return t

    def state(self, name: str) -> tuple:
        """What a layer's transfers of `name` depend on (the replay key); an
        undecided tensor (partial sums not spilled yet) stays undecided."""
        t = self.alloc.tensors.get(name)
        if t is not None and not t.decided:
            return ("if spilled", self.alloc.would_place(t), t.bytes)
        if t is None or t.level == "dram":
            return ("dram",)
        return (t.level, t.from_dram, t.bytes, self.fetched.get(name, 0))

    def load(self, name: str | None, nbytes: int, buf: str) -> dict:
        t = self._plan(name)
        if t is None or t.level == "dram":
            return {"bytes": nbytes, "tensor": name, "moves": (("dram", buf, nbytes),)}
        lv = t.level
        from_dram = 0
        if t.from_dram:
            from_dram = min(nbytes, max(0, t.bytes - self.fetched.get(name, 0)))
            self.fetched[name] = self.fetched.get(name, 0) + from_dram
        moves = ((("dram", lv, from_dram),) if from_dram else ()) + ((lv, buf, nbytes),)
        # staged bytes stream through the level (cut-through): such a load is
        # timed by the DRAM; a load wholly from the level by the level's port
        r = {"bytes": from_dram, "tensor": name, "moves": moves, "level_sram": (lv, nbytes, from_dram)}
        if not from_dram:
            r["src"], r["level_bytes"] = lv, nbytes
        return r

    def store(self, name: str | None, nbytes: int, buf: str = "output") -> dict:
        """Write `nbytes` of `name` from private buffer `buf` to where the tensor lives."""
        t = self._plan(name)
        if t is None or t.level == "dram":
            return {"bytes": nbytes, "tensor": name, "moves": ((buf, "dram", nbytes),)}
        return {"bytes": 0, "tensor": name, "moves": ((buf, t.level, nbytes),), "dst": t.level,
                "level_sram": (t.level, 0, nbytes), "level_bytes": nbytes}


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def op_tensors(ops: list, arch: ArchSpec, workload=None, fused=frozenset(),
               weight_reads: dict | None = None) -> tuple[list[TensorPlan], list[dict]]:
    """The candidate tensors of a run of operators (GEMM layers, and vector
    operators when the architecture runs them), in program order of first
    use, and per op the tensor each of its transfers moves: for a GEMM
    {'weight', 'input', 'output', 'psum'} -> name (for a matmul 'weight' is
    its second activation operand); for a vector op {'in0', 'in1', ...,
    'output'}.

    With the workload's DAG (`workload.tensors`, LayerSpec.inputs/output),
    activation lifetimes follow its edges. An operator this run does not
    simulate (no vector unit), or one fused into the write-back (`fused`,
    by name), adds no tensor: its output is its first input's tensor, and its
    other inputs are last used at the op it follows (where a fused write-back
    reads them). A plain list of layers is a chain: each reads the previous
    one's output. `weight_reads` ({op index: bytes its nest loads into the
    weight buffer}, from a dry run of its mapper) leaves in DRAM the weights
    a layer reads only once: keeping them would save no traffic.
    """
    # a tensor with a width of its own (a KV cache, scales included) may have fractional bits per element
    act_bytes = lambda elems, bits=None: _ceil_div(elems * arch.pe_array.act_bits, 8) if bits is None \
        else max(1, math.ceil(elems * bits / 8))
    acc_bits = getattr(arch.pe_array, "acc_bits", 32)
    n = len(ops)
    roles: list[dict] = [{} for _ in ops]
    cands: list[tuple[int, int, TensorPlan]] = []  # (first use, priority, plan)
    span_all = (0, n - 1)
    for i, L in enumerate(ops):
        if not hasattr(L, "fmt"):
            continue  # a vector op: no weights, no partial sums
        if L.op != "matmul":
            first, last = span_all if arch.memory.pin_weights else (i, i)
            name = f"{L.name}:weights"
            roles[i]["weight"] = name
            plan = TensorPlan(name, "weights", max(1, L.fmt.tile_bytes(L.n_weights)), first, last, from_dram=True)
            if weight_reads is not None and weight_reads.get(i, 0) <= plan.bytes:
                plan.keep, plan.reason = False, "read once by its layer's loop nest: keeping it saves no DRAM traffic"
            cands.append((first, 2, plan))
        name = f"{L.name}:psums"
        roles[i]["psum"] = name
        cands.append((i, 1, TensorPlan(name, "psums", _ceil_div(L.groups * L.M * L.N * acc_bits, 8), i, i,
                                       reason="never spilled: partial sums stay in the output buffer")))
    if workload is not None and getattr(workload, "tensors", None) and all(
            op.output for op in ops if hasattr(op, "fmt")):
        acts = _dag_activations(ops, workload, fused, act_bytes)
    else:
        acts = _chain_activations(ops, act_bytes)
    for name, (nbytes, first, last, is_input, is_output, readers) in acts.items():
        info = workload.tensors.get(name) if workload is not None and getattr(workload, "tensors", None) else None
        if info is not None and info.persistent:
            # a KV cache: there before the run and after it, placed first
            plan = TensorPlan(name, "kv", nbytes, 0, n - 1, forced=info.level)
            cands.append((-1, 0, plan))
        else:
            plan = TensorPlan(name, "activations", nbytes, first, last, from_dram=is_input)
            if is_output:
                plan.keep, plan.reason = False, "network output: written to DRAM"
            cands.append((first, 0, plan))
        for i, role in readers:
            roles[i][role] = name
    cands.sort(key=lambda c: (c[0], c[1]))
    return [c[2] for c in cands], roles


def _chain_activations(layers, act_bytes) -> dict:
    out = {}
    prev = "input"
    for i, L in enumerate(layers):
        in_elems = L.in_elems if L.in_elems is not None else L.groups * L.M * L.K
        if prev == "input":
            out["input"] = [act_bytes(in_elems), i, i, True, False, [(i, "input")]]
        else:
            out[prev][2] = i
            out[prev][5].append((i, "input"))
        name = f"{L.name}:out"
        out[name] = [act_bytes(L.groups * L.M * L.N), i, i, False, i == len(layers) - 1, [(i, "output")]]
        prev = name
    return {k: tuple(v) for k, v in out.items()}


def _dag_activations(ops, wl, fused, act_bytes) -> dict:
    index = {op.name: i for i, op in enumerate(ops) if op.name not in fused}  # ops that write a tensor
    every = list(getattr(wl, "ops", ops))
    by_name = {op.name: op for op in every}
    # the simulated op each aliased operator (unsimulated or fused) follows in program order
    after: dict[str, int] = {}
    last = 0
    for op in every:
        if op.name in index:
            last = index[op.name]
        else:
            after[op.name] = last

    def root(t: str) -> str:
        info = wl.tensors.get(t)
        while info is not None and not info.persistent and info.producer is not None \
                and info.producer not in index:
            op = by_name[info.producer]
            if not op.inputs:
                break
            t = op.inputs[0]
            info = wl.tensors.get(t)
        return t

    out: dict[str, list] = {}

    def entry(r: str) -> list:
        if r not in out:
            info = wl.tensors[r]
            is_input = info.producer is None or info.producer not in index
            first = index[info.producer] if not is_input else len(ops)
            out[r] = [act_bytes(info.elems, info.bits), first, first if not is_input else -1, is_input, False, []]
        return out[r]

    for op in every:
        if op.name in index:
            i = index[op.name]
            gemm = hasattr(op, "fmt")
            for k, t in enumerate(op.inputs[:2] if gemm else op.inputs):
                e = entry(root(t))
                e[1] = min(e[1], i)
                e[2] = max(e[2], i)
                e[5].append((i, ("input" if k == 0 else "weight") if gemm else f"in{k}"))
            entry(root(op.output))[5].append((i, "output"))
        else:
            for t in op.inputs[1:]:
                e = entry(root(t))
                e[2] = max(e[2], after[op.name])
    for name, info in wl.tensors.items():
        if info.persistent and name not in out:  # held all run, read by no op here (another layer's cache)
            out[name] = [act_bytes(info.elems, info.bits), 0, len(ops) - 1, True, False, []]
    for t in getattr(wl, "outputs", ()):
        r = root(t)
        if r in out:
            out[r][4] = True
    for e in out.values():
        e[2] = max(e[2], e[1])
    return {k: tuple(v) for k, v in out.items()}


class AddressSpace:
    """DRAM addresses of the tensors of one run (with a DRAM model that has
    banks): each tensor gets a base in one address space on first use, at a
    row (8 KiB) boundary, and its tiles follow each other from that base in
    the order the nest moves them, wrapping at the tensor's size (a re-read
    tile is read again from where it lies). Layouts: weights [N][K]
    row-major, one row per output channel (a tile covering part of the
    reduction is strided, LayerTiler.load(rows=...)); activations NHWC,
    moved in whole rows of pixels (sequential). Sizes come from the
    allocator's candidates; a tensor it does not know is sized by its first
    transfer."""

    ALIGN = 8192

    def __init__(self, sizes: dict[str, int]):
        self.sizes = dict(sizes)
        self.base: dict[str, int] = {}
        self.offset: dict[str, int] = {}
        self.top = 0

    def next(self, name: str, nbytes: int) -> int:
        """The address of the next `nbytes` of tensor `name`."""
        if name not in self.base:
            size = max(self.sizes.get(name, nbytes), nbytes, 1)
            self.sizes[name] = size
            self.base[name] = self.top
            self.top += -(-size // self.ALIGN) * self.ALIGN
            self.offset[name] = 0
        off = self.offset[name]
        self.offset[name] = (off + nbytes) % self.sizes[name]
        return self.base[name] + off
