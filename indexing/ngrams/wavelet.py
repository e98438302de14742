"""A wavelet matrix with rank support over small integer codes, in numpy + numba (the ``fm`` backend's BWT).

A sequence ``S`` of ``n`` codes in ``[0, sigma)`` is stored as ``levels = ceil(log2(sigma))`` bit vectors
(Claude, Navarro and Ordonez, "The wavelet matrix", SPIRE 2012). Level 0 holds the most significant bit
of every code; level ``l + 1`` holds the next bit of the codes *after a stable partition* of level ``l``
by its bit (zeros first). Layout::

    words   uint64 [levels, 8 * (n // 512 + 1)]  bit i of a level is bit (i % 64) of word i // 64 (rows
                                           padded with zero words to whole 512-bit blocks)
    dirs    uint32 [levels, n // 512 + 1]  (uint64 from 2**32 bits on) ones in the words before each
                                           512-bit block: rank1(i) = dirs[i >> 9] + the masked popcounts
                                           of the block's 8 words, about 6% on top of the bits
    zeros   int64  [levels]                zeros of each level: where the ones start on the next level

Following a position ``x`` of symbol ``c`` down the levels (bit 0: ``x - rank1(x)``, bit 1:
``zeros + rank1(x)``) ends, after the last level, at ``bottom(c) + rank_c(x)``, where ``bottom(c)``
is where ``c``'s block starts in the final order. Hence ``rank_c(lo), rank_c(hi)`` is one descent of
both ends, ``access`` plus ``rank`` of the accessed symbol is one descent (an FM-index LF step), and the
distinct symbols of ``S[lo:hi]`` with their counts are a depth-first descent that prunes empty
subranges. Batch kernels go level by level across many descents so that their cache misses overlap.

The kernels take the arrays (which may be read-only memory maps) so that other numba code (fm.py)
can call them; :class:`WaveletMatrix` is the Python face used by tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic


def levels_for(sigma: int) -> int:
    """Bit levels needed for codes in ``[0, sigma)``: ceil(log2(sigma)), 0 for sigma <= 1."""
    return max(int(sigma) - 1, 0).bit_length()


def n_words(n: int) -> int:
    """Words per level of ``n`` bits: whole 512-bit blocks, one more than ``n // 512`` (rank(n) reads it)."""
    return ((n >> 9) + 1) << 3


def directory_dtype(n: int) -> type:
    """uint32 counts while a level has fewer than 2**32 bits, else uint64."""
    return np.uint32 if n < (1 << 32) else np.uint64


@intrinsic
def _ctpop(typingctx, x):  # pragma: no cover - compiled
    """The LLVM popcount intrinsic (one POPCNT instruction on x86-64)."""
    if not isinstance(x, types.Integer):
        return None
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


@numba.njit(cache=True, nogil=True)
def popcount(word):  # pragma: no cover - compiled
    """Set bits of a uint64 word, as int64."""
    return np.int64(_ctpop(np.uint64(word)))


@numba.njit(cache=True, nogil=True)
def bit(words, level, i):  # pragma: no cover - compiled
    """Bit ``i`` of level ``level`` (0 or 1, int64)."""
    return np.int64((words[level, i >> 6] >> np.uint64(i & 63)) & np.uint64(1))


@numba.njit(cache=True, nogil=True)
def rank1(words, dirs, level, i):  # pragma: no cover - compiled
    """Ones among the first ``i`` bits of level ``level`` (``0 <= i <= n``).

    Branch-free: the block's count plus the popcounts of all 8 of its words, masked to the bits before
    ``i`` (rows are padded to whole blocks, so the 8 words always exist).
    """
    block = i >> 9
    base = block << 3
    inside = (i >> 6) & 7  # the word holding bit i
    partial = (np.uint64(1) << np.uint64(i & 63)) - np.uint64(1)
    r = np.int64(dirs[level, block])
    for w in range(8):
        mask = np.uint64(0xFFFFFFFFFFFFFFFF) if w < inside else (partial if w == inside else np.uint64(0))
        r += popcount(words[level, base + w] & mask)
    return r


@numba.njit(cache=True, nogil=True)
def fill_directory(words, n, dirs):  # pragma: no cover - compiled
    """``dirs[l, b]`` = ones in the first ``512 * b`` bits of level ``l``."""
    for level in range(words.shape[0]):
        total = 0
        for b in range(dirs.shape[1]):
            dirs[level, b] = total
            for w in range(b << 3, (b + 1) << 3):
                total += popcount(words[level, w])


@numba.njit(cache=True, nogil=True)
def build_levels(codes, levels):  # pragma: no cover - compiled
    """The bit words and zero counts of every level: one stable partition per level, O(n levels)."""
    n = len(codes)
    words = np.zeros((levels, ((n >> 9) + 1) << 3), dtype=np.uint64)  # n_words(n)
    zeros = np.zeros(levels, dtype=np.int64)
    current = codes.copy()
    following = np.empty_like(current)
    for level in range(levels):
        shift = levels - 1 - level
        ones = 0
        for i in range(n):
            ones += (np.int64(current[i]) >> shift) & 1
        zeros[level] = n - ones
        if level == levels - 1:  # the last level's partition is never read
            for i in range(n):
                if (np.int64(current[i]) >> shift) & 1:
                    words[level, i >> 6] |= np.uint64(1) << np.uint64(i & 63)
            break
        a = 0
        b = n - ones
        for i in range(n):
            v = current[i]
            if (np.int64(v) >> shift) & 1:
                words[level, i >> 6] |= np.uint64(1) << np.uint64(i & 63)
                following[b] = v
                b += 1
            else:
                following[a] = v
                a += 1
        current, following = following, current
    return words, zeros


@numba.njit(cache=True, nogil=True)
def descend(words, dirs, zeros, c, x):  # pragma: no cover - compiled
    """Where boundary ``x`` of symbol ``c`` lands after the last level: ``bottom(c) + rank_c(x)``."""
    levels = words.shape[0]
    for level in range(levels):
        ones = rank1(words, dirs, level, x)
        if (c >> (levels - 1 - level)) & 1:
            x = zeros[level] + ones
        else:
            x = x - ones
    return x


@numba.njit(cache=True, nogil=True)
def access_descend(words, dirs, zeros, i):  # pragma: no cover - compiled
    """``(S[i], bottom(S[i]) + rank_{S[i]}(i))`` in one descent (``0 <= i < n``)."""
    c = np.int64(0)
    for level in range(words.shape[0]):
        ones = rank1(words, dirs, level, i)
        b = bit(words, level, i)
        if b:
            i = zeros[level] + ones
        else:
            i = i - ones
        c = (c << 1) | b
    return c, i


@numba.njit(cache=True, nogil=True)
def distinct(words, dirs, zeros, lo, hi, min_code, out_codes, out_counts, k, stack):  # pragma: no cover - compiled
    """Write every distinct code ``>= min_code`` of ``S[lo:hi]`` with its count, ascending, at ``out[k:]``.

    Depth-first over the levels, zero child before one child, skipping empty subranges and subtrees
    whose codes all lie below ``min_code``. ``stack`` is int64 ``[levels + 2, 4]`` scratch; ``out`` needs
    room for ``min(hi - lo, 2**levels)`` entries. Returns the new ``k``.
    """
    levels = words.shape[0]
    if lo >= hi:
        return k
    stack[0, 0] = 0
    stack[0, 1] = lo
    stack[0, 2] = hi
    stack[0, 3] = 0
    top = 1
    while top > 0:
        top -= 1
        level = stack[top, 0]
        s = stack[top, 1]
        e = stack[top, 2]
        prefix = stack[top, 3]
        if level == levels:
            if prefix >= min_code:
                out_codes[k] = prefix
                out_counts[k] = e - s
                k += 1
            continue
        below = levels - 1 - level  # bits under the child's prefix
        ones_s = rank1(words, dirs, level, s)
        ones_e = rank1(words, dirs, level, e)
        if ones_e > ones_s and ((prefix * 2 + 2) << below) > min_code:  # one child, popped second
            stack[top, 0] = level + 1
            stack[top, 1] = zeros[level] + ones_s
            stack[top, 2] = zeros[level] + ones_e
            stack[top, 3] = prefix * 2 + 1
            top += 1
        if e - ones_e > s - ones_s and ((prefix * 2 + 1) << below) > min_code:
            stack[top, 0] = level + 1
            stack[top, 1] = s - ones_s
            stack[top, 2] = e - ones_e
            stack[top, 3] = prefix * 2
            top += 1
    return k


@numba.njit(cache=True, nogil=True)
def descend_ranges(words, dirs, zeros, codes, lo, hi, rows):  # pragma: no cover - compiled
    """``[lo[r], hi[r])`` becomes ``[bottom(c) + rank_c(lo[r]), bottom(c) + rank_c(hi[r]))``, ``c = codes[r]``,
    for every ``r`` in ``rows`` (in place; ``codes`` must lie in ``[0, 2**levels)``).

    Level by level across the rows: the reads of different rows are independent, so their cache
    misses overlap (a row at a time would wait for each miss in turn). Empty ranges are left alone.
    """
    levels = words.shape[0]
    for level in range(levels):
        z = zeros[level]
        shift = levels - 1 - level
        for j in range(len(rows)):
            r = rows[j]
            a = lo[r]
            b = hi[r]
            if a >= b:
                continue
            ones_a = rank1(words, dirs, level, a)
            ones_b = rank1(words, dirs, level, b)
            if (codes[r] >> shift) & 1:
                lo[r] = z + ones_a
                hi[r] = z + ones_b
            else:
                lo[r] = a - ones_a
                hi[r] = b - ones_b


@numba.njit(cache=True, nogil=True)
def access_descend_many(words, dirs, zeros, x, codes, walks, n_walks):  # pragma: no cover - compiled
    """``access_descend`` of ``x[w]`` for ``w`` in ``walks[:n_walks]``: ``codes[w] = S[x[w]]`` and ``x[w]``
    becomes its bottom position; level by level across the walks, like ``descend_ranges``."""
    for j in range(n_walks):
        codes[walks[j]] = 0
    for level in range(words.shape[0]):
        z = zeros[level]
        for j in range(n_walks):
            w = walks[j]
            i = x[w]
            ones = rank1(words, dirs, level, i)
            b = bit(words, level, i)
            x[w] = z + ones if b else i - ones
            codes[w] = (codes[w] << 1) | b


def pack_bits(mask: np.ndarray) -> np.ndarray:
    """A bool array as uint64 words (bit i = bit i % 64 of word i // 64), shape ``[1, n_words(n)]``."""
    packed = np.packbits(np.asarray(mask, dtype=bool), bitorder="little")
    padded = np.zeros(8 * n_words(len(mask)), dtype=np.uint8)
    padded[: len(packed)] = packed
    return padded.view("<u8").astype(np.uint64, copy=False).reshape(1, -1)


def rank_directory(words: np.ndarray, n: int) -> np.ndarray:
    """The rank directory of bit vectors ``words`` (``[levels, n_words(n)]``) of ``n`` bits each."""
    dirs = np.zeros((words.shape[0], (n >> 9) + 1), dtype=directory_dtype(n))
    fill_directory(words, n, dirs)
    return dirs


@dataclass
class WaveletMatrix:
    """A code sequence as a wavelet matrix (see the module docstring); the arrays may be memory maps."""

    words: np.ndarray
    dirs: np.ndarray
    zeros: np.ndarray
    n: int

    @classmethod
    def build(cls, codes: np.ndarray, sigma: int | None = None) -> WaveletMatrix:
        """Index ``codes`` (non-negative ints below ``sigma``; default: the largest code + 1)."""
        codes = np.asarray(codes)
        if codes.ndim != 1:
            raise ValueError(f"codes must be 1-d, got shape {codes.shape}")
        n = len(codes)
        top = int(codes.max()) + 1 if n else 0
        sigma = top if sigma is None else int(sigma)
        if n and (int(codes.min()) < 0 or top > sigma):
            raise ValueError(f"codes must lie in [0, {sigma}), got [{int(codes.min())}, {top - 1}]")
        levels = levels_for(sigma)
        dtype = np.uint16 if sigma <= (1 << 16) else np.uint32 if sigma <= (1 << 32) else np.int64
        words, zeros = build_levels(codes.astype(dtype), levels)
        return cls(words, rank_directory(words, n), zeros, n)

    @property
    def levels(self) -> int:
        return self.words.shape[0]

    def __len__(self) -> int:
        return self.n

    def access(self, positions: np.ndarray) -> np.ndarray:
        """``S[positions]`` (int64)."""
        positions = np.ascontiguousarray(positions, dtype=np.int64)
        if len(positions) and (positions.min() < 0 or positions.max() >= self.n):
            raise IndexError(f"positions must lie in [0, {self.n})")
        x = positions.copy()
        codes = np.empty(len(x), dtype=np.int64)
        walks = np.arange(len(x), dtype=np.int64)
        access_descend_many(self.words, self.dirs, self.zeros, x, codes, walks, len(walks))
        return codes

    def rank(self, c: int, positions: np.ndarray) -> np.ndarray:
        """Occurrences of ``c`` in ``S[0:i]`` for each ``i`` of ``positions`` (``0 <= i <= n``)."""
        positions = np.ascontiguousarray(positions, dtype=np.int64)
        if len(positions) and (positions.min() < 0 or positions.max() > self.n):
            raise IndexError(f"positions must lie in [0, {self.n}]")
        c = int(c)
        if c < 0 or (c >> self.levels) != 0:  # no such symbol
            return np.zeros(len(positions), dtype=np.int64)
        lo = np.zeros(len(positions), dtype=np.int64)
        hi = positions.copy()
        codes = np.full(len(positions), c, dtype=np.int64)
        descend_ranges(self.words, self.dirs, self.zeros, codes, lo, hi, np.arange(len(positions), dtype=np.int64))
        return hi - lo

    def distinct(self, lo: int, hi: int, min_code: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``(codes, counts)``: the distinct codes ``>= min_code`` of ``S[lo:hi]``, ascending, with counts."""
        lo, hi = max(int(lo), 0), min(int(hi), self.n)
        size = max(min(hi - lo, 1 << self.levels), 0)
        codes = np.empty(size, dtype=np.int64)
        counts = np.empty(size, dtype=np.int64)
        stack = np.empty((self.levels + 2, 4), dtype=np.int64)
        k = distinct(self.words, self.dirs, self.zeros, lo, hi, int(min_code), codes, counts, 0, stack)
        return codes[:k], counts[:k]

    def nbytes(self) -> int:
        return int(self.words.nbytes + self.dirs.nbytes + self.zeros.nbytes)
