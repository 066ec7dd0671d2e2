"""The one owner of colours in archsim's figures: a name (an energy
component, an architecture, a compression method, "paper" / "archsim") gets
the same colour in every figure, whatever else the figure shows.

Known names have fixed colours (the Okabe-Ito colour-blind-safe set first);
any other name is placed in the palette by a stable hash of the name (not by
its position in a figure's list, which is what made a component change
colour between two figures).
"""
from __future__ import annotations

import zlib

# Okabe & Ito (2008), "Color Universal Design", then the rest of matplotlib's tab20
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
           "#8c564b", "#7f7f7f", "#bcbd22", "#17becf", "#9467bd", "#aec7e8", "#ffbb78", "#98df8a",
           "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5")

FIXED = {
    # paper vs archsim
    "paper": "#BBBBBB", "archsim": "#0072B2",
    # energy components (archsim.report.energy_components)
    "dram": "#D55E00", "sram": "#E69F00", "compute": "#0072B2", "mac": "#0072B2", "pe_array": "#0072B2",
    "static": "#7f7f7f", "decoder": "#009E73", "decode": "#009E73", "lut": "#CC79A7", "mux": "#56B4E9",
    "writeback": "#F0E442", "vector": "#8c564b", "codebook": "#9467bd",
    # compression methods
    "dense": "#7f7f7f", "int": "#7f7f7f", "vq": "#0072B2", "mvq": "#009E73", "ssvq": "#CC79A7",
    "pq": "#E69F00", "swis": "#D55E00", "nm": "#56B4E9", "trunc": "#bcbd22",
    # LLM weight formats (archsim.ir.formats.LLM_WEIGHT_FORMATS): a bit width is a format, not a family
    "fp16": "#000000", "int8": "#7f7f7f", "int4": "#bcbd22", "int3": "#dbdb8d", "int2": "#c49c94",
    "aqlm": "#17becf", "lcvq": "#9467bd",
    # bit-serial family
    "stripes": "#56B4E9", "pragmatic": "#E69F00",
}


def color(name: str) -> str:
    """The colour of `name`: fixed for a known name (case-insensitive; an
    architecture like 'stripes16' takes the colour of its family), else a
    stable hash of the name into PALETTE."""
    key = str(name).lower()
    if key in FIXED:
        return FIXED[key]
    # 'stripes16' -> stripes; a format with parameters ('aqlm-2x8', 'vq:k=256,d=8') -> its name
    for stem in (key.rstrip("0123456789_"), key.split(":")[0].split("-")[0]):
        if stem in FIXED:
            return FIXED[stem]
    return PALETTE[zlib.crc32(key.encode()) % len(PALETTE)]


def colors(names) -> list[str]:
    return [color(n) for n in names]
