"""The request patterns of dramsim3_reference.csv (make_reference.py) and
dramsim3_patterns.csv (make_patterns.py), as (address, bytes, is_write,
issue_cycle) lists: every request is 64 bytes and offered at cycle 0."""
import random

LINE = 64


def pattern(name, nbytes):
    """[(addr, LINE, is_write, 0)] in issue order."""
    return [(a, LINE, w, 0) for a, w in _pairs(name, nbytes)]


def _pairs(name, nbytes):
    n = nbytes // LINE
    if name == "seq_read":
        return [(i * LINE, False) for i in range(n)]
    if name == "mixed_rw":  # a layer's loads and its output stores: read, read, write, ...
        out, r, w = [], 0, 0
        for i in range(n):
            if i % 3 == 2:
                out.append(((1 << 28) + w * LINE, True)); w += 1
            else:
                out.append((r * LINE, False)); r += 1
        return out
    if name == "two_streams":  # weight and input loads interleaved, 64 MiB apart
        return [((i // 2) * LINE + (i % 2) * (1 << 26), False) for i in range(n)]
    if name == "tile_rows_512_8192":  # a 2-D tile: 512 contiguous bytes every 8 KiB
        per = 512 // LINE
        return [((i // per) * 8192 + (i % per) * LINE, False) for i in range(n)]
    if name == "seq_write":
        return [(i * LINE, True) for i in range(n)]
    if name.startswith("stride_read_"):  # a tile's rows: 256 B contiguous every S bytes
        s, per = int(name.split("_")[-1]), 256 // LINE
        return [((i // per) * s + (i % per) * LINE, False) for i in range(n)]
    if name == "random_read":
        r = random.Random(1)
        return [(r.randrange(0, 1 << 30, LINE), False) for _ in range(n)]
    raise ValueError(name)


