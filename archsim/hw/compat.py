"""Which weight format runs on which datapath, and by what rule.

Each PE kind lists the formats it executes (`PEKind.weight_formats`, with
the rule of each) and may refuse some parameters (`format_problem`, e.g. an
N:M pattern the array is not built for); each decoder kind lists the formats
it rebuilds (`formats`). A format that needs decoding (VQ and its kin) runs
only where both the PE kind and the architecture's decoder list it. Every
(format, PE kind, decoder) triple is thus either run by a stated rule or
refused with one line, before tiling (`check_layers`). Nothing here is
specific to one kind: a user's kind declares the same two things.
"""
from __future__ import annotations

from ..ir.errors import ArchsimError
from . import registry

NO_DECODER = "-"


def format_names() -> list[str]:
    from archsim.ir.formats import _all_formats

    return sorted({c.name for c in _all_formats()})


def needs_decoder(fmt_name: str) -> bool:
    """Does a format of this name rebuild its weights by codebook lookups?"""
    from archsim.ir.formats import _all_formats

    cls = next(c for c in _all_formats() if c.name == fmt_name)
    return cls().decode_lookups(64) > 0


def verdict(fmt_name: str, pe_kind: str, decoder_kind: str = NO_DECODER) -> tuple[bool, str]:
    """(runs?, the rule it runs by or why it is refused) for one triple."""
    pe = registry.lookup("pe_array", pe_kind)
    rule = pe.weight_formats.get(fmt_name)
    if rule is None:
        return False, (f"a {pe_kind} array runs {', '.join(pe.weight_formats) or 'no'} weights only, "
                       f"not {fmt_name}")
    if not needs_decoder(fmt_name):
        return True, rule
    if decoder_kind == NO_DECODER:
        return False, f"{fmt_name} weights need a codebook buffer and a decoder, and the architecture has none"
    dec = registry.lookup("decoder", decoder_kind)
    how = getattr(dec, "formats", {}).get(fmt_name)
    if how is None:
        return False, (f"its {decoder_kind} rebuilds {', '.join(getattr(dec, 'formats', {})) or 'no'} "
                       f"weights only, not {fmt_name}")
    return True, f"{how}; {rule}"


def table() -> list[tuple[str, str, str, bool, str]]:
    """Every (format, PE kind, decoder) triple with its verdict."""
    decoders = [NO_DECODER] + registry.kinds("decoder")
    return [(f, k, d, *verdict(f, k, d))
            for f in format_names() for k in registry.kinds("pe_array") for d in decoders]


def arch_formats(arch) -> list[str]:
    """The weight formats an architecture runs (before parameter checks)."""
    dec = arch.decoder.kind if arch.decoder is not None else NO_DECODER
    return [f for f in format_names() if verdict(f, arch.pe_array.kind, dec)[0]]


def check_layers(layers, arch, pe) -> None:
    """Refuse, in one line naming the layer and the field, the first layer
    whose weight format `arch` cannot run. Matmuls have no weights."""
    dec = arch.decoder.kind if arch.decoder is not None else NO_DECODER
    seen = set()
    for L in layers:
        if L.op == "matmul" or L.fmt in seen:
            continue
        seen.add(L.fmt)
        ok, why = verdict(L.fmt.name, arch.pe_array.kind, dec)
        field = ("pe_array.kind" if L.fmt.name not in pe.weight_formats
                 else "codebook" if arch.codebook is None else "decoder")  # the first block missing
        if ok:
            problem = pe.format_problem(L.fmt)
            if problem is None:
                continue
            why, field = problem
        raise ArchsimError(f"layer {L.name}: {why} (architecture {arch.name}; `archsim list` shows "
                           f"which architecture runs which format)", file=arch.path, field=field)
