"""WeightFormat: what a compression method produced for one layer, as data.

Each format answers three questions and the simulator never re-derives them:
  * storage: bits for the per-weight payload (indices, masks, signs, low bits)
    plus the layer's side data (codebooks, shift tables, prototypes, LUTs);
  * movement: bytes to move from DRAM for a tile of n weights, and the side
    data that must be resident on chip (e.g. a codebook) while the layer runs;
  * decode work: codebook lookups needed to rebuild n weights before the PEs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field


def _ceil_log2(k: int) -> int:
    return max(1, math.ceil(math.log2(k))) if k > 1 else 0


@dataclass(frozen=True)
class WeightFormat:
    """Base class. Subclasses override `payload_bits` and, if they carry side
    data or need decoding, `side_bits` and `decode_lookups`."""

    name = "base"

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
    """Uncompressed integer (or float) weights of `bits` bits each."""

    bits: int = 8
    name = "dense"

    def payload_bits(self, n_weights: int) -> int:
        return n_weights * self.bits

    @property
    def pe_bits(self) -> int:
        return self.bits


@dataclass(frozen=True)
class VQFormat(WeightFormat):
    """Vector quantization: sub-vectors of length d along the input-channel
    direction, each replaced by a log2(k)-bit index into a codebook of k
    codewords stored at `codebook_bits` per element. `n_codebooks` > 1 means
    several codebooks per layer (e.g. one per group of output channels)."""

    k: int = 256
    d: int = 4
    codebook_bits: int = 8
    n_codebooks: int = 1
    name = "vq"

    def n_vectors(self, n_weights: int) -> int:
        return math.ceil(n_weights / self.d)

    def payload_bits(self, n_weights: int) -> int:
        return self.n_vectors(n_weights) * _ceil_log2(self.k)

    def side_bits(self, n_weights: int) -> int:
        return self.n_codebooks * self.k * self.d * self.codebook_bits

    def decode_lookups(self, n_weights: int) -> int:
        return self.n_vectors(n_weights)

    @property
    def pe_bits(self) -> int:
        return self.codebook_bits


def format_from_dict(d: dict) -> WeightFormat:
    """Inverse of `describe()`: rebuild a format from a plain dict."""
    d = dict(d)
    kind = d.pop("format")
    for cls in _all_formats():
        if cls.name == kind:
            return cls(**d)
    raise ValueError(f"unknown weight format {kind!r}")


def _all_formats():
    seen, todo = [], [WeightFormat]
    while todo:
        c = todo.pop()
        for s in c.__subclasses__():
            seen.append(s)
            todo.append(s)
    return seen
