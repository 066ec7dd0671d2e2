"""Read SCALE-Sim inputs: topology CSVs into LayerSpecs, .cfg files into
ScaleSimConfig. The column and key semantics follow SCALE-Sim v3
(scalesim-project/scale-sim-v2, scalesim/topology_utils.py and
scalesim/scale_config.py); deviations are noted where they occur.

Conv topology (SCALE-Sim's default form), one layer per row:

    Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,[ Sparsity,]

  Columns are read by position, as SCALE-Sim does; the header row is skipped.
  SCALE-Sim does not pad: the IFMAP size already includes any padding, so
  ConvGeom.pad is 0 and the output size is ceil((H - R + stride) / stride)
  (SCALE-Sim's rule; a 230-wide Conv1 with R=7, stride 2 gives 113, not the
  real network's 112). One stride serves both directions. GEMM view:
  M = out_h * out_w, N = Num Filter, K = Channels * R * S; in_elems = H*W*C.
  A layer whose name contains 'DP' (case-sensitive, SCALE-Sim's marker) is a
  depthwise conv: SCALE-Sim runs it as Channels separate one-channel layers,
  here one LayerSpec with groups = Channels, K = R * S.

GEMM topology (SCALE-Sim's mnk form, `input_type_gemm=True`):

    Layer name, M, N, K,[ Sparsity,]

  SCALE-Sim turns each row into a conv with IFMAP M x K, a 1 x K filter, one
  channel and N filters, i.e. M output rows, N output columns (filters) and
  a reduction of K: exactly LayerSpec's M, N, K. Rows become op 'linear'
  (the N x K operand is SCALE-Sim's filter, i.e. the weights).

Both forms: blank lines are skipped; fields are stripped of spaces; the
trailing comma SCALE-Sim writes yields an empty last field, ignored; text
after '#' is a comment. The optional Sparsity column (v3, 'N:M') must be
'1:1': an N:M-sparse layer needs a sparse WeightFormat, which a topology file
cannot give, so it is refused rather than read as dense. Topologies carry no
weights: LayerSpec.weight is None and the format is DenseFormat(bits=8).

Errors (missing file, missing column, a value that is not a positive
integer, an unknown dataflow) raise ArchsimError naming the file and the
column or key.
"""
from __future__ import annotations

import configparser
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from archsim.errors import ArchsimError

from .layer_spec import ConvGeom, LayerSpec

PathLike = Union[str, Path]

CONV_COLUMNS = ("Layer name", "IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width",
                "Channels", "Num Filter", "Strides")
GEMM_COLUMNS = ("Layer name", "M", "N", "K")
SPARSITY_COLUMN = "Sparsity"
# Largest value of a topology column: far above any real layer (GPT-3's
# d_model is 12288, ImageNet inputs 224), far below sizes whose tiling would
# not fit in memory.
MAX_DIM = 1 << 20


def _read_rows(path: PathLike) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(header fields, [(line number, fields)]) with comments, blank lines
    and the trailing empty field removed."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as e:
        raise ArchsimError(f"cannot read topology: {e.strerror}", file=str(path)) from e
    except UnicodeDecodeError as e:
        line = Path(path).read_bytes()[: e.start].count(b"\n") + 1
        raise ArchsimError(f"line {line}: not UTF-8 text (byte {e.start})", file=str(path),
                           field="<encoding>") from None
    except ValueError as e:  # e.g. a NUL byte in the path
        raise ArchsimError(f"cannot read topology: {e}", file=repr(str(path))) from None
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = [f.strip() for f in line.split("#", 1)[0].split(",")]
        while fields and fields[-1] == "":
            fields.pop()
        if fields:
            rows.append((lineno, fields))
    if not rows:
        raise ArchsimError("topology file is empty", file=str(path))
    return rows[0][1], rows[1:]


def _positive_int(value: str, path: PathLike, lineno: int, column: str) -> int:
    try:
        n = int(value)
    except ValueError:  # also a number too long for int() (Python's digit limit)
        n = 0
    if n <= 0:
        raise ArchsimError(f"line {lineno}: expected a positive integer, got {value[:40]!r}",
                           file=str(path), field=column)
    if n > MAX_DIM:
        raise ArchsimError(f"line {lineno}: {n} is larger than the limit {MAX_DIM}",
                           file=str(path), field=column)
    return n


def _check_dense(fields: list[str], n_cols: int, path: PathLike, lineno: int) -> None:
    """Refuse extra columns, and a Sparsity column other than 1:1."""
    extra = fields[n_cols:]
    if not extra:
        return
    if len(extra) > 1:
        raise ArchsimError(f"line {lineno}: {len(fields)} columns, expected at most {n_cols + 1}",
                           file=str(path), field=SPARSITY_COLUMN)
    ratio = extra[0].replace(" ", "")
    n, _, m = ratio.partition(":")
    if not (n.isdigit() and m.isdigit() and int(m) > 0):
        raise ArchsimError(f"line {lineno}: expected an N:M ratio, got {extra[0]!r}",
                           file=str(path), field=SPARSITY_COLUMN)
    if int(n) != int(m):
        raise ArchsimError(f"line {lineno}: N:M sparsity {ratio} cannot be imported "
                           "(a topology gives no sparse weight format); use 1:1",
                           file=str(path), field=SPARSITY_COLUMN)


def _fields(fields: list[str], columns: tuple[str, ...], path: PathLike, lineno: int) -> list[str]:
    if len(fields) < len(columns):
        raise ArchsimError(f"line {lineno}: missing column", file=str(path),
                           field=columns[len(fields)])
    _check_dense(fields, len(columns), path, lineno)
    return fields[: len(columns)]


def _check_header(header: list[str], columns: tuple[str, ...], path: PathLike) -> None:
    if len(header) < len(columns):
        raise ArchsimError("header is missing a column", file=str(path), field=columns[len(header)])


def read_conv_topology(path: PathLike) -> list[LayerSpec]:
    """LayerSpecs from a SCALE-Sim conv-form topology CSV."""
    header, rows = _read_rows(path)
    _check_header(header, CONV_COLUMNS, path)
    layers = []
    for lineno, fields in rows:
        name, *values = _fields(fields, CONV_COLUMNS, path, lineno)
        h, w, r, s, c, nf, stride = (_positive_int(v, path, lineno, col)
                                     for v, col in zip(values, CONV_COLUMNS[1:]))
        if r > h or s > w:
            raise ArchsimError(f"line {lineno}: filter {r}x{s} is larger than the IFMAP {h}x{w}",
                               file=str(path), field="Filter Height" if r > h else "Filter Width")
        out_h = math.ceil((h - r + stride) / stride)
        out_w = math.ceil((w - s + stride) / stride)
        groups = c if "DP" in name else 1
        layers.append(LayerSpec(
            name=name,
            op="dwconv" if groups > 1 and nf == 1 else "conv",
            M=out_h * out_w,
            N=nf,
            K=(c // groups) * r * s,
            groups=groups,
            conv=ConvGeom(in_ch=c, out_ch=nf * groups, kh=r, kw=s, stride=stride, pad=0,
                          in_h=h, in_w=w, out_h=out_h, out_w=out_w, groups=groups),
            in_elems=h * w * c,
        ))
    return layers


def read_gemm_topology(path: PathLike) -> list[LayerSpec]:
    """LayerSpecs from a SCALE-Sim GEMM-form (Layer name, M, N, K) CSV."""
    header, rows = _read_rows(path)
    _check_header(header, GEMM_COLUMNS, path)
    layers = []
    for lineno, fields in rows:
        name, *values = _fields(fields, GEMM_COLUMNS, path, lineno)
        m, n, k = (_positive_int(v, path, lineno, col) for v, col in zip(values, GEMM_COLUMNS[1:]))
        layers.append(LayerSpec(name=name, op="linear", M=m, N=n, K=k))
    return layers


def is_gemm_topology(path: PathLike) -> bool:
    """True when the header's columns 2-4 are M, N, K. SCALE-Sim itself is
    told the form by a flag; the header is how a reader can tell."""
    header, _ = _read_rows(path)
    return [f.upper() for f in header[1:4]] == ["M", "N", "K"]


def read_topology(path: PathLike) -> list[LayerSpec]:
    """LayerSpecs from a SCALE-Sim topology CSV of either form."""
    return read_gemm_topology(path) if is_gemm_topology(path) else read_conv_topology(path)


DATAFLOWS = ("ws", "os", "is")
INTERFACE_BANDWIDTH_MODES = ("CALC", "USER")


@dataclass(frozen=True)
class ScaleSimConfig:
    """The architecture part of a SCALE-Sim .cfg file.

    SRAM sizes are in KiB, as SCALE-Sim reads them. `bandwidth` is DRAM
    words per cycle (SCALE-Sim's `Bandwidth`); SCALE-Sim uses it only when
    `interface_bandwidth` is 'USER' (there it is required), and with 'CALC'
    reports the bandwidth needed for no stalls instead. None: not given.
    """

    run_name: str
    rows: int
    cols: int
    ifmap_sram_kb: int
    filter_sram_kb: int
    ofmap_sram_kb: int
    dataflow: str
    bandwidth: Optional[int]
    interface_bandwidth: str
    memory_banks: int = 1


def read_scalesim_cfg(path: PathLike) -> ScaleSimConfig:
    """Parse a SCALE-Sim .cfg file (INI: [general], [architecture_presets],
    [run_presets]; keys are case-insensitive, 'key: value' or 'key = value')."""
    path = Path(path)
    cp = configparser.ConfigParser()
    try:
        with path.open() as f:
            cp.read_file(f)
    except OSError as e:
        raise ArchsimError(f"cannot read config: {e.strerror}", file=str(path)) from e
    except configparser.Error as e:
        raise ArchsimError(f"not a valid .cfg file: {e.message}", file=str(path)) from e

    def get(section: str, key: str) -> str:
        try:
            return cp.get(section, key).strip()
        except (configparser.NoSectionError, configparser.NoOptionError):
            raise ArchsimError(f"missing key in [{section}]", file=str(path), field=key) from None

    def get_int(section: str, key: str) -> int:
        value = get(section, key)
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n <= 0:
            raise ArchsimError(f"expected a positive integer, got {value!r}", file=str(path), field=key)
        return n

    arch = "architecture_presets"
    dataflow = get(arch, "Dataflow").lower()
    if dataflow not in DATAFLOWS:
        raise ArchsimError(f"dataflow must be one of {DATAFLOWS}, got {dataflow!r}",
                           file=str(path), field="Dataflow")
    mode = get("run_presets", "InterfaceBandwidth").upper()
    if mode not in INTERFACE_BANDWIDTH_MODES:
        raise ArchsimError(f"must be one of {INTERFACE_BANDWIDTH_MODES}, got {mode!r}",
                           file=str(path), field="InterfaceBandwidth")
    bandwidth = None
    if mode == "USER" or cp.has_option(arch, "Bandwidth"):
        # SCALE-Sim accepts one bandwidth per memory bank ("10, 10"); this
        # reader keeps a single value and refuses a list rather than pick one.
        if "," in get(arch, "Bandwidth"):
            raise ArchsimError("per-bank bandwidth lists are not supported; give one value",
                               file=str(path), field="Bandwidth")
        bandwidth = get_int(arch, "Bandwidth")
    banks = get_int(arch, "MemoryBanks") if cp.has_option(arch, "MemoryBanks") else 1
    return ScaleSimConfig(
        run_name=get("general", "run_name"),
        rows=get_int(arch, "ArrayHeight"),
        cols=get_int(arch, "ArrayWidth"),
        ifmap_sram_kb=get_int(arch, "IfmapSramSzkB"),
        filter_sram_kb=get_int(arch, "FilterSramSzkB"),
        ofmap_sram_kb=get_int(arch, "OfmapSramSzkB"),
        dataflow=dataflow,
        bandwidth=bandwidth,
        interface_bandwidth=mode,
        memory_banks=banks,
    )
