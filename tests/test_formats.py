"""Weight formats: storage accounting against hand-computed cases, and the
dict round trip the reports and the CLI rely on."""
import math

import pytest

from archsim.ir.formats import (DenseFormat, MVQFormat, NMFormat, PQFormat, SSVQFormat, SWISFormat,
                               TruncFormat, VQFormat, WeightFormat, _all_formats, format_from_dict,
                               nm_mask_bits_per_group)

ALL = [DenseFormat(), DenseFormat(bits=4, n_scales=64, scale_bits=16), TruncFormat(bits=4, n_scales=8),
       VQFormat(), VQFormat(k=16, d=8, scale_bits=32, run_len=3), NMFormat(n=1, m=4, mask_encoding="offsets"),
       MVQFormat(d=16, n=2, m=8), SSVQFormat(k=64, d=8), PQFormat(Ls=3, Np=64, cout=16),
       SWISFormat(shared_bits=2.5, max_shared_bits=4, group_n_bits=3)]


def test_format_names_are_unique():
    names = [c.name for c in _all_formats()]
    assert len(names) == len(set(names)), names


@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
def test_dict_round_trip(fmt):
    assert format_from_dict(fmt.describe()) == fmt


def test_dense_int_scales():
    # INT4, 64 output channels, FP32 scales: 4 bits/weight + 64*32 bits
    f = DenseFormat(bits=4, n_scales=64, scale_bits=32)
    assert f.storage_bits(4096) == 4096 * 4 + 64 * 32
    assert DenseFormat(bits=8).storage_bits(100) == 800  # old behaviour: no scales
    assert f.pe_bits == 4


def test_vq_hand_case():
    # k=256, d=4 on 4096 weights: 1024 indices of 8 bits + 256*4 entries of 8 bits
    f = VQFormat(k=256, d=4, codebook_bits=8)
    assert f.storage_bits(4096) == 4096 // 4 * 8 + 256 * 4 * 8
    assert f.bits_per_weight(4096) == pytest.approx(4.0)
    assert f.compression_vs(4096) == pytest.approx(8.0)
    assert f.compression_vs(4096, ref_bits=8) == pytest.approx(2.0)
    assert f.decode_lookups(4096) == 1024
    # with one FP32 scale per codebook
    assert VQFormat(k=256, d=4, scale_bits=32).side_bits(4096) == 256 * 4 * 8 + 32


def test_vq_padding_counts_padded_vectors():
    # Conv with I=3, d=4: every run of 3 weights is padded to 4 -> one index per run
    f = VQFormat(k=16, d=4, run_len=3)
    assert f.n_vectors(3 * 100) == 100
    assert f.payload_bits(300) == 100 * 4
    assert VQFormat(k=16, d=4).n_vectors(300) == 75  # no run_len: only the total is rounded


def test_nm_mask_encodings():
    assert nm_mask_bits_per_group(2, 4, "bitmap") == 4
    assert nm_mask_bits_per_group(2, 4, "combinatorial") == 3  # C(4,2)=6 -> 3 bits
    assert nm_mask_bits_per_group(2, 4, "offsets") == 4  # 2 x 2-bit offsets
    assert nm_mask_bits_per_group(1, 4, "combinatorial") == 2
    assert nm_mask_bits_per_group(2, 8, "combinatorial") == 5  # C(8,2)=28
    with pytest.raises(ValueError):
        nm_mask_bits_per_group(2, 4, "rle")
    with pytest.raises(ValueError):
        nm_mask_bits_per_group(5, 4)


def test_nm_hand_case():
    # 2:4 on 1024 weights, INT8 values, bitmap: 256 groups * (2*8 + 4) bits, + 16 scales
    f = NMFormat(n=2, m=4, value_bits=8, mask_encoding="bitmap", n_scales=16, scale_bits=32)
    assert f.payload_bits(1024) == 256 * (16 + 4)
    assert f.storage_bits(1024) == 256 * 20 + 16 * 32
    assert f.density == 0.5
    g = NMFormat(n=2, m=4, value_bits=8, mask_encoding="combinatorial")
    assert g.bits_per_weight(1024) == pytest.approx((16 + 3) / 4)


def test_mvq_hand_case_paper_point():
    # d=16, k=256, 2:4 bitmap: 8/16 + 1 = 1.5 bits/weight + codebook 256*16*8 (+ scale)
    n = 16 * 4096
    f = MVQFormat(k=256, d=16, codebook_bits=8, n=2, m=4, mask_encoding="bitmap", scale_bits=32)
    assert f.payload_bits(n) == n // 16 * 8 + n
    assert f.side_bits(n) == 256 * 16 * 8 + 32
    assert f.bits_per_weight(n) == pytest.approx(1.5 + (256 * 16 * 8 + 32) / n)
    assert f.decode_lookups(n) == n // 16
    assert f.density == 0.5


def test_mvq_pads_to_lcm():
    # d=4, m=8: unit lcm=8, a run of 12 pads to 16 -> 4 vectors + 2 mask groups per run
    f = MVQFormat(k=16, d=4, n=2, m=8, run_len=12, mask_encoding="bitmap")
    assert f.n_vectors(120) == 40
    assert f.n_groups(120) == 20
    assert f.payload_bits(120) == 40 * 4 + 20 * 8


def test_ssvq_hand_case():
    f = SSVQFormat(k=256, d=16, codebook_bits=8)
    n = 16 * 1024
    assert f.storage_bits(n) == 1024 * 8 + n * 1 + 256 * 16 * 8
    assert f.pe_bits == 9  # 8-bit magnitude + sign after decoding


def test_pq_hand_case():
    # Conv 16->32, 3x3: K=144, Ls=9 -> Ns=16; Np=16
    cout, k_in = 32, 144
    f = PQFormat(Ls=9, Np=16, proto_bits=8, lut_bits=16, cout=cout, scale_bits=32)
    n = cout * k_in
    assert f.payload_bits(n) == 0 and f.tile_bytes(n) == 0
    assert f.n_subspaces(n) == 16
    assert f.side_bits(n) == 16 * 16 * 9 * 8 + 16 * 16 * 32 * 16 + 64
    assert f.distance_macs_per_column(n) == 16 * 16 * 9
    assert f.lut_reads_per_column(n) == 16
    # Ls not dividing K: ceil
    assert PQFormat(Ls=10, Np=8, cout=1).n_subspaces(144) == 15


def test_swis_hand_case():
    # G=8, B=8, N=3: 1 + 3 + 3*3/8 = 5.125 bits/weight; 16 channel scales
    f = SWISFormat(group_size=8, weight_bits=8, shared_bits=3, max_shared_bits=3, n_scales=16, scale_bits=32)
    assert f.payload_bits(64) == 64 * 4 + 8 * 9
    assert f.bits_per_weight(1024) == pytest.approx(1 + 3 + 9 / 8 + 16 * 32 / 1024)
    assert f.pe_cycles_per_weight == 3 and f.pe_bits == 1
    # variable N: mean 2.5, 3 bits per group for N_g
    v = SWISFormat(group_size=4, weight_bits=8, shared_bits=2.5, max_shared_bits=4, group_n_bits=3)
    assert v.payload_bits(16) == math.ceil(16 * 3.5 + 4 * (2.5 * 3 + 3))
    # padding: run of 6 with G=4 -> 8 slots per run
    p = SWISFormat(group_size=4, shared_bits=1, max_shared_bits=1, run_len=6)
    assert p.n_groups(60) == 20


def test_base_is_abstract():
    with pytest.raises(NotImplementedError):
        WeightFormat().payload_bits(1)
