"""WeightFormat: what a compression method produced for one layer, as data.

Each format answers three questions and the simulator never re-derives them:
  * storage: bits for the per-weight payload (indices, masks, signs, low bits)
    plus the layer's side data (codebooks, shift tables, prototypes, LUTs);
  * movement: bytes to move from DRAM for a tile of n weights, and the side
    data that must be resident on chip (e.g. a codebook) while the layer runs;
  * decode work: codebook lookups needed to rebuild n weights before the PEs.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, fields
from typing import ClassVar


def _ceil_log2(k: int) -> int:
    return max(1, math.ceil(math.log2(k))) if k > 1 else 0


# N:M mask encodings. A group of M consecutive weights keeps N of them; the
# mask that says which can be stored as
#   "bitmap":        M bits per group (1 bit per weight; what MVQ's LZC mask
#                    decoder reads, and the MVQ paper's "1-bit mask" figure);
#   "combinatorial": ceil(log2 C(M, N)) bits per group (the information-
#                    theoretic minimum; 2:4 -> 3 bits per 4 weights);
#   "offsets":       N * ceil(log2 M) bits per group (an index per kept weight,
#                    like the 2-bit metadata of NVIDIA's 2:4 sparse tensor cores).
NM_MASK_ENCODINGS = ("bitmap", "combinatorial", "offsets")


def nm_mask_bits_per_group(n: int, m: int, encoding: str = "bitmap") -> int:
    """Bits to store which N of a group of M weights are kept."""
    if not 0 < n <= m:
        raise ValueError(f"N:M needs 0 < N <= M, got {n}:{m}")
    if encoding == "bitmap":
        return m
    if encoding == "combinatorial":
        return _ceil_log2(math.comb(m, n))
    if encoding == "offsets":
        return n * _ceil_log2(m)
    raise ValueError(f"mask_encoding must be one of {NM_MASK_ENCODINGS}, got {encoding!r}")


def _check_nm(fmt) -> None:
    if fmt.n > fmt.m:
        raise ValueError(f"{fmt.name}: n: N:M needs n <= m, got {fmt.n}:{fmt.m}")
    if fmt.mask_encoding not in NM_MASK_ENCODINGS:
        raise ValueError(f"{fmt.name}: mask_encoding: must be one of {NM_MASK_ENCODINGS}, "
                         f"got {fmt.mask_encoding!r}")


def _padded(n_weights: int, run_len: int, multiple: int) -> int:
    """Weights after zero-padding each run of `run_len` weights (the input-
    channel direction) to a multiple of `multiple`. run_len=0: the runs are
    assumed to divide evenly, only the total is rounded up. For a tile that
    holds part of a run the padding is counted pro rata (rounded up)."""
    if run_len <= 0:
        return math.ceil(n_weights / multiple) * multiple
    padded_run = math.ceil(run_len / multiple) * multiple
    return math.ceil(n_weights * padded_run / run_len / multiple) * multiple


def _check_fields(fmt) -> None:
    """Parameter schema of a format: every field has the type its annotation
    names (int: an integer, not a bool; float: a finite number; str: text)
    and at least the lower bound in the class's `_MIN` (default 0 for
    numbers). Raises ValueError naming the format and the field."""
    for f in fields(fmt):
        v = getattr(fmt, f.name)
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        where = f"{fmt.name}: {f.name}"
        if kind == "int":
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise ValueError(f"{where}: expected an integer, got {v!r}")
        elif kind == "float":
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise ValueError(f"{where}: expected a finite number, got {v!r}")
        elif kind == "str":
            if not isinstance(v, str):
                raise ValueError(f"{where}: expected text, got {v!r}")
            continue
        else:
            continue
        lo = fmt._MIN.get(f.name, 0)
        if v < lo:
            raise ValueError(f"{where}: must be >= {lo}, got {v!r}")


@dataclass(frozen=True)
class WeightFormat:
    """Base class. Subclasses override `payload_bits` and, if they carry side
    data or need decoding, `side_bits` and `decode_lookups`.

    Parameters are checked on construction (`_check_fields`, `_MIN` lower
    bounds, `_check` for relations between fields): a bad one raises
    ValueError naming the format and the field."""

    name = "base"
    _MIN: ClassVar[dict] = {}

    def __post_init__(self):
        _check_fields(self)
        self._check()

    def _check(self) -> None:
        """Relations between fields; ValueError naming the field."""

    def payload_bits(self, n_weights: int) -> int:
        raise NotImplementedError

    def side_bits(self, n_weights: int) -> int:
        """Layer-wide side data (codebooks, tables) for a layer of n weights."""
        return 0

    def storage_bits(self, n_weights: int) -> int:
        return self.payload_bits(n_weights) + self.side_bits(n_weights)

    def bits_per_weight(self, n_weights: int) -> float:
        return self.storage_bits(n_weights) / n_weights

    def compression_vs(self, n_weights: int, ref_bits: int = 32) -> float:
        return ref_bits * n_weights / self.storage_bits(n_weights)

    def tile_bytes(self, n_weights: int) -> int:
        """DRAM/SRAM bytes of the payload for a tile of n weights."""
        return math.ceil(self.payload_bits(n_weights) / 8)

    def side_bytes(self, n_weights: int) -> int:
        return math.ceil(self.side_bits(n_weights) / 8)

    def decode_lookups(self, n_weights: int) -> int:
        """Codebook lookups to rebuild n weights (0: the PEs consume it as is)."""
        return 0

    def for_layer(self, layer) -> "WeightFormat":
        """This format as attached to one layer: a format with a per-layer
        field (PQ's cout) takes it from the layer's shape; others are as is."""
        return self

    @property
    def pe_bits(self) -> int:
        """Operand width the PEs see after decoding."""
        return 8

    def describe(self) -> dict:
        d = {"format": self.name}
        d.update({k: v for k, v in self.__dict__.items()})
        return d


@dataclass(frozen=True)
class DenseFormat(WeightFormat):
    """Uncompressed integer (or float) weights of `bits` bits each.

    INTb quantization is DenseFormat(bits=b, n_scales=<output channels>):
    each of the `n_scales` per-channel scales costs `scale_bits` (FP32 by
    default) of side data. n_scales=0 (the default): no scales counted, e.g.
    FP32 weights or a caller that does not store scales."""

    bits: int = 8
    n_scales: int = 0
    scale_bits: int = 32
    name = "dense"
    _MIN: ClassVar[dict] = {"bits": 1}

    def payload_bits(self, n_weights: int) -> int:
        return n_weights * self.bits

    def side_bits(self, n_weights: int) -> int:
        return self.n_scales * self.scale_bits

    @property
    def pe_bits(self) -> int:
        return self.bits


@dataclass(frozen=True)
class VQFormat(WeightFormat):
    """Vector quantization: sub-vectors of length d along the input-channel
    direction, each replaced by a log2(k)-bit index into a codebook of k
    codewords stored at `codebook_bits` per element. `n_codebooks` > 1 means
    several codebooks per layer (e.g. one per group of output channels).

    Added (defaults keep the old numbers):
      scale_bits: one scale per codebook (the codebook is stored as integers
                  times a scale); 0 = not counted.
      run_len:    length of the input-channel run the sub-vectors are cut
                  along; when d does not divide it every run is zero-padded
                  to a multiple of d and the padded sub-vectors cost indices
                  too. 0 = runs divide evenly."""

    k: int = 256
    d: int = 4
    codebook_bits: int = 8
    n_codebooks: int = 1
    scale_bits: int = 0
    run_len: int = 0
    name = "vq"
    _MIN: ClassVar[dict] = {"k": 1, "d": 1, "codebook_bits": 1, "n_codebooks": 1}

    def n_vectors(self, n_weights: int) -> int:
        return _padded(n_weights, self.run_len, self.d) // self.d

    def payload_bits(self, n_weights: int) -> int:
        return self.n_vectors(n_weights) * _ceil_log2(self.k)

    def side_bits(self, n_weights: int) -> int:
        return self.n_codebooks * (self.k * self.d * self.codebook_bits + self.scale_bits)

    def decode_lookups(self, n_weights: int) -> int:
        return self.n_vectors(n_weights)

    @property
    def pe_bits(self) -> int:
        return self.codebook_bits


@dataclass(frozen=True)
class TruncFormat(DenseFormat):
    """Weight truncation: INT`source_bits` weights with the low bits dropped,
    keeping `bits` bits (sign + bits-1 most significant magnitude bits). Stored
    and computed like a dense `bits`-bit weight; kept apart so that reports say
    which baseline it is (the comparison SWIS makes)."""

    source_bits: int = 8
    name = "trunc"
    _MIN: ClassVar[dict] = {"bits": 1, "source_bits": 1}

    def _check(self):
        if self.bits > self.source_bits:
            raise ValueError(f"{self.name}: bits: must be <= source_bits={self.source_bits}, got {self.bits}")


@dataclass(frozen=True)
class NMFormat(WeightFormat):
    """N:M structured sparsity: in every group of M consecutive weights along
    the input channels N are kept, each stored at `value_bits`; the mask costs
    nm_mask_bits_per_group(n, m, mask_encoding) per group. Runs are padded to
    a multiple of M (see `run_len`). Per-channel scales as in DenseFormat."""

    n: int = 2
    m: int = 4
    value_bits: int = 8
    mask_encoding: str = "bitmap"
    n_scales: int = 0
    scale_bits: int = 32
    run_len: int = 0
    name = "nm"
    _MIN: ClassVar[dict] = {"n": 1, "m": 1, "value_bits": 1}

    def _check(self):
        _check_nm(self)

    def n_groups(self, n_weights: int) -> int:
        return _padded(n_weights, self.run_len, self.m) // self.m

    def mask_bits(self, n_weights: int) -> int:
        return self.n_groups(n_weights) * nm_mask_bits_per_group(self.n, self.m, self.mask_encoding)

    def payload_bits(self, n_weights: int) -> int:
        return self.n_groups(n_weights) * self.n * self.value_bits + self.mask_bits(n_weights)

    def side_bits(self, n_weights: int) -> int:
        return self.n_scales * self.scale_bits

    @property
    def density(self) -> float:
        """Share of weights (and of MACs) kept."""
        return self.n / self.m

    @property
    def pe_bits(self) -> int:
        return self.value_bits


@dataclass(frozen=True)
class MVQFormat(VQFormat):
    """MVQ: N:M pruning, then (masked) VQ of the pruned weights. Payload per
    sub-vector: a log2(k)-bit index; per group of M: the N:M mask. Runs are
    padded to a multiple of lcm(d, m) so that mask groups never straddle a
    sub-vector. Decoding: W_hat[v] = mask[v] * C[idx[v]]."""

    n: int = 2
    m: int = 4
    mask_encoding: str = "bitmap"
    name = "mvq"
    _MIN: ClassVar[dict] = {**VQFormat._MIN, "n": 1, "m": 1}

    def _check(self):
        _check_nm(self)

    def _unit(self) -> int:
        return math.lcm(self.d, self.m)

    def n_vectors(self, n_weights: int) -> int:
        return _padded(n_weights, self.run_len, self._unit()) // self.d

    def n_groups(self, n_weights: int) -> int:
        return _padded(n_weights, self.run_len, self._unit()) // self.m

    def mask_bits(self, n_weights: int) -> int:
        return self.n_groups(n_weights) * nm_mask_bits_per_group(self.n, self.m, self.mask_encoding)

    def payload_bits(self, n_weights: int) -> int:
        return self.n_vectors(n_weights) * _ceil_log2(self.k) + self.mask_bits(n_weights)

    @property
    def density(self) -> float:
        """Share of weights kept: the sparsity-aware array keeps N/M of its PEs."""
        return self.n / self.m


@dataclass(frozen=True)
class SSVQFormat(VQFormat):
    """SSVQ: VQ of |W| (codebook of magnitudes, unsigned `codebook_bits`) plus
    `sign_bits` (1) per weight; the decoder applies the sign after the lookup,
    so the PEs see a sign-magnitude value of codebook_bits + 1 bits."""

    sign_bits: int = 1
    name = "ssvq"

    def payload_bits(self, n_weights: int) -> int:
        return super().payload_bits(n_weights) + n_weights * self.sign_bits

    @property
    def pe_bits(self) -> int:
        return self.codebook_bits + self.sign_bits


@dataclass(frozen=True)
class PQFormat(WeightFormat):
    """PQA: product quantization of the layer's input activations; the weights
    are folded into lookup tables and not stored at all (payload 0).

    For a layer of n_weights = cout * K (K = C*kh*kw or in_features):
      Ns = ceil(K / Ls) subspaces, each with Np prototypes of Ls entries at
      `proto_bits` and a LUT of Np x cout entries at `lut_bits`;
      side data = Ns*Np*Ls*proto_bits + Ns*Np*cout*lut_bits + 2 scales
      (one for the prototypes, one for the LUT) of `scale_bits`.
    Work per input column (output pixel): Ns*Np*Ls distance MACs, then Ns LUT
    row reads of cout entries accumulated."""

    Ls: int = 9
    Np: int = 16
    proto_bits: int = 8
    lut_bits: int = 16
    cout: int = 1
    scale_bits: int = 32
    name = "pq"
    _MIN: ClassVar[dict] = {"Ls": 1, "Np": 1, "proto_bits": 1, "lut_bits": 1, "cout": 1}

    def k_in(self, n_weights: int) -> int:
        return n_weights // self.cout

    def n_subspaces(self, n_weights: int) -> int:
        return math.ceil(self.k_in(n_weights) / self.Ls)

    def prototype_bits(self, n_weights: int) -> int:
        return self.n_subspaces(n_weights) * self.Np * self.Ls * self.proto_bits

    def lut_table_bits(self, n_weights: int) -> int:
        return self.n_subspaces(n_weights) * self.Np * self.cout * self.lut_bits

    def payload_bits(self, n_weights: int) -> int:
        return 0

    def side_bits(self, n_weights: int) -> int:
        return self.prototype_bits(n_weights) + self.lut_table_bits(n_weights) + 2 * self.scale_bits

    def distance_macs_per_column(self, n_weights: int) -> int:
        return self.n_subspaces(n_weights) * self.Np * self.Ls

    def for_layer(self, layer) -> "PQFormat":
        # the LUT has one column per output channel of this layer (all groups)
        cout = layer.groups * layer.N
        return self if cout == self.cout else dataclasses.replace(self, cout=cout)

    def lut_reads_per_column(self, n_weights: int) -> int:
        """LUT rows (of cout entries) read and accumulated per input column."""
        return self.n_subspaces(n_weights)

    @property
    def pe_bits(self) -> int:
        """The datapath adds LUT entries; there is no weight operand."""
        return self.lut_bits


@dataclass(frozen=True)
class SWISFormat(WeightFormat):
    """SWIS: groups of G consecutive weights (input-channel direction) share N
    bit positions out of B; each weight stores a sign and N bits, each group N
    shift amounts of ceil(log2 B) bits:
        bits per weight = 1 + N + N*ceil(log2 B)/G.
    With a per-group N (a scheduling policy under a bit budget) `shared_bits`
    is the mean N, `max_shared_bits` the largest, and each group also stores
    its N in `group_n_bits` bits. The PE array is weight-bit-serial: a group
    takes N cycles instead of B (`pe_cycles_per_weight`). Runs are padded to a
    multiple of G; per-channel scales as in DenseFormat.

    `group_n` (optional; "" = every group has N = max_shared_bits): the real
    N of every group, one decimal digit per group, in the compression's
    group order (rows of workloads.compression._common.to_rows, each padded
    to a multiple of G, cut into groups of G). A string, so the format stays
    hashable (its hash is cached), JSON-ready and round-trips through
    describe() / format_from_dict(). The SWIS PE kind (archsim/hw/swis.py)
    reads it for its lock-step cycles. The shift tables (N shift amounts of
    ceil(log2 B) bits per group) are counted in the payload: they travel
    with the weight tile they belong to and sit in the row shifters while
    the tile is in the array."""

    group_size: int = 8
    weight_bits: int = 8
    shared_bits: float = 3
    max_shared_bits: int = 3
    group_n_bits: int = 0
    n_scales: int = 0
    scale_bits: int = 32
    run_len: int = 0
    group_n: str = ""
    name = "swis"
    _MIN: ClassVar[dict] = {"group_size": 1, "weight_bits": 1}

    def _check(self):
        for f in ("shared_bits", "max_shared_bits"):
            if getattr(self, f) > self.weight_bits:
                raise ValueError(f"{self.name}: {f}: must be <= weight_bits={self.weight_bits}, "
                                 f"got {getattr(self, f)!r}")
        if self.group_n:
            if not self.group_n.isdigit() or not self.group_n.isascii():
                raise ValueError(f"{self.name}: group_n: must be one digit per group, got {self.group_n[:20]!r}")
            top = max(self.group_n)
            if int(top) > self.max_shared_bits:
                raise ValueError(f"{self.name}: group_n: a group has N={top} > max_shared_bits="
                                 f"{self.max_shared_bits}")

    def group_n_array(self):
        """Per-group N as a numpy uint8 array (empty when not recorded)."""
        import numpy as np

        return np.frombuffer(self.group_n.encode("ascii"), dtype=np.uint8) - ord("0")

    def describe(self) -> dict:
        d = super().describe()
        if not self.group_n:
            d.pop("group_n")
        return d

    def n_groups(self, n_weights: int) -> int:
        return _padded(n_weights, self.run_len, self.group_size) // self.group_size

    def payload_bits(self, n_weights: int) -> int:
        groups = self.n_groups(n_weights)
        slots = groups * self.group_size
        shift_bits = _ceil_log2(self.weight_bits)
        return math.ceil(slots * (1 + self.shared_bits)
                         + groups * (self.shared_bits * shift_bits + self.group_n_bits))

    def side_bits(self, n_weights: int) -> int:
        return self.n_scales * self.scale_bits

    @property
    def pe_cycles_per_weight(self) -> float:
        """Bit-serial cycles per weight (per group in lock-step): mean N."""
        return self.shared_bits

    @property
    def pe_bits(self) -> int:
        """Each cycle the PE gates the activation with one weight bit."""
        return 1


def format_from_dict(d: dict) -> WeightFormat:
    """Inverse of `describe()`: rebuild a format from a plain dict."""
    import difflib

    d = dict(d)
    kind = d.pop("format")
    classes = {cls.name: cls for cls in _all_formats()}
    cls = classes.get(kind)
    if cls is None:
        near = difflib.get_close_matches(str(kind), classes, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else f" (known: {', '.join(sorted(classes))})"
        raise ValueError(f"unknown weight format {kind!r}{hint}")
    names = [f.name for f in fields(cls)]
    for key in d:
        if key not in names:
            near = difflib.get_close_matches(str(key), names, n=1)
            hint = f"did you mean {near[0]!r}?" if near else f"it takes {', '.join(names)}"
            raise ValueError(f"{kind}: {key}: unknown parameter ({hint})")
    return cls(**d)


def _all_formats():
    seen, todo = [], [WeightFormat]
    while todo:
        c = todo.pop()
        for s in c.__subclasses__():
            seen.append(s)
            todo.append(s)
    return seen


# ---------------------------------------------------------------------------
# VQ formats as LLMs use them (issue 21). Both are built from parameters
# alone, so a meta-device model (shapes only) gets its formats without weights.
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class AdditiveVQFormat(VQFormat):
    """Additive multi-codebook VQ (AQLM, Egiazarian et al., ICML 2024): every
    sub-vector of d weights stores one log2(k)-bit index into EACH of the
    `n_codebooks` (M) codebooks of the layer, and is rebuilt as the sum of the
    M codewords: M lookups and (M-1) x d additions per sub-vector.
        bits/weight = M * log2(k) / d  (+ codebooks, + scales)
    AQLM's 2-bit settings: "2x8" (M=2, k=2^8, d=8) and "1x16" (M=1, k=2^16,
    d=8). Codebooks are FP16 (codebook_bits=16); `n_scales` per-output-channel
    scales of `scale_bits` (AQLM keeps one FP16 scale per output channel)."""

    k: int = 256
    d: int = 8
    codebook_bits: int = 16
    n_codebooks: int = 2
    n_scales: int = 0
    name = "aqlm"

    def payload_bits(self, n_weights: int) -> int:
        return self.n_vectors(n_weights) * self.n_codebooks * _ceil_log2(self.k)

    def side_bits(self, n_weights: int) -> int:
        return self.n_codebooks * self.k * self.d * self.codebook_bits + self.n_scales * self.scale_bits

    def decode_lookups(self, n_weights: int) -> int:
        return self.n_vectors(n_weights) * self.n_codebooks

    def decode_adds(self, n_weights: int) -> int:
        """Element additions that sum the M codewords of every sub-vector."""
        return self.n_vectors(n_weights) * (self.n_codebooks - 1) * self.d


@dataclass(frozen=True)
class LargeCodebookVQFormat(VQFormat):
    """Large-codebook VQ (QuIP#'s E8P and VPTQ: 2^16 codewords of d=8, 16-bit
    indices = 2 bits/weight), optionally with a residual codebook of
    `residual_k` codewords (VPTQ's residual VQ; 0 = none) whose codeword is
    added to the main one: one more index of log2(residual_k) bits, one more
    lookup and d additions per sub-vector. A 2^16 x 8 FP16 codebook is 1 MiB
    per layer: it is counted in the storage and loaded like any codebook,
    which is where the decoder pays for it.
    (QuIP# stores E8P as 256 entries plus sign/shift symmetry; this format
    counts the plain table, as VPTQ and AQLM-1x16 store it.)"""

    k: int = 1 << 16
    d: int = 8
    codebook_bits: int = 16
    residual_k: int = 0
    n_scales: int = 0
    name = "lcvq"

    def payload_bits(self, n_weights: int) -> int:
        per = _ceil_log2(self.k) + (_ceil_log2(self.residual_k) if self.residual_k else 0)
        return self.n_vectors(n_weights) * per

    def side_bits(self, n_weights: int) -> int:
        table = (self.k + self.residual_k) * self.d * self.codebook_bits
        return self.n_codebooks * table + self.n_scales * self.scale_bits

    def decode_lookups(self, n_weights: int) -> int:
        return self.n_vectors(n_weights) * (2 if self.residual_k else 1)

    def decode_adds(self, n_weights: int) -> int:
        return self.n_vectors(n_weights) * self.d if self.residual_k else 0


def llm_weight_format(spec: str, out_features: int) -> WeightFormat:
    """A weight format from its name alone (no weight values), for meta
    models: 'fp16', 'int8', 'int4' (per-output-channel FP16 scales),
    'aqlm-2x8' (2 bits/weight additive VQ), 'aqlm-1x16', 'lcvq' (2^16 x 8,
    2 bits/weight), 'lcvq-res' (+ a 2^8 residual codebook, 3 bits/weight).
    Scales: one FP16 per output channel, as AQLM and the INT formats store them."""
    s = spec.lower()
    if s == "fp16":
        return DenseFormat(bits=16)
    if s in ("int8", "int4", "int3", "int2"):
        return DenseFormat(bits=int(s[3:]), n_scales=out_features, scale_bits=16)
    if s == "aqlm-2x8":
        return AdditiveVQFormat(k=256, d=8, n_codebooks=2, n_scales=out_features, scale_bits=16)
    if s == "aqlm-1x16":
        return AdditiveVQFormat(k=1 << 16, d=8, n_codebooks=1, n_scales=out_features, scale_bits=16)
    if s == "lcvq":
        return LargeCodebookVQFormat(n_scales=out_features, scale_bits=16)
    if s == "lcvq-res":
        return LargeCodebookVQFormat(residual_k=256, n_scales=out_features, scale_bits=16)
    raise ValueError(f"unknown LLM weight format {spec!r} (known: {', '.join(LLM_WEIGHT_FORMATS)})")


LLM_WEIGHT_FORMATS = ("fp16", "int8", "int4", "int3", "int2", "aqlm-2x8", "aqlm-1x16", "lcvq", "lcvq-res")
