"""Report: latency, energy and area of one simulation, per layer and in total.

build_report(stats, arch, energy_model) turns the simulator's counts (Stats)
into rows of plain numbers; the Report prints them as a terminal table and
saves them as CSV, JSON and a PNG. Nothing here re-simulates or re-prices:
rows are Stats counts plus EnergyModel.layer_energy_pj.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .config import ArchSpec
from .energy import EnergyModel
from .stats import Stats

TOTAL_NAME = "TOTAL"
# Columns that add up over layers (plus every energy_*_pj column); the others
# (utilisation) are recomputed for the run.
_SUMMED = ("macs", "total_cycles", "compute_cycles", "stall_cycles", "dram_read_bytes", "dram_write_bytes",
           "sram_bytes", "codebook_lookups")


def energy_components(row: dict) -> list[str]:
    """The energy components of a report row, in the report's order (the
    architecture decides which exist: its PE kind, decoder...)."""
    return [k[len("energy_"):-len("_pj")] for k in row
            if k.startswith("energy_") and k.endswith("_pj") and k not in ("energy_total_pj", "energy_dynamic_pj")]


@dataclass
class Report:
    arch: str
    clock_mhz: float
    layers: list[dict]          # one row per layer, keys as in build_report
    totals: dict                # the same keys, for the whole run (name TOTAL)
    area_um2: dict              # component -> um^2, and 'total'
    energy_table: str           # path of the energy CSV used
    arch_spec: dict = field(default_factory=dict)    # the full ArchSpec, to reproduce the run
    unit_costs: list[dict] = field(default_factory=list)  # EnergyModel.unit_costs(): every pJ with its source
    static_power_mw: float = 0.0  # leakage power of the whole accelerator
    static_power_mw_by_component: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. technology scaling applied
    # what was simulated: the model (or topology), its weight format(s) and the --set overrides
    workload: str = ""
    weights: str = ""
    overrides: list[str] = field(default_factory=list)
    # per layer, the counters behind the rows (JSON only): cycles each unit was busy / waited for
    # data / waited for buffer room, SRAM bytes read and written per buffer, DRAM bytes read per buffer
    layer_counters: list[dict] = field(default_factory=list)
    # with shared memory levels (memory.levels): per tensor, the level it lived in (or dram), why,
    # its lifetime in ops and the bytes it moved between each pair of levels
    tensors: list[dict] = field(default_factory=list)

    def explain_memory(self, min_bytes: int = 0) -> str:
        """Why each tensor of at least `min_bytes` was or was not kept on chip
        (largest first), and the bytes it moved between levels."""
        if not self.tensors:
            return "no shared memory levels (memory.levels): every tensor moves between DRAM and the private buffers"
        rows = sorted((t for t in self.tensors if t["bytes"] >= min_bytes), key=lambda t: -t["bytes"])
        lines = [f"{'tensor':32} {'role':11} {'KiB':>9} {'ops':>9}  {'lives in':8}  moved (KiB)  why"]
        for t in rows:
            moved = ", ".join(f"{k} {v / 1024:,.1f}" for k, v in t["moved_bytes"].items()) or "-"
            lines.append(f"{t['name'][:32]:32} {t['role']:11} {t['bytes'] / 1024:9,.1f} "
                         f"{t['first_op']:>4}..{t['last_op']:<4}  {t['level']:8}  {moved}  {t['reason']}")
        return "\n".join(lines)

    def headline(self) -> dict:
        """The whole-network numbers a sweep row or a study point records."""
        t = self.totals
        lat_ms, e_uj = t["latency_ms"], t["energy_total_pj"] / 1e6
        return {"latency_cycles": t["total_cycles"], "latency_ms": lat_ms, "energy_uj": e_uj,
                "edp_uj_ms": lat_ms * e_uj, "area_mm2": self.area_um2["total"] / 1e6,
                "utilisation": t["utilisation"], "stall_cycles": t["stall_cycles"],
                "dram_bytes": t["dram_read_bytes"] + t["dram_write_bytes"]}

    def describe(self) -> str:
        """One line: what ran on what, e.g. `resnet20, weights vq:k=256,d=16, on vq32_ws (pe_array.rows=64)`."""
        parts = [self.workload or "layers"]
        if self.weights:
            parts.append(f"weights {self.weights}")
        what = ", ".join(parts) + f", on {self.arch}"
        return what + (f" ({' '.join(self.overrides)})" if self.overrides else "")

    # -- tables ---------------------------------------------------------------
    def to_dataframe(self, total: bool = True):
        """One row per layer, then (if `total`) the TOTAL row."""
        import pandas as pd

        return pd.DataFrame(self.layers + ([self.totals] if total else []))

    def to_csv(self, path: str | Path):
        """Layers and a last TOTAL row (drop it before summing columns)."""
        self.to_dataframe().to_csv(path, index=False)

    def to_json(self, path: str | Path):
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def from_json(cls, path: str | Path) -> "Report":
        return cls(**json.loads(Path(path).read_text()))

    def top_components(self, n: int = 3) -> list[str]:
        """The n energy components that cost most over the whole run."""
        ranked = sorted(energy_components(self.totals), key=lambda c: -self.totals[f"energy_{c}_pj"])
        return [c for c in ranked[:n] if self.totals[f"energy_{c}_pj"] > 0]

    def format_table(self) -> str:
        """Aligned text table for the terminal: one row per layer and TOTAL."""
        top = self.top_components()
        header = ["layer", "cycles", "compute", "stall", "util %", "DRAM KiB", "energy uJ"] + [f"{c} uJ" for c in top]

        def cells(r: dict) -> list[str]:
            return ([str(r["name"]), f"{r['total_cycles']:,}", f"{r['compute_cycles']:,}", f"{r['stall_cycles']:,}",
                     f"{100 * r['utilisation']:.1f}",
                     f"{(r['dram_read_bytes'] + r['dram_write_bytes']) / 1024:,.1f}",
                     f"{r['energy_total_pj'] / 1e6:,.2f}"]
                    + [f"{r[f'energy_{c}_pj'] / 1e6:,.2f}" for c in top])

        rows = [cells(r) for r in self.layers]
        total = cells(self.totals)
        widths = [max(len(h), *(len(r[i]) for r in rows + [total])) for i, h in enumerate(header)]

        def line(cs: list[str]) -> str:
            # layer names left-aligned, numbers right-aligned
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cs, widths)))

        rule = "-" * len(line(header))
        t = self.totals
        area_mm2 = self.area_um2.get("total", 0.0) / 1e6
        return "\n".join([f"{self.describe()} @ {self.clock_mhz:g} MHz: {t['latency_ms']:.3f} ms, "
                          f"{t['energy_total_pj'] / 1e6:,.2f} uJ (static {t.get('energy_static_pj', 0) / 1e6:,.2f}), "
                          f"{area_mm2:.3f} mm^2, utilisation {100 * t['utilisation']:.1f}%",
                          *(f"note: {n}" for n in self.notes),
                          line(header), rule, *map(line, rows), rule, line(total)])

    # -- figure ---------------------------------------------------------------
    def plot(self, path: str | Path):
        """PNG with two panels: per-layer latency (compute vs stall) and
        per-layer energy stacked by component. Drawn on a bare Agg canvas, so
        it needs no display and leaves pyplot's global state alone."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        names = [r["name"] for r in self.layers]
        x = list(range(len(names)))
        fig = Figure(figsize=(max(8.0, 0.3 * len(names) + 3), 8), layout="constrained")
        FigureCanvasAgg(fig)
        ax_t, ax_e = fig.subplots(2, 1, sharex=True)

        us_per_cycle = 1.0 / self.clock_mhz
        compute = [r["compute_cycles"] * us_per_cycle for r in self.layers]
        stall = [r["stall_cycles"] * us_per_cycle for r in self.layers]
        ax_t.bar(x, compute, label="compute")
        ax_t.bar(x, stall, bottom=compute, label="stall")
        ax_t.set_ylabel("latency (us)")
        ax_t.set_title(f"{self.arch}: {self.totals['latency_ms']:.3f} ms, "
                       f"utilisation {100 * self.totals['utilisation']:.1f}%")
        ax_t.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))

        bottom = [0.0] * len(names)
        for i, c in enumerate(energy_components(self.totals)):
            vals = [r[f"energy_{c}_pj"] / 1e6 for r in self.layers]
            if any(vals):
                # a fixed colour per component, so figures of different runs compare at a glance
                ax_e.bar(x, vals, bottom=bottom, label=c, color=f"C{i}")
                bottom = [b + v for b, v in zip(bottom, vals)]
        ax_e.set_ylabel("energy (uJ)")
        ax_e.set_title(f"{self.totals['energy_total_pj'] / 1e6:,.1f} uJ")
        ax_e.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax_e.set_xticks(x, names, rotation=90, fontsize="small" if len(names) > 20 else "medium")
        fig.suptitle(self.describe(), fontsize="medium")
        fig.savefig(path, dpi=120)


def _utilisation(macs: int, pes: int, cycles: int) -> float:
    # useful MACs over what the whole array could have done in that time
    return macs / (pes * cycles) if cycles > 0 else 0.0


_COUNTERS = ("busy_cycles", "wait_data_cycles", "wait_space_cycles", "sram_read_bytes", "sram_write_bytes",
             "dram_read_by_buffer", "actions", "transfer_bytes")


def _layer_counters(ls) -> dict:
    # sorted keys: the same run writes the same JSON, byte for byte
    out = {"name": ls.name, **{c: dict(sorted(getattr(ls, c).items())) for c in _COUNTERS}}
    if ls.dram_stats:
        out["dram"] = ls.dram_stats
    return out


def _unsimulated_note(stats: Stats) -> list[str]:
    ops = stats.unsimulated_ops
    if not ops:
        return []
    listed = ", ".join(f"{k} x{v}" for k, v in sorted(ops.items(), key=lambda kv: -kv[1]))
    return [f"{sum(ops.values())} non-GEMM operators not simulated (the architecture declares no vector_unit; "
            f"they cost no time or energy here): {listed}"]


def build_report(stats: Stats, arch: ArchSpec, energy_model: EnergyModel | None = None, *, workload: str = "",
                 weights: str = "", overrides=()) -> Report:
    em = energy_model if energy_model is not None else EnergyModel(arch)
    pes = em.pe.peak_macs_per_cycle
    cycles_per_ms = arch.clock_mhz * 1e3
    rows = []
    for ls in stats.layers:
        energy = em.layer_energy_pj(ls)
        row = {"name": ls.name, "op": ls.op, "macs": ls.macs,
               "total_cycles": ls.total_cycles, "compute_cycles": ls.compute_cycles,
               "stall_cycles": ls.stall_cycles,
               # useful work: the MACs the PEs executed (a sparse array skips the pruned ones)
               "pe_macs": ls.actions.get("pe_arith.mac", ls.macs),
               "utilisation": _utilisation(ls.actions.get("pe_arith.mac", ls.macs), pes, ls.total_cycles),
               "latency_ms": ls.total_cycles / cycles_per_ms,
               "dram_read_bytes": ls.dram_read_bytes, "dram_write_bytes": ls.dram_write_bytes,
               "sram_bytes": sum(ls.sram_read_bytes.values()) + sum(ls.sram_write_bytes.values()),
               "codebook_lookups": ls.codebook_lookups, "loop_order": ls.meta.get("loop_order", "")}
        row.update({f"energy_{c}_pj": energy[c] for c in em.components})
        row["energy_dynamic_pj"] = sum(v for c, v in energy.items() if c != "static")
        row["energy_total_pj"] = sum(energy.values())
        rows.append(row)
    totals = {"name": TOTAL_NAME, "op": "", "loop_order": ""}
    summed = _SUMMED + tuple(f"energy_{c}_pj" for c in em.components) + ("energy_dynamic_pj", "energy_total_pj")
    totals.update({k: sum(r[k] for r in rows) for k in summed})
    totals["pe_macs"] = sum(r["pe_macs"] for r in rows)
    totals["utilisation"] = _utilisation(totals["pe_macs"], pes, totals["total_cycles"])
    totals["latency_ms"] = totals["total_cycles"] / cycles_per_ms
    totals = {k: totals[k] for k in rows[0]} if rows else totals  # same column order as the layers
    return Report(arch=arch.name, clock_mhz=arch.clock_mhz, layers=rows, totals=totals, area_um2=em.area_um2(),
                  energy_table=em.table.path, arch_spec=arch.model_dump(mode="json"), unit_costs=em.unit_costs(),
                  static_power_mw=em.static_power_mw, static_power_mw_by_component=em.static_mw_by_component,
                  notes=([em.scaling_note] if em.scaling_note else []) + _unsimulated_note(stats),
                  workload=workload, weights=weights, overrides=list(overrides),
                  layer_counters=[_layer_counters(ls) for ls in stats.layers], tensors=stats.tensors)
