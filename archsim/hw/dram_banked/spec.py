"""The `kind: banked_dram` YAML block: a preset (archsim/data/dram/<name>.yaml,
each citing the DRAMsim3 config its numbers come from) plus overrides of any
field or timing.

Clocks: DRAM timings are DRAM clocks (tCK_ns). In a run, one DRAM clock is
`clock_ratio` accelerator cycles; unless given, clock_ratio =
tCK_ns * clock_mhz / 1000 with the architecture's clock_mhz, e.g. DDR4-3200 (tCK 0.63 ns) under a 1 GHz
accelerator: 0.63 accelerator cycles per DRAM clock."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import Field, PrivateAttr, model_validator

from ... import __file__ as _archsim_init
from ...ir.errors import ArchsimError
from ..pe_kind import ComponentSpec

PRESET_DIR = Path(_archsim_init).resolve().parent / "data" / "dram"  # package data
TIMINGS = ("CL", "CWL", "tRCD", "tRP", "tRAS", "tRFC", "tREFI", "tRRD_S", "tRRD_L", "tWTR_S", "tWTR_L",
           "tFAW", "tWR", "tRTP", "tCCD_S", "tCCD_L", "tRTRS", "tPPD", "tRTW")
MAY_BE_ZERO = ("tRTRS", "tPPD", "tRTW")  # tRTW 0: derived as RL + tBURST - WL + tRTRS (DRAMsim3)
POWER = ("VDD", "IDD0", "IDD2N", "IDD3N", "IDD4W", "IDD4R", "IDD5AB")
GEOMETRY = ("channels", "ranks", "bankgroups", "banks_per_group", "rows", "columns", "BL")
FIELDS = ("ch", "ra", "bg", "ba", "ro", "co")


def presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


@functools.lru_cache(maxsize=None)
def _preset(name: str) -> dict:
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ArchsimError(f"unknown DRAM preset {name!r} (known: {', '.join(presets())})", field="dram.preset")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


class BankedDRAMSpec(ComponentSpec):
    kind: str = "banked_dram"
    preset: str = "ddr4_3200"
    protocol: Optional[str] = None
    channels: Optional[int] = None
    ranks: Optional[int] = None
    bankgroups: Optional[int] = None
    banks_per_group: Optional[int] = None
    rows: Optional[int] = None
    columns: Optional[int] = None
    device_width: Optional[int] = None
    bus_width: Optional[int] = None
    BL: Optional[int] = None
    tCK_ns: Optional[float] = None
    address_mapping: Optional[str] = None
    row_buffer_policy: Optional[Literal["open_page", "closed_page"]] = None
    cmd_queue_size: Optional[int] = None
    trans_queue_size: Optional[int] = None
    dual_command_issue: Optional[bool] = None
    timing: dict[str, int] = Field(default_factory=dict, description="overrides of the preset's timings (DRAM clocks)")
    power: dict[str, float] = Field(default_factory=dict, description="overrides of the preset's IDD values (mA), VDD (V)")
    clock_ratio: Optional[float] = Field(None, gt=0, description="accelerator cycles per DRAM clock")
    source: str = ""
    _r: object = PrivateAttr(None)
    _accel_mhz: float = PrivateAttr(1000.0)

    @model_validator(mode="after")
    def _resolve(self):
        self._r = _resolve(self)
        return self

    @property
    def resolved(self):
        """The preset with this block's overrides applied (a namespace)."""
        return self._r

    def bind_clock(self, accelerator_clock_mhz: float):
        """The architecture's clock (archsim.config sets it)."""
        self._accel_mhz = float(accelerator_clock_mhz)

    @property
    def ratio(self) -> float:
        """Accelerator cycles per DRAM clock."""
        return self.clock_ratio or self._r.tCK_ns * self._accel_mhz / 1000.0

    @property
    def bandwidth_bytes_per_cycle(self) -> float:
        """Peak bandwidth in bytes per accelerator cycle (the mapper's roofline)."""
        r = self._r
        return r.channels * r.bus_width / 8 * 2 / self.ratio

    @property
    def latency_cycles(self) -> int:
        """A read that misses an open row: tRP + tRCD + CL + tBURST, accelerator cycles."""
        t = self._r.timing
        return round((t["tRP"] + t["tRCD"] + t["CL"] + self._r.BL // 2) * self.ratio)

    def energy_pj_per_bit_from_commands(self) -> tuple[float, str]:
        """pJ per bit moved, from the command energies (IDD-based, as
        DRAMsim3): a burst's RD or WR energy plus its share of an ACT (the
        ACTs per burst of a sequential stream on the controller), read and
        write averaged. Refresh and standby energy depend on time, not on
        bits: the component's stats() counts them."""
        from .component import calibrate
        from .replay import timing_of

        t = timing_of(self)
        e = t.command_energy_pj()
        per_rd = e["rd"] + calibrate(self, 1, 0)[2] * e["act"]
        per_wr = e["wr"] + calibrate(self, 0, 1)[2] * e["act"]
        v = (per_rd + per_wr) / 2 / (t.line_bytes * 8)
        return v, (f"banked_dram {self.preset}: (RD {e['rd']:.0f} | WR {e['wr']:.0f} pJ per {t.line_bytes}-byte burst "
                   f"+ ACT {e['act']:.0f} pJ x ACTs per burst) / bits, IDD values of {self._r.source}")


class _Resolved:
    pass


def _resolve(s: BankedDRAMSpec) -> _Resolved:
    base = _preset(s.preset)
    r = _Resolved()
    for k, v in base.items():
        setattr(r, k, v)
    for k in ("protocol", "device_width", "bus_width", "tCK_ns", "address_mapping", "row_buffer_policy",
              "cmd_queue_size", "trans_queue_size", "dual_command_issue") + GEOMETRY:
        v = getattr(s, k)
        if v is not None:
            setattr(r, k, v)
    r.dual_command_issue = bool(getattr(r, "dual_command_issue", False))
    r.timing = {**base["timing"], **s.timing}
    r.power = {**base["power"], **s.power}
    _check(r, s)
    return r


def _err(field: str, msg: str):
    raise ArchsimError(msg, field=f"dram.{field}")


def _check(r, s):
    for k in GEOMETRY:
        v = getattr(r, k)
        if not isinstance(v, int) or v <= 0 or v & (v - 1):
            _err(k, f"must be a positive power of two, got {v!r}")
    for k in ("device_width", "bus_width", "cmd_queue_size", "trans_queue_size"):
        v = getattr(r, k)
        if not isinstance(v, int) or v <= 0:
            _err(k, f"must be a positive integer, got {v!r}")
    if r.bus_width % r.device_width:
        _err("bus_width", f"{r.bus_width} is not a multiple of device_width {r.device_width}")
    if r.BL < 2 or r.columns < r.BL:
        _err("BL", f"burst length {r.BL} needs 2 <= BL <= columns ({r.columns})")
    if not r.tCK_ns > 0:
        _err("tCK_ns", f"must be > 0, got {r.tCK_ns!r}")
    for k, v in r.timing.items():
        if k not in TIMINGS:
            _err(f"timing.{k}", f"unknown timing (known: {', '.join(TIMINGS)})")
        lo = 0 if k in MAY_BE_ZERO else 1
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            _err(f"timing.{k}", f"must be an integer number of DRAM clocks >= {lo}, got {v!r}")
    for k in TIMINGS:
        if k not in r.timing and k not in MAY_BE_ZERO:
            _err(f"timing.{k}", "missing")
    if r.timing["tREFI"] <= r.timing["tRFC"]:
        _err("timing.tREFI", f"{r.timing['tREFI']} must exceed tRFC {r.timing['tRFC']}")
    for k in POWER:
        v = r.power.get(k)
        if not isinstance(v, (int, float)) or v < 0:
            _err(f"power.{k}", f"must be a number >= 0, got {v!r}")
    m = r.address_mapping
    toks = [m[i:i + 2] for i in range(0, len(m), 2)] if isinstance(m, str) else []
    if not isinstance(m, str) or len(m) != 12 or sorted(toks) != sorted(FIELDS):
        _err("address_mapping", f"{m!r} must name each of ch ra bg ba ro co once (e.g. rochrababgco)")
    if r.row_buffer_policy not in ("open_page", "closed_page"):
        _err("row_buffer_policy", f"{r.row_buffer_policy!r} must be open_page or closed_page")


def spec_of(spec) -> BankedDRAMSpec:
    """A BankedDRAMSpec from a spec, a YAML dict or a preset name."""
    if isinstance(spec, BankedDRAMSpec):
        return spec
    if isinstance(spec, str):
        return BankedDRAMSpec(preset=spec)
    d = dict(spec)
    d.setdefault("kind", "banked_dram")
    return BankedDRAMSpec.model_validate(d)
