"""Energy and area: Stats counts times the per-action costs of an energy table.

The table is a CSV (columns entry, unit, value, area_um2, source, note); the
packaged one is archsim/data/energy_45nm.csv. Every row keeps its `source`,
and `EnergyModel.unit_costs()` lists each derived per-action cost with the
rows it came from, so a report can say where every picojoule came from.

What is priced (per layer, from LayerStats), as energy components:
  dram          DRAM bytes read + written
  sram_<buf>    on-chip reads and writes of the weight / input / output buffers
  <component>   every named action 'component.action' a component performed
                (e.g. pe_arith.mac, registers.mac, codebook.read, decoder.sign),
                at the cost its component declares (`action_costs`): the PE
                kind, the codebook buffer and the decoder each price their own
  static        leakage and clock power of every component, proportional to
                its area and the layer's time (rows static_logic / static_sram
                in mW/mm^2; not priced when the table lacks them)
Not priced: the NoC / wires between buffers and PEs; control logic.
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

from .config import ArchSpec
from .ir.errors import ArchsimError

DEFAULT_TABLE = Path(__file__).resolve().parent / "data" / "energy_45nm.csv"
COLUMNS = ("entry", "unit", "value", "area_um2", "source", "note")

# The packaged table's node: its CACTI 7 rows are 45 nm itrs-lstp and its
# Horowitz rows are 45 nm (ISSCC 2014). `register_1b` is Aladdin's 40 nm figure
# and is used as is (within ~10% of 45 nm by feature size). A table for another
# node declares it in a row `technology_node,nm,<N>,...`.
DEFAULT_NODE_NM = 45

BUFFERS = ("weight", "input", "output")
MEMORY_COMPONENTS = ("dram", "sram_weight", "sram_input", "sram_output")
STATIC = "static"

_SRAM_ROW = re.compile(r"^cacti7_sram_(\d+)(KB|MB)_read_64b$")
_SRAM_UNIT_BYTES = {"KB": 1024, "MB": 1024 * 1024}
_WRITE_NOTE = re.compile(r"write\s+([0-9]*\.?[0-9]+)\s*pJ")
# CACTI rows are for a 64-bit word; other widths are scaled linearly.
_SRAM_ROW_WORD_BITS = 64


def _number(text: str) -> Optional[float]:
    """A float, or None for the rows that hold a range ("1300-2600") or a ratio
    string: they stay in the table (with their source) but cannot be priced."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class EnergyEntry:
    entry: str
    unit: str
    value: Optional[float]   # None where the CSV holds a range or a ratio
    area_um2: Optional[float]
    source: str
    note: str
    raw_value: str


class EnergyTable:
    """The rows of one energy CSV, by entry name."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        p = Path(path)
        if not p.is_file():
            raise ArchsimError("energy table not found", file=self.path, field="energy.table")
        try:
            with p.open(newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
                if missing:
                    raise ArchsimError(f"energy table lacks column(s) {', '.join(missing)} "
                                       f"(need {','.join(COLUMNS)})", file=self.path, field=missing[0])
                rows = list(reader)
        except (UnicodeDecodeError, csv.Error) as e:
            raise ArchsimError(f"unreadable energy table ({e})", file=self.path, field="energy.table") from None
        self.entries: dict[str, EnergyEntry] = {}
        for line, r in enumerate(rows, start=2):
            name = (r["entry"] or "").strip()
            if not name:
                continue
            if name in self.entries:
                raise ArchsimError(f"entry repeated on line {line}", file=self.path, field=name)
            raw = (r["value"] or "").strip()
            self.entries[name] = EnergyEntry(entry=name, unit=(r["unit"] or "").strip(), value=_number(raw),
                                             area_um2=_number((r["area_um2"] or "").strip()),
                                             source=(r["source"] or "").strip(), note=(r["note"] or "").strip(),
                                             raw_value=raw)
        self.node_nm = (self.value("technology_node", "nm") if "technology_node" in self.entries
                        else DEFAULT_NODE_NM)

    @classmethod
    def load(cls, path: str | Path) -> "EnergyTable":
        return cls(path)

    @classmethod
    def default(cls) -> "EnergyTable":
        return cls(DEFAULT_TABLE)

    @classmethod
    def for_arch(cls, arch: ArchSpec) -> "EnergyTable":
        """arch.energy.table: 'default', or a path; a relative path is looked up
        beside the architecture YAML first, then from the working directory."""
        name = arch.energy.table
        if name == "default":
            return cls.default()
        p = Path(name)
        if not p.is_absolute() and arch.path:
            beside = Path(arch.path).parent / p
            if beside.is_file():
                p = beside
        if not p.is_file():
            raise ArchsimError(f"energy table {name!r} not found", file=arch.path, field="energy.table")
        return cls(p)

    def entry(self, name: str) -> EnergyEntry:
        try:
            return self.entries[name]
        except KeyError:
            raise ArchsimError("energy table has no such entry", file=self.path, field=name) from None

    def value(self, name: str, unit: str) -> float:
        """The row's value, checked to be a number in `unit` (a table that
        gives pJ/access where pJ/bit is expected would be off by 64x)."""
        e = self.entry(name)
        if e.unit != unit:
            raise ArchsimError(f"unit is {e.unit!r}, expected {unit!r}", file=self.path, field=name)
        if e.value is None:
            raise ArchsimError(f"value {e.raw_value!r} is not a number", file=self.path, field=name)
        return e.value

    def area(self, name: str) -> float:
        e = self.entry(name)
        if e.area_um2 is None:
            raise ArchsimError("no area_um2 given", file=self.path, field=name)
        return e.area_um2

    def write_pj(self, name: str) -> float:
        """CACTI write energy, which the table keeps in the note ("write X pJ")."""
        m = _WRITE_NOTE.search(self.entry(name).note)
        if m is None:
            raise ArchsimError("note lacks the write energy ('write X pJ')", file=self.path, field=name)
        return float(m.group(1))

    def sram_rows(self) -> list[tuple[int, str]]:
        """(capacity_bytes, entry name) of the CACTI SRAM rows, smallest first."""
        rows = sorted((int(m.group(1)) * _SRAM_UNIT_BYTES[m.group(2)], name)
                      for name in self.entries if (m := _SRAM_ROW.match(name)))
        if not rows:
            raise ArchsimError("energy table has no CACTI SRAM rows", file=self.path,
                               field="cacti7_sram_<size>_read_64b")
        return rows


def interp_loglog(x: float, xs: list[float], ys: list[float]) -> float:
    """Piecewise-linear interpolation of log(y) over log(x), clamped to the
    end values outside [xs[0], xs[-1]]. SRAM energy and area follow a power
    law in capacity between CACTI points (a straight line on log-log axes);
    clamping avoids extrapolating a power law past the data (a buffer above
    the largest row is under-estimated, one below the smallest over-estimated)."""
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    i = next(j for j in range(1, len(xs)) if x <= xs[j])
    t = (math.log(x) - math.log(xs[i - 1])) / (math.log(xs[i]) - math.log(xs[i - 1]))
    return math.exp(math.log(ys[i - 1]) + t * (math.log(ys[i]) - math.log(ys[i - 1])))


def node_scale(from_nm: float, to_nm: float, kind: str) -> float:
    """Factor taking an energy or area figure from one technology node to
    another, by the first-order (constant-voltage) rule: dynamic energy
    C*V^2 with C proportional to feature size -> x(to/from); area
    proportional to feature size squared -> x(to/from)^2. It is only allowed
    between nearby nodes (within 1.5x), where the rule is closest to fitted
    data. For 45 -> 40 nm it gives energy x0.889 and area x0.790; the fitted
    coefficients of Stillmaker & Baas (as coded in Accelergy's hwcomponents
    techscaling.py, at 0.8 V, interpolated linearly between 45 and 32 nm)
    give x0.869 and x0.792, within 2%. Stillmaker & Baas ("Scaling equations for the accurate prediction of
    CMOS device performance from 180 nm to 7 nm", Integration 58, 2017) show
    the simple rules off by up to about 2x in energy below 28 nm. DRAM rows
    are never scaled (a separate chip)."""
    if kind not in ("energy", "area"):
        raise ValueError(f"kind must be 'energy' or 'area', got {kind!r}")
    ratio = to_nm / from_nm
    if not (1 / 1.5 <= ratio <= 1.5):
        raise ArchsimError(f"the energy table is for {from_nm:g} nm; archsim scales between nearby nodes only "
                           f"(within 1.5x), not to {to_nm:g} nm: use a table for {to_nm:g} nm (with a row "
                           f"'technology_node,nm,{to_nm:g},...')", field="energy.node_nm")
    return ratio if kind == "energy" else ratio * ratio


class EnergyModel:
    """Prices the counts of a LayerStats with one energy table for one ArchSpec."""

    def __init__(self, arch: ArchSpec, table: EnergyTable | None = None):
        from .hw.registry import create, lookup

        self.arch = arch
        self.table = table if table is not None else EnergyTable.for_arch(arch)
        try:
            self._energy_scale = node_scale(self.table.node_nm, arch.energy.node_nm, "energy")
            self._area_scale = node_scale(self.table.node_nm, arch.energy.node_nm, "area")
        except ArchsimError as e:
            raise ArchsimError(e.message, file=arch.path, field=e.field) from None
        self.scaling_note = "" if self.table.node_nm == arch.energy.node_nm else (
            f"scaled from the table's {self.table.node_nm:g} nm to {arch.energy.node_nm:g} nm: "
            f"energy x{self._energy_scale:.3f}, area x{self._area_scale:.3f} (archsim.energy.node_scale)")
        # Per-action costs are worked out once (each raises if its rows are missing).
        self._costs: dict[str, tuple[float, str, str]] = {}  # name -> (value, unit, where from)
        t = self.table

        # DRAM: pJ/bit of row dram_<type> (Accelergy's CACTI plug-in DRAM
        # table), unless the architecture gives its own figure. Reads and
        # writes cost the same: the table has one number per DRAM type.
        # Not node-scaled: DRAM is a separate chip.
        # A DRAM kind that prices its own commands (banked_dram) says its pJ/bit.
        if hasattr(arch.dram, "energy_pj_per_bit_from_commands"):
            v, where = arch.dram.energy_pj_per_bit_from_commands()
            self._cost("dram_pj_per_bit", v, "pJ/bit", where, node_scaled=False)
        elif arch.dram.energy_pj_per_bit is not None:
            self._cost("dram_pj_per_bit", arch.dram.energy_pj_per_bit, "pJ/bit",
                       f"architecture dram.energy_pj_per_bit ({arch.dram.source or 'no source given'})",
                       node_scaled=False)
        else:
            row = f"dram_{arch.dram.type}"
            self._cost("dram_pj_per_bit", t.value(row, "pJ/bit"), "pJ/bit", self.src(row), node_scaled=False)

        # SRAM buffers: CACTI 7 per-access energy interpolated by capacity,
        # scaled by word_bits / 64 (the rows are 64-bit accesses; energy per
        # access grows with the bitlines switched). One array of the full
        # capacity per buffer: double buffering is two logical halves of one
        # array (ports: 2), not two smaller banks. Port count is not priced.
        # Every memory level prices its accesses: the private buffers and the
        # shared levels (memory.levels), by name.
        self.levels = {buf: getattr(arch.buffers, buf) for buf in BUFFERS}
        self.levels.update({lv.name: lv for lv in arch.memory.levels})
        if arch.vector_unit is not None:  # the vector unit's double-buffered operand buffer
            self.levels["vector"] = SimpleNamespace(capacity_bytes=2 * arch.vector_unit.buffer_bytes, word_bits=64)
        for buf, spec in self.levels.items():
            self._cost(f"sram_{buf}_read_pj", self.sram_read_pj(spec.capacity_bytes, spec.word_bits),
                       "pJ/access", self.sram_src(spec.capacity_bytes, spec.word_bits, "read"))
            self._cost(f"sram_{buf}_write_pj", self.sram_write_pj(spec.capacity_bytes, spec.word_bits),
                       "pJ/access", self.sram_src(spec.capacity_bytes, spec.word_bits, "write"))

        # Every other component prices its own named actions and states its area.
        self.pe = create("pe_array", arch.pe_array.kind, arch.pe_array, arch, source=arch.path, field="pe_array.kind")
        actions = dict(self.pe.action_costs(self))
        area = dict(self.pe.area_um2(self))
        if arch.codebook is not None:
            cb_cls = lookup("codebook", arch.codebook.kind)
            actions.update(cb_cls.action_costs(self, arch.codebook))
            area.update(cb_cls.area_um2(self, arch.codebook))
            if arch.decoder is not None:
                dec_cls = lookup("decoder", arch.decoder.kind)
                actions.update(dec_cls.action_costs(self, arch.decoder, arch.codebook))
                area.update(dec_cls.area_um2(self, arch.decoder, arch.codebook))
        if arch.vector_unit is not None:
            vu_cls = lookup("vector_unit", arch.vector_unit.kind)
            actions.update(vu_cls.action_costs(self, arch.vector_unit))
            area.update(vu_cls.area_um2(self, arch.vector_unit))
        self._actions = {}
        for name, (pj, where) in actions.items():
            self._cost(name, pj, "pJ/action", where)
            self._actions[name] = self._costs[name][0]
        for buf, spec in self.levels.items():
            area[f"sram_{buf}"] = (self.sram_area_um2(spec.capacity_bytes), "sram")
        self._area = {k: (v * self._area_scale, kind) for k, (v, kind) in area.items()}
        # energy components in a fixed order: memories, then each action's component, then static
        comps = list(MEMORY_COMPONENTS) + [f"sram_{name}" for name in self.levels if name not in BUFFERS]
        for name in actions:
            c = name.split(".", 1)[0]
            if c not in comps:
                comps.append(c)
        self.components = tuple(comps) + (STATIC,)

        # Static power: each component's area x the density of its kind of circuit.
        density = {}
        for kind in ("logic", "sram"):
            row = f"static_{kind}"
            if row not in t.entries:
                self._cost(f"static_{kind}_mw_per_mm2", 0.0, "mW/mm^2", f"not priced: the table has no row {row}",
                           node_scaled=False)
                density[kind] = 0.0
                continue
            density[kind] = t.value(row, "mW/mm^2")
            self._cost(f"static_{kind}_mw_per_mm2", density[kind], "mW/mm^2", self.src(row), node_scaled=False)
        self.static_mw_by_component = {c: a / 1e6 * density[kind] for c, (a, kind) in self._area.items()}
        self._static_mw = sum(self.static_mw_by_component.values())

    def src(self, row: str) -> str:
        """'row: its source', for a cost derived from one table row."""
        return f"{row}: {self.table.entry(row).source}"

    def sram_src(self, capacity_bytes: int, word_bits: int, action: str) -> str:
        rows = self.table.sram_rows()
        return (f"{action} energy of the {rows[0][1]}..{rows[-1][1]} rows interpolated at {capacity_bytes} B, "
                f"x{word_bits}/64 ({self.table.entry(rows[0][1]).source})")

    def _cost(self, name: str, value: float, unit: str, where: str, node_scaled: bool = True):
        # the one place where table energies are taken to the architecture's node
        if node_scaled and self.scaling_note:
            where = f"{where}; {self.scaling_note}"
        self._costs[name] = (value * self._energy_scale if node_scaled else value, unit, where)

    def _c(self, name: str) -> float:
        return self._costs[name][0]

    # -- SRAM interpolation ---------------------------------------------------
    def _sram(self, capacity_bytes: float, value_of) -> float:
        rows = self.table.sram_rows()
        return interp_loglog(capacity_bytes, [c for c, _ in rows], [value_of(name) for _, name in rows])

    def sram_read_pj(self, capacity_bytes: int, word_bits: int = _SRAM_ROW_WORD_BITS) -> float:
        """Energy of one read of `word_bits` from an SRAM of `capacity_bytes`
        (at the table's node, like the other table helpers)."""
        e64 = self._sram(capacity_bytes, lambda n: self.table.value(n, "pJ/access"))
        return e64 * word_bits / _SRAM_ROW_WORD_BITS

    def sram_write_pj(self, capacity_bytes: int, word_bits: int = _SRAM_ROW_WORD_BITS) -> float:
        """Energy of one write of `word_bits` to an SRAM of `capacity_bytes`."""
        return self._sram(capacity_bytes, self.table.write_pj) * word_bits / _SRAM_ROW_WORD_BITS

    def sram_area_um2(self, capacity_bytes: int) -> float:
        """CACTI area interpolated by capacity; the word width is not scaled
        (same bit count; only the periphery changes). Above the largest row a
        memory is built of banks of that row: its area grows with capacity
        (an access still costs one bank's energy)."""
        largest, row = self.table.sram_rows()[-1]
        if capacity_bytes > largest:
            return self.table.area(row) * capacity_bytes / largest
        return self._sram(capacity_bytes, self.table.area)

    # -- small logic built from the table's gate rows --------------------------
    def mux_pj(self, ways: int, bits: int) -> tuple[float, str]:
        """A ways:1 multiplexer of `bits` bits is a tree of (ways-1) 2:1 muxes per bit."""
        n = (ways - 1) * bits
        return (self.table.value("mux2_1b", "pJ/op") * n,
                f"mux2_1b x (ways-1)*bits = x{n} ({self.src('mux2_1b')})")

    def mux_area_um2(self, ways: int, bits: int) -> float:
        return self.table.area("mux2_1b") * (ways - 1) * bits

    def lzc_pj(self, bits: int) -> tuple[float, str]:
        """A leading-zero counter over `bits` bits (priority encoder)."""
        return (self.table.value("lzc_8b", "pJ/op") * bits / 8, f"lzc_8b x{bits}/8 ({self.src('lzc_8b')})")

    def lzc_area_um2(self, bits: int) -> float:
        return self.table.area("lzc_8b") * bits / 8

    # -- energy ---------------------------------------------------------------
    def unit_costs(self) -> list[dict]:
        """Every per-action cost this model uses, with where it came from."""
        return [{"name": k, "value": v, "unit": u, "source": s} for k, (v, u, s) in self._costs.items()]

    @property
    def static_power_mw(self) -> float:
        return self._static_mw

    def layer_energy_pj(self, ls) -> dict[str, float]:
        """Per-component energy (pJ) of one LayerStats: every key of
        self.components, 0.0 where a component did nothing. The total is the sum."""
        e = dict.fromkeys(self.components, 0.0)
        e["dram"] = (ls.dram_read_bytes + ls.dram_write_bytes) * 8 * self._c("dram_pj_per_bit")
        for buf in set(ls.sram_read_bytes) | set(ls.sram_write_bytes):
            if buf not in self.levels:
                raise ArchsimError(f"bytes were counted at memory {buf!r}, which no level of this "
                                   "architecture prices", file=self.arch.path, field="memory.levels")
        for buf, spec in self.levels.items():
            word_bits = spec.word_bits
            # accesses = bytes / word bytes, rounded up over the layer's total
            reads = math.ceil(ls.sram_read_bytes.get(buf, 0) * 8 / word_bits)
            writes = math.ceil(ls.sram_write_bytes.get(buf, 0) * 8 / word_bits)
            e[f"sram_{buf}"] = reads * self._c(f"sram_{buf}_read_pj") + writes * self._c(f"sram_{buf}_write_pj")
        for name, count in ls.actions.items():
            try:
                pj = self._actions[name]
            except KeyError:
                raise ArchsimError(f"no component of this architecture prices action {name!r}",
                                   file=self.arch.path, field=name.split(".", 1)[0]) from None
            e[name.split(".", 1)[0]] += count * pj
        # mW x cycles / MHz = 1e-3 W x 1e-6 s x 1e12 pJ/J per (cycle/MHz)
        e[STATIC] = self._static_mw * ls.total_cycles * 1e3 / self.arch.clock_mhz
        return e

    # -- area -----------------------------------------------------------------
    def area_um2(self) -> dict[str, float]:
        """Area per component and 'total' (um^2): the PE kind's own (its
        arithmetic and registers), buffers and codebook from CACTI 7, the
        decoder's lanes."""
        a = {k: v for k, (v, _) in self._area.items()}
        a["total"] = sum(a.values())
        return a
