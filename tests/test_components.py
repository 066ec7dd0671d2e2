"""The SimPy components, one behaviour at a time.

A DRAM channel is one bandwidth shared by every transfer in flight; an SRAM
buffer is a container of bytes that blocks producers while full."""
from types import SimpleNamespace

import pytest

from archsim.hw.dram import DRAMChannel
from archsim.hw.systolic import SystolicArray
from archsim.hw.sram import SRAMBuffer


def _dram(env, bw=10.0):
    return DRAMChannel(env, SimpleNamespace(bandwidth_bytes_per_cycle=bw, latency_cycles=0))


def test_single_transfer_takes_bytes_over_bandwidth(env):
    dram = _dram(env)
    done = {}

    def p():
        yield dram.transfer(1000)
        done["t"] = env.now

    env.process(p())
    env.run()
    assert done["t"] == 100
    assert dram.busy_cycles == 100


def test_concurrent_transfers_share_bandwidth(env):
    dram = _dram(env)
    done = {}

    def p(name, nbytes, start):
        yield env.timeout(start)
        yield dram.transfer(nbytes)
        done[name] = env.now

    env.process(p("a", 1000, 0))
    env.process(p("b", 1000, 0))
    env.process(p("c", 500, 50))  # joins half-way: a and b have 750 bytes left each
    env.run()
    # from 50 three share 10 B/cycle: c finishes its 500 after 150 cycles (t=200),
    # then a and b finish the remaining 250 each at 5 B/cycle (t=250)
    assert done["c"] == 200
    assert done["a"] == done["b"] == 250
    assert dram.bytes_read == 2500


def test_buffer_blocks_producer_until_consumer_frees(env):
    buf = SRAMBuffer(env, SimpleNamespace(capacity_bytes=100, word_bits=64, double_buffered=True), "weight")
    log = []

    def producer():
        for i in range(3):
            yield buf.put(50)
            log.append((i, env.now))

    def consumer():
        yield env.timeout(30)
        buf.get(50)

    env.process(producer())
    env.process(consumer())
    env.run()
    assert log == [(0, 0), (1, 0), (2, 30)]
    assert buf.peak_bytes == 100


@pytest.mark.parametrize("df,rows,cols,stream,expect", [
    ("ws", 32, 32, 3136, 2 * 32 + 32 + 3136 - 2),
    ("is", 16, 8, 100, 2 * 16 + 8 + 100 - 2),
    ("os", 32, 32, 576, 576 + 32 + 32 - 2),
])
def test_fold_timing_matches_scalesim_formula(df, rows, cols, stream, expect):
    pe = SystolicArray(SimpleNamespace(rows=rows, cols=cols, dataflow=df, acc_bits=32, fidelity="fold"), None)
    assert pe.chunk_cycles(stream, True, True) == expect
    # split into chunks, the fold still adds up to the formula
    parts = [stream // 3, stream // 3, stream - 2 * (stream // 3)]
    total = sum(pe.chunk_cycles(p, i == 0, i == 2) for i, p in enumerate(parts))
    assert total == expect
