"""The FM-index's numba kernels: building the BWT of the reversed documents and the backward-search, follower,
locate and extract walks over its wavelet matrix (:class:`indexing.ngrams.fm.FMIndexShard` calls them)."""

from __future__ import annotations

import numba
import numpy as np

from indexing.ngrams.wavelet import (
    access_descend,
    access_descend_many,
    bit,
    descend,
    descend_ranges,
    distinct,
    rank1,
)

END, SEPARATOR, FIRST_TOKEN = 0, 1, 2  # codes
NARROW_WIDTH = 1024  # next_tokens reads ranges up to this wide symbol by symbol (cheaper than the descent)
NARROW_CHUNK = 64  # rows whose narrow ranges are read together


def compact(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(alphabet, codes)``: the sorted distinct ids (int64) and each token's code ``2 + rank`` (int32)."""
    if len(tokens) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32)
    top = int(tokens.max())
    if top < 2 * len(tokens) + (1 << 20):  # ids dense enough for a lookup table: no sort
        present = np.bincount(tokens, minlength=top + 1) > 0
        alphabet = np.flatnonzero(present).astype(np.int64)
        lookup = (np.cumsum(present) + (FIRST_TOKEN - 1)).astype(np.int32)
        return alphabet, lookup[tokens]
    alphabet, inverse = np.unique(tokens, return_inverse=True)
    return alphabet.astype(np.int64), (inverse.reshape(-1) + FIRST_TOKEN).astype(np.int32)


# ---------------------------------------------------------------- numba kernels (whole batches per call)


@numba.njit(cache=True, nogil=True)
def fill_reversed(codes, offsets, text):  # pragma: no cover - compiled
    """``text`` = every document's codes reversed, each followed by the separator, then the end code."""
    p = 0
    for d in range(len(offsets) - 1):
        for j in range(offsets[d + 1] - 1, offsets[d] - 1, -1):
            text[p] = codes[j]
            p += 1
        text[p] = SEPARATOR
        p += 1
    text[p] = END


@numba.njit(cache=True, nogil=True)
def build_bwt(text, suffixes):  # pragma: no cover - compiled
    """``BWT[i] = text[SA[i] - 1]`` (the last symbol for the suffix that starts at 0)."""
    out = np.empty_like(text)
    n = len(text)
    for i in range(n):
        p = np.int64(suffixes[i])
        out[i] = text[p - 1] if p > 0 else text[n - 1]
    return out


@numba.njit(cache=True, nogil=True)
def shifts(words, dirs, zeros, before):  # pragma: no cover - compiled
    """``C[c] - bottom(c)`` for every code: LF(i) = shift[c] + the descent of i."""
    sigma = len(before) - 1
    out = np.empty(sigma, dtype=np.int64)
    for c in range(sigma):
        out[c] = before[c] - descend(words, dirs, zeros, c, np.int64(0))
    return out


@numba.njit(cache=True, nogil=True)
def code(alphabet, token):  # pragma: no cover - compiled
    """The code of token id ``token``, -1 if the shard never uses it (binary search)."""
    if token < 0:
        return np.int64(-1)
    a, b = 0, len(alphabet)
    while a < b:
        mid = (a + b) >> 1
        if alphabet[mid] < token:
            a = mid + 1
        else:
            b = mid
    if a < len(alphabet) and alphabet[a] == token:
        return np.int64(a + FIRST_TOKEN)
    return np.int64(-1)


@numba.njit(cache=True, nogil=True)
def clip(lo, hi, depth, before):  # pragma: no cover - compiled
    """A range inside the root ``[C[2], N)``: every n-gram's range lies there; garbage gives an empty one."""
    first, n = before[FIRST_TOKEN], before[len(before) - 1]
    a = min(max(lo, first), n)
    b = min(max(hi, a), n)
    if depth < 0:
        b = a
    return a, b


@numba.njit(cache=True, nogil=True)
def lf(words, dirs, zeros, shift, i):  # pragma: no cover - compiled
    """``(BWT[i], LF(i))``: the row of the suffix that starts one position earlier in R."""
    c, x = access_descend(words, dirs, zeros, i)
    return c, shift[c] + x


@numba.njit(cache=True, nogil=True)
def extend_kernel(words, dirs, zeros, before, shift, alphabet, lo, hi, depth, tokens):  # pragma: no cover
    n = len(lo)
    new_lo = np.empty(n, dtype=np.int64)
    new_hi = np.empty(n, dtype=np.int64)
    codes = np.zeros(n, dtype=np.int64)
    steps = np.empty(n, dtype=np.int64)  # rows that take a backward-search step
    n_steps = 0
    for r in range(n):
        a, b = clip(lo[r], hi[r], depth[r], before)
        c = code(alphabet, tokens[r])
        new_lo[r] = a
        new_hi[r] = a
        if a < b and c >= 0:
            if depth[r] == 0:  # the empty n-gram: every occurrence of the token
                new_lo[r] = before[c]
                new_hi[r] = before[c + 1]
            else:
                new_hi[r] = b
                codes[r] = c
                steps[n_steps] = r
                n_steps += 1
    descend_ranges(words, dirs, zeros, codes, new_lo, new_hi, steps[:n_steps])
    for j in range(n_steps):
        r = steps[j]
        new_lo[r] += shift[codes[r]]
        new_hi[r] += shift[codes[r]]
    return new_lo, new_hi


@numba.njit(cache=True, nogil=True)
def grow(out_tokens, out_counts, k, need):  # pragma: no cover - compiled
    """The output buffers with room for ``need`` more entries after the first ``k`` (doubling)."""
    if k + need <= len(out_tokens):
        return out_tokens, out_counts
    size = max(2 * len(out_tokens), k + need)
    tokens = np.empty(size, dtype=np.int64)
    counts = np.empty(size, dtype=np.int64)
    tokens[:k] = out_tokens[:k]
    counts[:k] = out_counts[:k]
    return tokens, counts


@numba.njit(cache=True, nogil=True)
def next_tokens_kernel(words, dirs, zeros, before, alphabet, lo, hi, depth):  # pragma: no cover - compiled
    """Depth 0: every token, from C. Narrow ranges: read every BWT symbol (one level-synchronous descent
    for all of a chunk's rows) and count. Wide ranges: the wavelet matrix's distinct-symbol descent."""
    n_symbols = len(alphabet)
    n = len(lo)
    offsets = np.zeros(n + 1, dtype=np.int64)
    out_tokens = np.empty(1024, dtype=np.int64)
    out_counts = np.empty(1024, dtype=np.int64)
    stack = np.empty((words.shape[0] + 2, 4), dtype=np.int64)
    k = 0
    for first in range(0, n, NARROW_CHUNK):
        last = min(first + NARROW_CHUNK, n)
        m = 0  # the narrow rows' BWT positions, read all at once
        for r in range(first, last):
            a, b = clip(lo[r], hi[r], depth[r], before)
            if depth[r] > 0 and b - a <= NARROW_WIDTH:
                m += b - a
        x = np.empty(m, dtype=np.int64)
        codes = np.empty(m, dtype=np.int64)
        m = 0
        for r in range(first, last):
            a, b = clip(lo[r], hi[r], depth[r], before)
            if depth[r] > 0 and b - a <= NARROW_WIDTH:
                for i in range(a, b):
                    x[m] = i
                    m += 1
        access_descend_many(words, dirs, zeros, x, codes, np.arange(m), m)
        m = 0
        for r in range(first, last):
            a, b = clip(lo[r], hi[r], depth[r], before)
            if a < b:
                out_tokens, out_counts = grow(out_tokens, out_counts, k, min(b - a, n_symbols))
                start = k
                if depth[r] == 0:  # the empty n-gram: every token, counted by C
                    for j in range(n_symbols):
                        out_tokens[k + j] = alphabet[j]
                        out_counts[k + j] = before[j + FIRST_TOKEN + 1] - before[j + FIRST_TOKEN]
                    k += n_symbols
                    start = k  # already token ids
                elif b - a <= NARROW_WIDTH:
                    row = np.sort(codes[m : m + b - a])
                    m += b - a
                    for j in range(len(row)):
                        if row[j] < FIRST_TOKEN:  # the n-gram ends a document there
                            continue
                        if k > start and out_tokens[k - 1] == row[j]:
                            out_counts[k - 1] += 1
                        else:
                            out_tokens[k] = row[j]
                            out_counts[k] = 1
                            k += 1
                else:
                    k = distinct(words, dirs, zeros, a, b, FIRST_TOKEN, out_tokens, out_counts, k, stack)
                for j in range(start, k):  # codes to token ids
                    out_tokens[j] = alphabet[out_tokens[j] - FIRST_TOKEN]
            offsets[r + 1] = k
    return offsets, out_tokens[:k].copy(), out_counts[:k].copy()


@numba.njit(cache=True, nogil=True)
def locate_kernel(
    words, dirs, zeros, before, shift, mark_words, mark_dirs, samples, doc_starts, lo, hi, depth, limit
):  # pragma: no cover - compiled
    offsets = np.zeros(len(lo) + 1, dtype=np.int64)
    for r in range(len(lo)):
        a, b = clip(lo[r], hi[r], depth[r], before)
        offsets[r + 1] = offsets[r] + min(b - a, limit)
    total = offsets[-1]
    rows = np.empty(total, dtype=np.int64)  # one LF walk per occurrence, all walked in lockstep
    for r in range(len(lo)):
        a, _ = clip(lo[r], hi[r], depth[r], before)
        for j in range(offsets[r], offsets[r + 1]):
            rows[j] = a + j - offsets[r]
    positions = np.empty(total, dtype=np.int64)
    codes = np.empty(total, dtype=np.int64)
    walks = np.arange(total)
    n_walks = total
    steps = 0
    while n_walks > 0:
        kept = 0
        for j in range(n_walks):
            w = walks[j]
            i = rows[w]
            if bit(mark_words, 0, i):  # a sampled row: its suffix starts at samples[rank] (+ steps walked)
                positions[w] = np.int64(samples[rank1(mark_words, mark_dirs, 0, i)]) + steps
            else:
                walks[kept] = w
                kept += 1
        n_walks = kept
        access_descend_many(words, dirs, zeros, rows, codes, walks, n_walks)
        for j in range(n_walks):
            w = walks[j]
            rows[w] += shift[codes[w]]  # LF: the row of the suffix one position earlier in R
        steps += 1
    docs = np.empty(total, dtype=np.int64)
    starts = np.empty(total, dtype=np.int64)
    n_docs = len(doc_starts) - 1
    for r in range(len(lo)):
        m = max(depth[r], 1)  # a depth-0 row stands for the token its suffix starts with
        for j in range(offsets[r], offsets[r + 1]):
            p = positions[j]
            left, right = 0, n_docs  # last document whose reversed text starts at or before p
            while right - left > 1:
                mid = (left + right) >> 1
                if doc_starts[mid] <= p:
                    left = mid
                else:
                    right = mid
            length = np.int64(doc_starts[left + 1]) - np.int64(doc_starts[left]) - 1
            docs[j] = left
            starts[j] = length - (p - np.int64(doc_starts[left])) - m
    return offsets, docs, starts


@numba.njit(cache=True, nogil=True)
def extract_kernel(words, dirs, zeros, shift, alphabet, row, length):  # pragma: no cover - compiled
    """``length`` tokens read by LF steps from ``row``: reversed(doc) backwards, i.e. the document forward."""
    out = np.empty(length, dtype=np.int64)
    i = np.int64(row)
    for j in range(length):
        c, i = lf(words, dirs, zeros, shift, i)
        out[j] = alphabet[c - FIRST_TOKEN]
    return out
