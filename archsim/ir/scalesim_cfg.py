"""A SCALE-Sim .cfg file as plain data (ScaleSimConfig): the architecture
part of SCALE-Sim v3's configuration (scalesim/scale_config.py). Read both by
the architecture loader (archsim.config: a .cfg becomes an ArchSpec) and by
the topology importer (workloads.scalesim_import: the sparsity keys decide how
a topology's N:M column applies), so it sits in the IR below both."""
from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from .errors import ArchsimError

PathLike = Union[str, Path]

SPARSE_REPS = ("csr", "csc", "ellpack_block")
# SCALE-Sim SparseRep -> archsim.ir.formats N:M mask encoding (module docstring)
MASK_ENCODING_FOR_SPARSE_REP = {"ellpack_block": "offsets", "csr": "bitmap", "csc": "bitmap"}
DEFAULT_MASK_ENCODING = "offsets"

DATAFLOWS = ("ws", "os", "is")
INTERFACE_BANDWIDTH_MODES = ("CALC", "USER")


@dataclass(frozen=True)
class ScaleSimConfig:
    """The architecture part of a SCALE-Sim .cfg file.

    SRAM sizes are in KiB, as SCALE-Sim reads them. `bandwidth` is DRAM
    words per cycle (SCALE-Sim's `Bandwidth`); SCALE-Sim uses it only when
    `interface_bandwidth` is 'USER' (there it is required), and with 'CALC'
    reports the bandwidth needed for no stalls instead. None: not given.

    The sparsity_* fields are SCALE-Sim v3's [sparsity] section
    (scalesim/scale_config.py, read_conf_file): SparsitySupport (whether
    the topologies' N:M column is applied at all), SparseRep ('csr', 'csc'
    or 'ellpack_block': how the filter metadata is counted), OptimizedMapping
    (True: SCALE-Sim ignores the topology's N and gives every filter column a
    random N in [1, BlockSize/2] per BlockSize weights, seeded by
    RandomNumberGeneratorSeed), BlockSize, RandomNumberGeneratorSeed. As in
    SCALE-Sim, the other keys are read only when SparsitySupport is true and
    BlockSize only when OptimizedMapping is; otherwise SCALE-Sim's defaults
    ('', False, 4, 40) stand.
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
    sparsity_support: bool = False
    sparse_rep: str = ""
    sparsity_optimized_mapping: bool = False
    sparsity_block_size: int = 4
    sparsity_rand_seed: int = 40

    @property
    def mask_encoding(self) -> str:
        """The N:M mask encoding matching SparseRep (mask_encoding_for)."""
        return mask_encoding_for(self.sparse_rep)


def mask_encoding_for(sparse_rep: str) -> str:
    """archsim.ir.formats mask encoding for a SCALE-Sim SparseRep:
    ellpack_block -> 'offsets' (ceil(log2 M) bits per kept weight, SCALE-Sim's
    own count); csr/csc -> 'bitmap' (their per-non-zero indices and pointers
    match no per-group mask); '' (no sparsity) -> 'offsets'."""
    return MASK_ENCODING_FOR_SPARSE_REP.get(sparse_rep, DEFAULT_MASK_ENCODING)


def read_scalesim_cfg(path: PathLike) -> ScaleSimConfig:
    """Parse a SCALE-Sim .cfg file (INI: [general], [architecture_presets],
    [run_presets], [sparsity]; keys are case-insensitive, 'key: value' or
    'key = value'). SCALE-Sim 3.0.0 requires [sparsity]; here a file without
    it reads as SparsitySupport false. SCALE-Sim takes any boolean spelling
    other than 'true' as false; here the boolean keys must be true or false
    (any case), so a typo is not silently read as false."""
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

    def get_bool(section: str, key: str) -> bool:
        value = get(section, key).lower()
        if value not in ("true", "false"):
            raise ArchsimError(f"expected true or false, got {value!r}", file=str(path), field=key)
        return value == "true"

    rows = get_int(arch, "ArrayHeight")
    sp = "sparsity"
    sparse = dict(sparsity_support=False)
    if cp.has_section(sp) and get_bool(sp, "SparsitySupport"):
        rep = get(sp, "SparseRep")
        if rep not in SPARSE_REPS:  # SCALE-Sim compares case-sensitively
            raise ArchsimError(f"must be one of {SPARSE_REPS}, got {rep!r}", file=str(path),
                               field="SparseRep")
        seed = get(sp, "RandomNumberGeneratorSeed")
        try:
            seed_int = int(seed)
        except ValueError:
            raise ArchsimError(f"expected an integer, got {seed!r}", file=str(path),
                               field="RandomNumberGeneratorSeed") from None
        sparse = dict(sparsity_support=True, sparse_rep=rep,
                      sparsity_optimized_mapping=get_bool(sp, "OptimizedMapping"),
                      sparsity_rand_seed=seed_int)
        if sparse["sparsity_optimized_mapping"]:
            block = get_int(sp, "BlockSize")
            if block > rows:  # SCALE-Sim asserts BlockSize <= ArrayHeight
                raise ArchsimError(f"BlockSize {block} exceeds ArrayHeight {rows}", file=str(path),
                                   field="BlockSize")
            sparse["sparsity_block_size"] = block
    return ScaleSimConfig(
        run_name=get("general", "run_name"),
        rows=rows,
        cols=get_int(arch, "ArrayWidth"),
        ifmap_sram_kb=get_int(arch, "IfmapSramSzkB"),
        filter_sram_kb=get_int(arch, "FilterSramSzkB"),
        ofmap_sram_kb=get_int(arch, "OfmapSramSzkB"),
        dataflow=dataflow,
        bandwidth=bandwidth,
        interface_bandwidth=mode,
        memory_banks=banks,
        **sparse,
    )
