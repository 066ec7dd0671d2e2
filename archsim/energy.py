"""Energy and area: Stats counts times the per-action costs of an energy table.

The table is a CSV (columns entry, unit, value, area_um2, source, note); the
packaged one is archsim/data/energy_45nm.csv, a copy of
../shared/reference/energy_45nm.csv. Every row keeps its `source`, and
`EnergyModel.unit_costs()` lists each derived per-action cost with the rows it
came from, so a report can say where every picojoule came from.

What is priced (per layer, from LayerStats):
  dram         DRAM bytes read + written
  sram_<buf>   on-chip reads and writes of the weight / input / output buffers
  codebook     codebook reads (one per lookup) and writes (codebook loads)
  decoder      latching each looked-up codeword
  pe_arith     one multiply and one accumulate per useful MAC
  registers    PE pipeline registers moved per MAC
Not priced: static (leakage) and clock-tree energy, so a stall cycle costs
nothing; the NoC / wires between buffers and PEs; control logic.
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .config import ArchSpec
from .errors import ArchsimError

DEFAULT_TABLE = Path(__file__).resolve().parent / "data" / "energy_45nm.csv"
COLUMNS = ("entry", "unit", "value", "area_um2", "source", "note")

# The packaged table's node: its CACTI 7 rows are 45 nm itrs-lstp and its
# Horowitz rows are 45 nm (ISSCC 2014). `register_1b` is Aladdin's 40 nm figure
# and is used as is (within ~10% of 45 nm by feature size). A table for another
# node declares it in a row `technology_node,nm,<N>,...`.
DEFAULT_NODE_NM = 45

ENERGY_COMPONENTS = ("dram", "sram_weight", "sram_input", "sram_output", "codebook", "decoder", "pe_arith",
                     "registers")
AREA_COMPONENTS = ("pe_array", "sram_weight", "sram_input", "sram_output", "codebook", "decoder")
BUFFERS = ("weight", "input", "output")

_SRAM_ROW = re.compile(r"^cacti7_sram_(\d+)(KB|MB)_read_64b$")
_SRAM_UNIT_BYTES = {"KB": 1024, "MB": 1024 * 1024}
_WRITE_NOTE = re.compile(r"write\s+([0-9]*\.?[0-9]+)\s*pJ")
# CACTI rows are for a 64-bit word; other widths are scaled linearly.
_SRAM_ROW_WORD_BITS = 64
_CODEBOOK_FLOOR_BYTES = 1024


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


def scale_to_node(value: float, from_nm: float, to_nm: float, kind: str) -> float:
    """Scale an energy or area figure from one technology node to another.

    Only the identity is supported: from_nm must equal to_nm. Why not a rule
    of thumb: the first-order rules (energy ~ node at a fixed supply voltage,
    area ~ node^2) disagree with fitted scaling data (Stillmaker & Baas,
    "Scaling equations for the accurate prediction of CMOS device performance
    from 180 nm to 7 nm", Integration 58, 2017) by up to about 2x in energy
    below 28 nm and about 1.4x in area at 65 nm, and the DRAM rows do not
    scale with the logic node at all. A silently scaled number that is off 2x
    would decide a design-space comparison; a table measured at the target
    node (with a `technology_node` row) is the honest way to model it."""
    if kind not in ("energy", "area"):
        raise ValueError(f"kind must be 'energy' or 'area', got {kind!r}")
    if from_nm != to_nm:
        raise ArchsimError(f"the energy table is for {from_nm:g} nm and archsim does not scale {kind} between "
                           f"technology nodes; use a table for {to_nm:g} nm (with a row "
                           f"'technology_node,nm,{to_nm:g},...') or set energy.node_nm to {from_nm:g}",
                           field="energy.node_nm")
    return value


class EnergyModel:
    """Prices the counts of a LayerStats with one energy table for one ArchSpec."""

    def __init__(self, arch: ArchSpec, table: EnergyTable | None = None):
        self.arch = arch
        self.table = table if table is not None else EnergyTable.for_arch(arch)
        try:
            self._energy_scale = scale_to_node(1.0, self.table.node_nm, arch.energy.node_nm, "energy")
            self._area_scale = scale_to_node(1.0, self.table.node_nm, arch.energy.node_nm, "area")
        except ArchsimError as e:
            raise ArchsimError(e.message, file=arch.path, field=e.field) from None
        # Per-action costs are worked out once (each raises if its rows are missing).
        self._costs: dict[str, tuple[float, str, str]] = {}  # name -> (value, unit, where from)
        t, pe = self.table, arch.pe_array

        # DRAM: pJ/bit of row dram_<type> (Accelergy's CACTI plug-in DRAM
        # table), unless the architecture gives its own figure. Reads and
        # writes cost the same: the table has one number per DRAM type.
        # Not node-scaled: DRAM is a separate chip.
        if arch.dram.energy_pj_per_bit is not None:
            self._cost("dram_pj_per_bit", arch.dram.energy_pj_per_bit, "pJ/bit",
                       f"architecture dram.energy_pj_per_bit ({arch.dram.source or 'no source given'})",
                       node_scaled=False)
        else:
            row = f"dram_{arch.dram.type}"
            self._cost("dram_pj_per_bit", t.value(row, "pJ/bit"), "pJ/bit", self._src(row), node_scaled=False)

        # SRAM buffers: CACTI 7 per-access energy interpolated by capacity,
        # scaled by word_bits / 64 (the rows are 64-bit accesses; energy per
        # access grows with the bitlines switched). One array of the full
        # capacity per buffer: double buffering is two logical halves of one
        # array (ports: 2), not two smaller banks. Port count is not priced.
        for buf in BUFFERS:
            spec = getattr(arch.buffers, buf)
            self._cost(f"sram_{buf}_read_pj", self.sram_read_pj(spec.capacity_bytes, spec.word_bits),
                       "pJ/access", self._sram_src(spec.capacity_bytes, spec.word_bits, "read"))
            self._cost(f"sram_{buf}_write_pj", self.sram_write_pj(spec.capacity_bytes, spec.word_bits),
                       "pJ/access", self._sram_src(spec.capacity_bytes, spec.word_bits, "write"))

        # PE arithmetic per MAC. An array multiplier's energy grows with the
        # product of its operand widths (its partial-product array is w x a
        # full adders), so int8_mult is scaled by (w * a) / (8 * 8); a
        # ripple/carry-select adder's grows with its width, so int32_add by
        # acc_bits / 32. Both rows: Horowitz, ISSCC 2014, 45 nm.
        mult = t.value("int8_mult", "pJ/op") * pe.weight_bits * pe.act_bits / 64
        add = t.value("int32_add", "pJ/op") * pe.acc_bits / 32
        self._cost("mac_pj", mult + add, "pJ/MAC",
                   f"int8_mult x{pe.weight_bits}*{pe.act_bits}/64 + int32_add x{pe.acc_bits}/32 "
                   f"({self._src('int8_mult')}; {self._src('int32_add')})")

        # Registers: every MAC moves an activation into the next PE's register
        # and a partial sum into an accumulator register (act_bits + acc_bits
        # flip-flops). Stationary weights are latched once per fold and not
        # counted. Row register_1b: Aladdin 40 nm.
        reg = t.value("register_1b", "pJ/access")
        self._cost("register_pj_per_bit", reg, "pJ/bit", self._src("register_1b"))
        self._cost("registers_per_mac_pj", reg * (pe.act_bits + pe.acc_bits), "pJ/MAC",
                   f"register_1b x (act_bits + acc_bits) = x{pe.act_bits + pe.acc_bits}")

        # Codebook: a register file of entries x width_bits, priced as an SRAM
        # of that capacity (CACTI rows, the 1 KB row as the floor: CACTI has no
        # smaller point), scaled by width_bits / 64: one read per lookup, one
        # write per codeword loaded.
        # Decoder: per lookup, width_bits of register_1b (latching one codeword
        # into the lane that expands it).
        cb = arch.codebook
        if cb is not None:
            cap = max(_CODEBOOK_FLOOR_BYTES, math.ceil(cb.entries * cb.width_bits / 8))
            self._cost("codebook_read_pj", self.sram_read_pj(cap, cb.width_bits), "pJ/lookup",
                       self._sram_src(cap, cb.width_bits, "read"))
            self._cost("codebook_write_pj", self.sram_write_pj(cap, cb.width_bits), "pJ/codeword",
                       self._sram_src(cap, cb.width_bits, "write"))
            if arch.decoder is not None:
                self._cost("decoder_pj", reg * cb.width_bits, "pJ/lookup", f"register_1b x width_bits {cb.width_bits}")

    def _src(self, row: str) -> str:
        return f"{row}: {self.table.entry(row).source}"

    def _sram_src(self, capacity_bytes: int, word_bits: int, action: str) -> str:
        rows = self.table.sram_rows()
        return (f"{action} energy of the {rows[0][1]}..{rows[-1][1]} rows interpolated at {capacity_bytes} B, "
                f"x{word_bits}/64 ({self.table.entry(rows[0][1]).source})")

    def _cost(self, name: str, value: float, unit: str, where: str, node_scaled: bool = True):
        # the one place where table energies are taken to the architecture's node
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
        (same bit count; only the periphery changes)."""
        return self._sram(capacity_bytes, self.table.area)

    # -- energy ---------------------------------------------------------------
    def unit_costs(self) -> list[dict]:
        """Every per-action cost this model uses, with where it came from."""
        return [{"name": k, "value": v, "unit": u, "source": s} for k, (v, u, s) in self._costs.items()]

    def layer_energy_pj(self, ls) -> dict[str, float]:
        """Per-component energy (pJ) of one LayerStats; all ENERGY_COMPONENTS
        keys, 0.0 where a component is absent. The total is the sum."""
        e = dict.fromkeys(ENERGY_COMPONENTS, 0.0)
        e["dram"] = (ls.dram_read_bytes + ls.dram_write_bytes) * 8 * self._c("dram_pj_per_bit")
        for buf in BUFFERS:
            word_bits = getattr(self.arch.buffers, buf).word_bits
            # accesses = bytes / word bytes, rounded up over the layer's total
            reads = math.ceil(ls.sram_read_bytes.get(buf, 0) * 8 / word_bits)
            writes = math.ceil(ls.sram_write_bytes.get(buf, 0) * 8 / word_bits)
            e[f"sram_{buf}"] = reads * self._c(f"sram_{buf}_read_pj") + writes * self._c(f"sram_{buf}_write_pj")
        if self.arch.codebook is not None:
            e["codebook"] = (ls.codebook_lookups * self._c("codebook_read_pj")
                             + self._codewords_loaded(ls) * self._c("codebook_write_pj"))
            if self.arch.decoder is not None:
                e["decoder"] = ls.codebook_lookups * self._c("decoder_pj")
        e["pe_arith"] = ls.macs * self._c("mac_pj")
        e["registers"] = ls.macs * self._c("registers_per_mac_pj")
        return e

    def _codewords_loaded(self, ls) -> int:
        """Codewords written into the codebook: per load, the layer's k codewords
        per codebook (from its format summary), else the whole codebook."""
        if not ls.codebook_loads:
            return 0
        fmt = ls.meta.get("format", {})
        per_load = fmt.get("k", self.arch.codebook.entries) * fmt.get("n_codebooks", 1)
        return ls.codebook_loads * per_load

    # -- area -----------------------------------------------------------------
    def area_um2(self) -> dict[str, float]:
        """Area per component and 'total' (um^2). Logic from Horowitz 45 nm
        areas (mult scaled by w*a/64, adder by acc/32 as for energy) plus
        Aladdin's register area per flip-flop; buffers from CACTI 7."""
        t, pe, arch = self.table, self.arch.pe_array, self.arch
        reg = t.area("register_1b")
        per_pe = (t.area("int8_mult") * pe.weight_bits * pe.act_bits / 64
                  + t.area("int32_add") * pe.acc_bits / 32
                  + (pe.weight_bits + pe.act_bits + pe.acc_bits) * reg)
        a = dict.fromkeys(AREA_COMPONENTS, 0.0)
        a["pe_array"] = pe.rows * pe.cols * per_pe
        for buf in BUFFERS:
            a[f"sram_{buf}"] = self.sram_area_um2(getattr(arch.buffers, buf).capacity_bytes)
        if arch.codebook is not None:
            cb = arch.codebook
            a["codebook"] = self.sram_area_um2(max(_CODEBOOK_FLOOR_BYTES, math.ceil(cb.entries * cb.width_bits / 8)))
            if arch.decoder is not None:
                # one codeword latch per lane, doubled for the lane's output register
                a["decoder"] = arch.decoder.vectors_per_cycle * cb.width_bits * reg * 2
        a = {k: v * self._area_scale for k, v in a.items()}
        a["total"] = sum(a.values())
        return a
