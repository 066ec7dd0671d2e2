"""`kind: ews`: the enhanced weight-stationary array MVQ builds on (Li et al.,
ASPLOS 2025: "each PE keeps small register files for
weights, activations and partial sums").

What the register files change, as modelled here (the paper's text we could
read gives the idea, not the micro-architecture; these are documented
choices, each a parameter):
  * weight RF (`weight_rf_entries` >= 2): the next fold's weights are shifted
    into a second RF entry while the current fold streams, so the `rows`
    cycles of weight shift-in are paid once per layer, not once per fold
    (a fold is rows-1 input skew + T + cols-1 drain);
  * activation RF: each activation is written once into a PE's RF and read by
    its MAC (an RF write + read per MAC instead of a pipeline register move);
  * psum RF: the partial sum is read and written in the PE's RF per MAC.
Register-file energy per access is its width times the register_1b row (a
small RF built of flip-flops, Aladdin's register model); area is its bits
times register_1b's area.

Area is reported per part (`area_um2`; `area_sources` says where each
number comes from): the PEs' multipliers, adders and three register files,
and the array's control. Control is a derived estimate: per PE a valid bit
and the select bits of the weight and activation RFs (flip-flops), plus one
sequencer of six 16-bit loop counters (register + incrementer + compare).
"""
from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, PositiveInt

from .pe_kind import Fold, register_pe_kind
from .systolic import SystolicArray, SystolicSpec


class EWSSpec(SystolicSpec):
    kind: Literal["ews"] = "ews"
    dataflow: Literal["ws"] = "ws"
    weight_rf_entries: int = Field(2, ge=2, description="weights per PE: >= 2 hides the next fold's weight load")
    act_rf_entries: PositiveInt = 2
    psum_rf_entries: PositiveInt = 1


@register_pe_kind("ews")
class EWSArray(SystolicArray):
    Spec = EWSSpec

    def fold_cycles(self, fold: Fold, fmt) -> int:
        # the weight shift-in (rows cycles) is hidden behind the previous fold;
        # only the layer's very first fold pays it (first chunk of row fold 0)
        skew = self.rows - 1
        fill = skew + (self.rows if fold.layer_first else 0)
        return fold.stream_len + (fill if fold.first else 0) + (self.cols - 1 if fold.last else 0)

    def fold_actions(self, fold: Fold, fmt) -> dict[str, int]:
        macs = fold.rows_used * fold.cols_used * fold.stream_len
        weights = fold.rows_used * fold.cols_used if fold.first else 0
        return {"pe_arith.mac": macs, "rf.act": macs, "rf.psum": macs, "rf.weight_write": weights}

    def action_costs(self, em) -> dict[str, tuple[float, str]]:
        s = self.spec
        reg = em.table.value("register_1b", "pJ/access")
        src = em.src("register_1b")
        return {"pe_arith.mac": self._mac_pj(em),
                "rf.act": (reg * 2 * s.act_bits, f"register_1b x 2 x act_bits (RF write + read) ({src})"),
                "rf.psum": (reg * 2 * s.acc_bits, f"register_1b x 2 x acc_bits (RF read + write) ({src})"),
                "rf.weight_write": (reg * s.weight_bits, f"register_1b x weight_bits ({src})")}

    def register_bits(self) -> int:
        """Register-file bits per PE (weights, activations, partial sums)."""
        s = self.spec
        return s.weight_rf_entries * s.weight_bits + s.act_rf_entries * s.act_bits + s.psum_rf_entries * s.acc_bits

    # -- area, part by part ------------------------------------------------------
    SEQUENCER_COUNTERS = 6  # loop counters of a ws nest: col fold, row fold, chunk, pixel, group, layer
    SEQUENCER_BITS = 16

    def weight_entry_bits(self) -> int:
        """Bits of one weight-RF entry."""
        return self.spec.weight_bits

    def act_rf_bits(self) -> int:
        """Activation-RF bits per PE."""
        return self.spec.act_rf_entries * self.spec.act_bits

    def control_bits_per_pe(self) -> int:
        """Valid bit + which weight-RF entry is live + which activation-RF entry."""
        s = self.spec
        sel = lambda n: math.ceil(math.log2(n)) if n > 1 else 0  # noqa: E731
        return 1 + sel(s.weight_rf_entries) + sel(s.act_rf_entries)

    def register_bits(self) -> int:
        s = self.spec
        return s.weight_rf_entries * self.weight_entry_bits() + self.act_rf_bits() + s.psum_rf_entries * s.acc_bits

    def area_um2(self, em) -> dict[str, tuple[float, str]]:
        s, t = self.spec, em.table
        pes, reg = self.rows * self.cols, t.area("register_1b")
        seq = self.SEQUENCER_COUNTERS * (self.SEQUENCER_BITS * reg + 2 * t.area("int16_add"))
        return {"pe_array.mult": (pes * t.area("int8_mult") * s.weight_bits * s.act_bits / 64, "logic"),
                "pe_array.add": (pes * t.area("int32_add") * s.acc_bits / 32, "logic"),
                "pe_array.rf_weight": (pes * s.weight_rf_entries * self.weight_entry_bits() * reg, "logic"),
                "pe_array.rf_act": (pes * self.act_rf_bits() * reg, "logic"),
                "pe_array.rf_psum": (pes * s.psum_rf_entries * s.acc_bits * reg, "logic"),
                "control": (pes * self.control_bits_per_pe() * reg + seq, "logic")}

    def area_sources(self, em) -> dict[str, str]:
        """Where each part of `area_um2` comes from (a table row, or a derived
        estimate with its derivation)."""
        s, r = self.spec, em.src
        return {
            "pe_array.mult": f"int8_mult x{s.weight_bits}*{s.act_bits}/64 per PE ({r('int8_mult')})",
            "pe_array.add": f"int32_add x{s.acc_bits}/32 per PE ({r('int32_add')})",
            "pe_array.rf_weight": f"register_1b x {s.weight_rf_entries} entries x {self.weight_entry_bits()} b "
                                  f"per PE ({r('register_1b')})",
            "pe_array.rf_act": f"register_1b x {self.act_rf_bits()} b per PE ({r('register_1b')})",
            "pe_array.rf_psum": f"register_1b x {s.psum_rf_entries} x {s.acc_bits} b per PE ({r('register_1b')})",
            "control": (f"derived estimate: register_1b x {self.control_bits_per_pe()} b per PE (valid + RF "
                        f"selects) + a sequencer of {self.SEQUENCER_COUNTERS} x {self.SEQUENCER_BITS}-bit "
                        f"counters (register_1b x16 + 2 x int16_add each) ({r('register_1b')}; "
                        f"{r('int16_add')})"),
        }


# What the MVQ paper's "systolic array" covers, as parts of area_um2: the PEs
# (multiplier, adder, register files), the activation-select muxes and the
# array's control; not the weight loader (codebook RF, mask decoders) nor the
# buffers, which its accelerator has beside the array.
ARRAY_PARTS = ("pe_array", "mux", "control")
GROUPS = {"pe_array": "PEs", "mux": "activation-select muxes", "control": "control",
          "codebook": "weight loader", "decoder": "weight loader", "sram": "buffers"}


def array_area_um2(area: dict) -> float:
    """The systolic array's area (ARRAY_PARTS) out of a report's area_um2."""
    return sum(v for k, v in area.items() if k.split(".")[0] in ARRAY_PARTS)


def area_rows(em) -> list[dict]:
    """One row per area part of an EnergyModel (node-scaled um^2): its group,
    and where the number comes from."""
    src = dict(em.pe.area_sources(em)) if hasattr(em.pe, "area_sources") else {}
    a, arch = em.area_um2(), em.arch
    if arch.codebook is not None:
        from .codebook import CodebookBuffer

        cap = CodebookBuffer.capacity_bytes(arch.codebook)
        src["codebook"] = (f"codebook RF of {arch.codebook.entries} x {arch.codebook.width_bits} b priced as a "
                           f"{cap} B SRAM: CACTI 7 rows interpolated")
    if arch.decoder is not None:
        src["decoder"] = (f"derived estimate: {arch.decoder.vectors_per_cycle} lookup lanes x 2 x "
                          f"{arch.codebook.width_bits} b latches ({em.src('register_1b')})"
                          + (f" + {arch.decoder.mask_decoders} LZC mask decoders ({em.src('lzc_8b')})"
                             if hasattr(arch.decoder, "mask_decoders") else ""))
    for b in ("weight", "input", "output"):
        src[f"sram_{b}"] = f"{getattr(arch.buffers, b).capacity_bytes} B SRAM: CACTI 7 rows interpolated"
    note = f"; {em.scaling_note}" if em.scaling_note else ""
    group = lambda k: GROUPS["sram"] if k.startswith("sram_") else GROUPS.get(k.split(".")[0], k)  # noqa: E731
    return [{"part": k, "group": group(k), "um2": v, "source": src.get(k, "") + note}
            for k, v in a.items() if k != "total"]
