"""Suffix arrays of token-id sequences: prefix doubling over the tokens, or libdivsufsort over bytes.

``suffix_array`` sorts the suffixes by their first two tokens (two counting-sort passes), then
refines the groups that still tie by doubling: a group's members are sorted by the rank of the
suffix ``h`` tokens further on (``h`` = 2, 4, 8, ...; ranks from the previous round), until every
group is a single suffix. Ties of i.i.d.-like token text end after a few rounds, and only the tied
groups are touched: on Zipfian corpora faster than divsufsort, with the same peak memory (int32
arrays). Text that repeats long stretches many times costs more rounds over big groups, so after
``MAX_DOUBLING_WORK`` x n suffixes sorted it hands over to divsufsort, whose time does not depend
on repeats (as it does for 2**31 positions and more).

divsufsort sorts bytes. A token sequence becomes a byte string by writing every symbol as a
fixed-width big-endian integer (2 bytes for symbols < 65,536, else 3, up to 16.7M); fixed-width
big-endian bytes compare like the integers they encode, so the byte suffixes that start at a
multiple of the width, in byte order, are the token suffixes in token order.
"""

from __future__ import annotations

import numba
import numpy as np
from pydivsufsort import divsufsort

MAX_SYMBOL = (1 << 24) - 1
MAX_DOUBLING_WORK = 8  # suffixes re-sorted by prefix doubling, per position, before divsufsort takes over


def symbol_width(max_symbol: int) -> int:
    """Bytes per symbol in the encoding: 2 up to 65,535, 3 up to 16,777,215."""
    if max_symbol < 0 or max_symbol > MAX_SYMBOL:
        raise ValueError(f"symbols must lie in [0, {MAX_SYMBOL}], got a largest symbol of {max_symbol}")
    return 2 if max_symbol < (1 << 16) else 3


def suffix_array(symbols: np.ndarray) -> np.ndarray:
    """The suffix array of ``symbols`` (non-negative integers): int32 below 2**31 positions, else int64.

    A shorter suffix sorts before any longer suffix it is a prefix of (end of sequence is smallest).
    """
    symbols = np.asarray(symbols)
    n = len(symbols)
    index_dtype = np.int32 if n < (1 << 31) else np.int64
    if n == 0:
        return np.zeros(0, dtype=index_dtype)
    if symbols.min() < 0:
        raise ValueError("suffix_array: symbols must be non-negative")
    largest = int(symbols.max())
    symbol_width(largest)  # the range check
    if n < (1 << 31) - 1 and largest < max(1 << 17, n):  # (its counting sort has a slot per symbol)
        doubled = _prefix_doubling(symbols, largest)
        if doubled is not None:
            return doubled
    return _divsufsort(symbols, largest, index_dtype)


def _divsufsort(symbols: np.ndarray, largest: int, index_dtype: type) -> np.ndarray:
    """``suffix_array`` through libdivsufsort on the fixed-width big-endian byte encoding."""
    n = len(symbols)
    width = symbol_width(largest)
    if width == 2:  # big-endian uint16 bytes, no intermediate copy
        encoded = symbols.astype(">u2").view(np.uint8)
    else:
        values = symbols.astype(np.uint32, copy=False)
        encoded = np.empty((n, width), dtype=np.uint8)
        for byte in range(width):
            encoded[:, byte] = (values >> (8 * (width - 1 - byte))) & 0xFF
        del values
        encoded = encoded.reshape(-1)
    byte_sa = divsufsort(encoded, force64=n * width >= (1 << 31))
    del encoded
    # keep the suffixes that start at a symbol boundary (one pass, no whole-array temporaries)
    out = np.empty(n + 1, dtype=index_dtype)  # one spare slot: _keep_aligned writes one past its count
    filled = _keep_aligned(byte_sa, width, out)
    if filled != n:
        raise RuntimeError(f"suffix_array: {filled} aligned suffixes for {n} symbols")
    return out[:n]


@numba.njit(cache=True, nogil=True)
def _keep_aligned(byte_sa, width, out):  # pragma: no cover - compiled
    """``out[:m]`` = the entries of ``byte_sa`` divisible by ``width``, divided by it, in order; returns m.

    Branch-free: every entry is written to slot ``m`` and kept (``m`` advanced) when aligned, so
    ``out`` needs one slot more than the entries kept (the ``min`` only guards a short ``out``)."""
    m = 0
    last = len(out) - 1
    for i in range(len(byte_sa)):
        p = byte_sa[i]
        out[min(m, last)] = p // width
        m += p % width == 0
    return m


def _prefix_doubling(symbols: np.ndarray, largest: int) -> np.ndarray | None:
    """``suffix_array`` by prefix doubling (int32), or None when repeats make it too slow (see module)."""
    text = np.ascontiguousarray(symbols)
    if text.dtype not in (np.uint16, np.int32, np.uint32, np.int64):
        text = text.astype(np.int64)
    n = len(text)
    sa = _sort_by_two(text, largest + 1)
    rank = np.empty(n, dtype=np.int32)
    starts, ends = _first_groups(text, sa, rank)
    keys = np.empty(n, dtype=np.int32)
    budget = MAX_DOUBLING_WORK * n
    h = 2
    while len(starts):
        budget -= int((ends - starts).sum())
        if budget < 0:
            return None
        starts, ends = _refine(sa, rank, starts, ends, h, keys)
        h *= 2
    return sa


@numba.njit(cache=True, nogil=True)
def _sort_by_two(text, sigma):  # pragma: no cover - compiled
    """Positions sorted by their first two symbols (the end of the text before any symbol): counting
    sort by the second symbol, then a stable one by the first."""
    n = len(text)
    sa = np.empty(n, dtype=np.int32)
    by_second = np.empty(n, dtype=np.int32)
    count = np.zeros(sigma + 2, dtype=np.int64)
    for i in range(n - 1):
        count[np.int64(text[i + 1]) + 2] += 1
    count[1] += 1  # the last position has no second symbol
    for d in range(sigma + 1):
        count[d + 1] += count[d]
    for i in range(n):
        d = np.int64(text[i + 1]) + 1 if i + 1 < n else 0
        by_second[count[d]] = i
        count[d] += 1
    count[:] = 0
    for i in range(n):
        count[np.int64(text[i]) + 1] += 1
    for d in range(sigma):
        count[d + 1] += count[d]
    for j in range(n):
        i = by_second[j]
        d = np.int64(text[i])
        sa[count[d]] = i
        count[d] += 1
    return sa


@numba.njit(cache=True, nogil=True)
def _first_groups(text, sa, rank):  # pragma: no cover - compiled
    """Rank every position by its group of equal first two symbols (the group's first row) and
    return the groups of two or more as ``(starts, ends)``."""
    n = len(sa)
    starts = np.empty(n // 2 + 1, dtype=np.int32)
    ends = np.empty(n // 2 + 1, dtype=np.int32)
    g = 0
    j = 0
    while j < n:
        a = sa[j]
        second = np.int64(text[a + 1]) if a + 1 < n else -1
        e = j + 1
        while e < n:
            b = sa[e]
            if text[b] != text[a] or (np.int64(text[b + 1]) if b + 1 < n else -1) != second:
                break
            e += 1
        for q in range(j, e):
            rank[sa[q]] = j
        if e - j > 1:
            starts[g] = j
            ends[g] = e
            g += 1
        j = e
    return starts[:g].copy(), ends[:g].copy()


@numba.njit(cache=True, nogil=True)
def _refine(sa, rank, starts, ends, h, keys):  # pragma: no cover - compiled
    """One doubling round: sort each tied group by the rank of the suffix ``h`` further on (read
    before any rank changes), re-rank its members by their new subgroups, return those still tied."""
    n = len(sa)
    room = 0
    for g in range(len(starts)):
        for q in range(starts[g], ends[g]):
            p = np.int64(sa[q]) + h
            keys[q] = rank[p] if p < n else -1
        room += (ends[g] - starts[g]) // 2
    new_starts = np.empty(room + 1, dtype=np.int32)
    new_ends = np.empty(room + 1, dtype=np.int32)
    for g in range(len(starts)):
        s, e = starts[g], ends[g]
        if e - s <= 32:  # insertion sort
            for a in range(s + 1, e):
                key, pos, b = keys[a], sa[a], a
                while b > s and keys[b - 1] > key:
                    keys[b] = keys[b - 1]
                    sa[b] = sa[b - 1]
                    b -= 1
                keys[b] = key
                sa[b] = pos
        else:
            order = np.argsort(keys[s:e], kind="mergesort")
            sorted_keys = keys[s:e][order]
            sorted_sa = sa[s:e][order]
            keys[s:e] = sorted_keys
            sa[s:e] = sorted_sa
    m = 0
    for g in range(len(starts)):
        s, e = starts[g], ends[g]
        j = s
        while j < e:
            f = j + 1
            while f < e and keys[f] == keys[j]:
                f += 1
            for q in range(j, f):
                rank[sa[q]] = j
            if f - j > 1:
                new_starts[m] = j
                new_ends[m] = f
                m += 1
            j = f
    return new_starts[:m].copy(), new_ends[:m].copy()
