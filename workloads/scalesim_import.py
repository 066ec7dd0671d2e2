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
after '#' is a comment. Topologies carry no weights: LayerSpec.weight is None.

Sparsity (SCALE-Sim v3). The optional last column is 'N:M' (default '1:1'):
in every group of M consecutive weights of a filter's flattened window
(R, S, C order, C fastest; GEMM form: along K) the first N are kept, i.e. N
is the number KEPT, not pruned (scalesim/compute/operand_matrix.py,
create_filter_matrix: pattern = N ones then M - N zeros, tiled down the
window; a partial last group of r weights keeps min(r, N)). SCALE-Sim
reads the column in topology_utils.load_arrays_conv/_gemm whatever the
.cfg says, but only applies it when the .cfg's [sparsity] SparsitySupport
is true; otherwise the layer runs dense. Here:
  * sparsity_support=True (default of the readers): a layer with N < M gets
    fmt = NMFormat(n=N, m=M, value_bits=8, mask_encoding=..., run_len=K)
    (groups never straddle two filters, so the run is the whole window);
    N == M (1:1, 4:4) is dense and gets DenseFormat(bits=8) (SCALE-Sim runs
    it with the full window; it would still count ELLPACK metadata for
    M > 1, which DenseFormat does not);
  * sparsity_support=False: the column is still validated, and ignored:
    every layer is DenseFormat(bits=8), as SCALE-Sim runs it;
  * read_scalesim_workload(topology, cfg) applies the .cfg's setting.
The mask encoding follows the .cfg's SparseRep (`mask_encoding_for`):
'ellpack_block' stores ceil(log2 M) bits per kept weight
(compute/compression.py, compress_to_ellpack_block), exactly the 'offsets'
encoding (N * ceil(log2 M) bits per group); 'csr' and 'csc' store a 32-bit
index per non-zero plus row/column pointers, which no per-group mask
encoding matches, so they map to 'bitmap' (M bits per group, the
simulator's default). Without a .cfg the readers use 'offsets' (the
ellpack_block of SCALE-Sim's sample configs). A Sparsity value that is not
'N:M' with integers 0 < N <= M (SCALE-Sim would crash or run nonsense)
is an error naming the file, line and the Sparsity column.

SCALE-Sim compresses the operands for any dataflow (K becomes
K' = (K // M) * N + min(K % M, N)); the sparse bookkeeping (ifmap SRAM reads
x M/N, OptimizedMapping) is weight-stationary only.
`scalesim_ws_sparse_compute_cycles` is its weight-stationary cycle count in
closed form, and `load_sparse_reference` reads the stored reference runs
(tests/data/scalesim_sparse).

Errors (missing file, missing column, a value that is not a positive
integer, a bad N:M ratio, an unknown dataflow, a bad [sparsity] key) raise
ArchsimError naming the file and the column or key (and, in topologies,
the line).
"""
from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Union

from archsim.ir.errors import ArchsimError

from archsim.ir.formats import DenseFormat, NMFormat, WeightFormat
from archsim.ir.layer_spec import ConvGeom, LayerSpec
from archsim.ir.scalesim_cfg import DEFAULT_MASK_ENCODING, ScaleSimConfig, read_scalesim_cfg

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


def parse_nm_ratio(value: str, path: PathLike, lineno: int) -> tuple[int, int]:
    """(N, M) from a topology's Sparsity field 'N:M' (N kept of every M).
    SCALE-Sim splits on ':' and int()s both sides; here both must be
    integers with 0 < N <= M, else ArchsimError naming file, line, column."""
    ratio = value.replace(" ", "")
    parts = ratio.split(":")
    if len(parts) != 2 or not all(re.fullmatch(r"[+-]?[0-9]+", p) for p in parts):
        raise ArchsimError(f"line {lineno}: expected an N:M ratio of integers, got {value!r}",
                           file=str(path), field=SPARSITY_COLUMN)
    n, m = (int(p) for p in parts)
    if m <= 0 or n <= 0:
        raise ArchsimError(f"line {lineno}: N:M ratio {ratio} needs N > 0 and M > 0",
                           file=str(path), field=SPARSITY_COLUMN)
    if n > m:
        raise ArchsimError(f"line {lineno}: N:M ratio {ratio} keeps more (N) than the group size (M)",
                           file=str(path), field=SPARSITY_COLUMN)
    return n, m


def _sparsity(fields: list[str], n_cols: int, path: PathLike, lineno: int) -> tuple[int, int]:
    """(N, M) of the optional Sparsity column after the n_cols required
    ones; (1, 1) when absent. More than one extra column is refused."""
    extra = fields[n_cols:]
    if not extra:
        return 1, 1
    if len(extra) > 1:
        raise ArchsimError(f"line {lineno}: {len(fields)} columns, expected at most {n_cols + 1}",
                           file=str(path), field=SPARSITY_COLUMN)
    return parse_nm_ratio(extra[0], path, lineno)


def _weight_format(n: int, m: int, k: int, sparsity_support: bool, mask_encoding: str) -> WeightFormat:
    if not sparsity_support or n == m:
        return DenseFormat(bits=8)
    return NMFormat(n=n, m=m, value_bits=8, mask_encoding=mask_encoding, run_len=k)


def _fields(fields: list[str], columns: tuple[str, ...], path: PathLike,
            lineno: int) -> tuple[list[str], tuple[int, int]]:
    """(the required fields, (N, M) of the Sparsity column)."""
    if len(fields) < len(columns):
        raise ArchsimError(f"line {lineno}: missing column", file=str(path),
                           field=columns[len(fields)])
    return fields[: len(columns)], _sparsity(fields, len(columns), path, lineno)


def _check_header(header: list[str], columns: tuple[str, ...], path: PathLike) -> None:
    if len(header) < len(columns):
        raise ArchsimError("header is missing a column", file=str(path), field=columns[len(header)])


def read_conv_topology(path: PathLike, sparsity_support: bool = True,
                       mask_encoding: str = DEFAULT_MASK_ENCODING) -> list[LayerSpec]:
    """LayerSpecs from a SCALE-Sim conv-form topology CSV. sparsity_support:
    the .cfg's SparsitySupport (False: the Sparsity column is ignored);
    mask_encoding: see mask_encoding_for."""
    header, rows = _read_rows(path)
    _check_header(header, CONV_COLUMNS, path)
    layers = []
    for lineno, fields in rows:
        (name, *values), (sp_n, sp_m) = _fields(fields, CONV_COLUMNS, path, lineno)
        h, w, r, s, c, nf, stride = (_positive_int(v, path, lineno, col)
                                     for v, col in zip(values, CONV_COLUMNS[1:]))
        if r > h or s > w:
            raise ArchsimError(f"line {lineno}: filter {r}x{s} is larger than the IFMAP {h}x{w}",
                               file=str(path), field="Filter Height" if r > h else "Filter Width")
        out_h = math.ceil((h - r + stride) / stride)
        out_w = math.ceil((w - s + stride) / stride)
        groups = c if "DP" in name else 1
        k = (c // groups) * r * s
        layers.append(LayerSpec(
            name=name,
            op="dwconv" if groups > 1 and nf == 1 else "conv",
            M=out_h * out_w,
            N=nf,
            K=k,
            groups=groups,
            conv=ConvGeom(in_ch=c, out_ch=nf * groups, kh=r, kw=s, stride=stride, pad=0,
                          in_h=h, in_w=w, out_h=out_h, out_w=out_w, groups=groups),
            fmt=_weight_format(sp_n, sp_m, k, sparsity_support, mask_encoding),
            in_elems=h * w * c,
        ))
    return layers


def read_gemm_topology(path: PathLike, sparsity_support: bool = True,
                       mask_encoding: str = DEFAULT_MASK_ENCODING) -> list[LayerSpec]:
    """LayerSpecs from a SCALE-Sim GEMM-form (Layer name, M, N, K) CSV;
    arguments as read_conv_topology."""
    header, rows = _read_rows(path)
    _check_header(header, GEMM_COLUMNS, path)
    layers = []
    for lineno, fields in rows:
        (name, *values), (sp_n, sp_m) = _fields(fields, GEMM_COLUMNS, path, lineno)
        m, n, k = (_positive_int(v, path, lineno, col) for v, col in zip(values, GEMM_COLUMNS[1:]))
        layers.append(LayerSpec(name=name, op="linear", M=m, N=n, K=k,
                                fmt=_weight_format(sp_n, sp_m, k, sparsity_support, mask_encoding)))
    return layers


def is_gemm_topology(path: PathLike) -> bool:
    """True when the header's columns 2-4 are M, N, K. SCALE-Sim itself is
    told the form by a flag; the header is how a reader can tell."""
    header, _ = _read_rows(path)
    return [f.upper() for f in header[1:4]] == ["M", "N", "K"]


def read_topology(path: PathLike, sparsity_support: bool = True,
                  mask_encoding: str = DEFAULT_MASK_ENCODING) -> list[LayerSpec]:
    """LayerSpecs from a SCALE-Sim topology CSV of either form."""
    read = read_gemm_topology if is_gemm_topology(path) else read_conv_topology
    return read(path, sparsity_support=sparsity_support, mask_encoding=mask_encoding)


def read_scalesim_workload(topology: PathLike, cfg: PathLike) -> tuple[list[LayerSpec], ScaleSimConfig]:
    """A topology read under a .cfg, as SCALE-Sim would run the pair: the
    Sparsity column applies only when SparsitySupport is true, with the mask
    encoding of its SparseRep. OptimizedMapping true is refused: SCALE-Sim
    then ignores the topology's N and draws a random N per filter column,
    which no per-layer weight format describes."""
    config = read_scalesim_cfg(cfg)
    if config.sparsity_support and config.sparsity_optimized_mapping:
        raise ArchsimError("OptimizedMapping true (random per-column N:BlockSize sparsity) "
                           "cannot be imported; set it false", file=str(cfg), field="OptimizedMapping")
    layers = read_topology(topology, sparsity_support=config.sparsity_support,
                           mask_encoding=config.mask_encoding)
    return layers, config


# --- SCALE-Sim's weight-stationary N:M compute cycles, and its stored reports


def scalesim_nm_kept_rows(K: int, n: int, m: int) -> int:
    """Rows of SCALE-Sim's compressed filter operand (and columns of its
    ifmap operand) for a window of K weights at N:M: every full group of M
    keeps N, a partial last group of r weights keeps min(r, N)
    (operand_matrix.create_filter_matrix / create_ifmap_matrix with
    OptimizedMapping false)."""
    return (K // m) * n + min(K % m, n)


def scalesim_ws_sparse_compute_cycles(rows: int, cols: int, K: int, N_filters: int, T: int,
                                      n: int = 1, m: int = 1) -> int:
    """SCALE-Sim v3's 'Total Cycles' (compute cycles; stalls are 0 with CALC
    bandwidth) of a weight-stationary layer at N:M sparsity with
    SparsitySupport true and OptimizedMapping false; n = m gives the dense
    run. K = C*R*S (the window), N_filters = filters, T = output pixels.

        K' = (K // M) * N + min(K % M, N)            kept window rows
        folds = ceil(K' / rows) * ceil(N_filters / cols)
        cycles = folds * (2*rows + cols + T - 2) - 1

    Each fold streams `rows` cycles of weight loading, T ifmap rows and
    cols - 1 drain cycles, skewed over `rows` array rows (rows - 1 more)
    (compute/systolic_compute_ws.py, create_ifmap_demand_mat); the memory
    system reports the cycle of the last serviced line, one less than the
    number of lines. Sparsity only shrinks K: the array, T and the per-fold
    overhead are unchanged."""
    k_kept = scalesim_nm_kept_rows(K, n, m)
    folds = math.ceil(k_kept / rows) * math.ceil(N_filters / cols)
    return folds * (2 * rows + cols + T - 2) - 1


def _read_report(path: Path) -> list[dict]:
    """SCALE-Sim report CSV as dicts (header names stripped; numbers as
    int where integral, else float; the trailing empty column dropped)."""
    with path.open() as f:
        rows = [[c.strip() for c in line.split(",")] for line in f if line.strip()]
    header = [h for h in rows[0] if h]
    out = []
    for row in rows[1:]:
        rec = {}
        for key, value in zip(header, row):
            try:
                num = float(value)
                rec[key] = int(num) if num.is_integer() and "." not in value else num
            except ValueError:
                rec[key] = value
        out.append(rec)
    return out


def load_sparse_reference(run_dir: PathLike) -> list[dict]:
    """One dict per layer of a stored SCALE-Sim reference run (see
    tests/data/scalesim_sparse/README.md). `run_dir` is <data>/<run>; its
    topology and .cfg are named in <data>/runs.csv. Keys:

      layer_id, name            SCALE-Sim's LayerID and the topology's name
      n, m                      the N:M SCALE-Sim applied (1, 1 when the
                                .cfg's SparsitySupport is false)
      topology_n, topology_m    the N:M the topology declares
      rows, cols, dataflow      the array (from the .cfg)
      K, N_filters, T           window C*R*S, filters, output pixels
      compute_cycles            COMPUTE_REPORT 'Total Cycles'
      total_cycles_incl_prefetch, stall_cycles, mapping_efficiency,
      compute_util              the other COMPUTE_REPORT columns
      layer                     the LayerSpec (read_scalesim_workload)
      topology_row              the topology row, {column: text}
      compute, sparse, bandwidth, access
                                the layer's row of COMPUTE_REPORT,
                                SPARSE_REPORT (None if absent),
                                BANDWIDTH_REPORT and DETAILED_ACCESS_REPORT
                                as {header: number}
    """
    run_dir = Path(run_dir)
    runs_csv = run_dir.parent / "runs.csv"
    with runs_csv.open() as f:
        meta = {r["run"]: r for r in csv.DictReader(f)}
    if run_dir.name not in meta:
        raise ArchsimError(f"run {run_dir.name!r} not listed", file=str(runs_csv), field="run")
    topo = run_dir.parent / meta[run_dir.name]["topology"]
    cfg_path = run_dir.parent / meta[run_dir.name]["cfg"]
    cfg = read_scalesim_cfg(cfg_path)
    layers = read_topology(topo, sparsity_support=cfg.sparsity_support, mask_encoding=cfg.mask_encoding)
    declared = read_topology(topo)
    header, topo_rows = _read_rows(topo)
    reports = {name: (_read_report(run_dir / f"{name}.csv") if (run_dir / f"{name}.csv").exists() else None)
               for name in ("COMPUTE_REPORT", "SPARSE_REPORT", "BANDWIDTH_REPORT", "DETAILED_ACCESS_REPORT")}
    compute = reports["COMPUTE_REPORT"]
    if compute is None or len(compute) != len(layers):
        raise ArchsimError(f"expected {len(layers)} layers in COMPUTE_REPORT.csv", file=str(run_dir))
    out = []
    for i, (layer, decl, (_, fields)) in enumerate(zip(layers, declared, topo_rows)):
        c = compute[i]
        nm = (layer.fmt.n, layer.fmt.m) if isinstance(layer.fmt, NMFormat) else (1, 1)
        dnm = (decl.fmt.n, decl.fmt.m) if isinstance(decl.fmt, NMFormat) else (1, 1)
        if len(fields) > len(header):
            header = header + [SPARSITY_COLUMN]
        out.append(dict(
            layer_id=c["LayerID"], name=layer.name, n=nm[0], m=nm[1],
            topology_n=dnm[0], topology_m=dnm[1],
            rows=cfg.rows, cols=cfg.cols, dataflow=cfg.dataflow,
            K=layer.K, N_filters=layer.N, T=layer.M,
            compute_cycles=c["Total Cycles"],
            total_cycles_incl_prefetch=c["Total Cycles (incl. prefetch)"],
            stall_cycles=c["Stall Cycles"], mapping_efficiency=c["Mapping Efficiency %"],
            compute_util=c["Compute Util %"],
            layer=layer, topology_row=dict(zip(header, fields)),
            compute=c,
            sparse=reports["SPARSE_REPORT"][i] if reports["SPARSE_REPORT"] else None,
            bandwidth=reports["BANDWIDTH_REPORT"][i] if reports["BANDWIDTH_REPORT"] else None,
            access=reports["DETAILED_ACCESS_REPORT"][i] if reports["DETAILED_ACCESS_REPORT"] else None,
        ))
    return out
