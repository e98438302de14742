"""The n-gram store restricted to a set of documents per row (1-Pager's keyword path narrows the corpus).

A *document set* is a bitmap: uint64 ``[n, words]``, bit ``d % 64`` of word ``d // 64`` set when global document
``d`` is in row ``i``'s set (:func:`doc_bits`, :func:`all_docs`, :func:`doc_lists`, :func:`set_sizes`).

Two questions, each answered exactly for every row by ``NgramIndex``, the cheaper of two ways per row, with the
kernels here:

- ``NgramIndex.followers_within``: which tokens follow the row's n-gram inside the row's documents (with counts);
- ``NgramIndex.docs_within``: which of the row's documents hold the row's n-gram.

*Filter*: locate every occurrence of the n-gram (``NgramIndex.locate_csr``) and keep those in the set; costs the
n-gram's occurrences. *Scan*: read the set's documents and match the n-gram at each position; costs the set's
tokens. The empty n-gram (depth 0) occurs everywhere, so it is always a scan. Both read the corpus's tokens in
order (``NgramIndex.forward_tokens``, one int32 array built on first use).
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

WORD = 64


def words_for(n_docs: int) -> int:
    """uint64 words in one row of a document set over ``n_docs`` documents."""
    return max(1, -(-n_docs // WORD))


def doc_bits(doc_lists: Sequence[Sequence[int]], n_docs: int) -> np.ndarray:
    """A document set per list: uint64 ``[len(doc_lists), words_for(n_docs)]``."""
    bits = np.zeros((len(doc_lists), words_for(n_docs)), dtype=np.uint64)
    for i, docs in enumerate(doc_lists):
        docs = np.asarray(docs, dtype=np.int64)
        if len(docs) and (docs.min() < 0 or docs.max() >= n_docs):
            raise ValueError(f"document numbers must be in 0..{n_docs - 1}; got {docs.min()}..{docs.max()}")
        np.bitwise_or.at(bits[i], docs // WORD, np.left_shift(np.uint64(1), (docs % WORD).astype(np.uint64)))
    return bits


def all_docs(n: int, n_docs: int) -> np.ndarray:
    """``n`` rows holding every one of ``n_docs`` documents."""
    return doc_bits([np.arange(n_docs)], n_docs).repeat(n, axis=0)


def set_sizes(bits: np.ndarray) -> np.ndarray:
    """Documents in each row's set, int64 ``[n]``."""
    return np.bitwise_count(bits).sum(axis=1, dtype=np.int64)


def doc_lists(bits: np.ndarray) -> list[np.ndarray]:
    """Each row's documents, ascending (int64)."""
    out = []
    for row in np.ascontiguousarray(bits, dtype=np.uint64):
        unpacked = np.unpackbits(row.view(np.uint8), bitorder="little")
        out.append(np.flatnonzero(unpacked).astype(np.int64))
    return out


METHODS = ("auto", "scan", "filter")
"""How a query is answered: ``auto`` (the cheaper per row), or forced (tests)."""


@numba.njit(cache=True, nogil=True)
def _row_docs(bits: np.ndarray, i: int, n_docs: int) -> np.ndarray:
    """The documents of row ``i``'s set, ascending."""
    total = 0
    for w in range(bits.shape[1]):
        word = bits[i, w]
        while word:
            word &= word - np.uint64(1)
            total += 1
    docs = np.empty(total, dtype=np.int64)
    k = 0
    for w in range(bits.shape[1]):
        word = bits[i, w]
        while word:
            low = word & (~word + np.uint64(1))
            word ^= low
            d = w * 64 + _bit_index(low)
            if d < n_docs:
                docs[k] = d
                k += 1
    return docs[:k]


@numba.njit(cache=True, nogil=True)
def set_tokens(bits: np.ndarray, doc_offsets: np.ndarray) -> np.ndarray:
    """Tokens in each row's documents."""
    n_docs = len(doc_offsets) - 1
    out = np.zeros(bits.shape[0], dtype=np.int64)
    for i in range(bits.shape[0]):
        for d in _row_docs(bits, i, n_docs):
            out[i] += doc_offsets[d + 1] - doc_offsets[d]
    return out


@numba.njit(cache=True, nogil=True)
def _bit_index(low: np.uint64) -> int:
    """Position of the one set bit of ``low``."""
    k = 0
    while low > np.uint64(1):
        low >>= np.uint64(1)
        k += 1
    return k


@numba.njit(cache=True, nogil=True)
def _has_doc(bits: np.ndarray, i: int, d: int) -> bool:
    return (bits[i, d // 64] >> np.uint64(d % 64)) & np.uint64(1) != np.uint64(0)


@numba.njit(cache=True, nogil=True)
def _matches(tokens: np.ndarray, at: int, gram_at: int, depth: int) -> bool:
    for j in range(depth):
        if tokens[at + j] != tokens[gram_at + j]:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def _push(out: np.ndarray, size: int, value: int) -> np.ndarray:
    """``out`` with ``value`` at ``size`` (doubled first when full)."""
    if size == len(out):
        grown = np.empty(2 * size, dtype=out.dtype)
        grown[:size] = out
        out = grown
    out[size] = value
    return out


@numba.njit(cache=True, nogil=True)
def _count(t: int, i: int, seen: np.ndarray, count: np.ndarray, out: np.ndarray, size: int) -> tuple[np.ndarray, int]:
    """Count token ``t`` for row ``i``: the first time the row meets it, it joins ``out`` (returned with its size)."""
    if seen[t] != i:
        seen[t] = i
        count[t] = 0
        out = _push(out, size, t)
        size += 1
    count[t] += 1
    return out, size


@numba.njit(cache=True, nogil=True)
def followers_kernel(tokens, doc_offsets, bits, depth, gram_at, scan, live, occ_offsets, occ_docs, occ_pos, vocab):
    """Row by row, the distinct followers (ascending) and their counts, by scan or filter (``scan[i]``)."""
    n = bits.shape[0]
    n_docs = len(doc_offsets) - 1
    seen = np.full(vocab, -1, dtype=np.int64)  # the last row that met each token
    count = np.zeros(vocab, dtype=np.int64)
    out = np.empty(1024, dtype=np.int64)
    out_counts = np.empty(1024, dtype=np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    size = 0
    for i in range(n):
        start = size
        d_len = depth[i]
        if live[i] and scan[i]:
            for d in _row_docs(bits, i, n_docs):
                for p in range(doc_offsets[d], doc_offsets[d + 1] - d_len):
                    if d_len == 0 or _matches(tokens, p, gram_at[i], d_len):
                        out, size = _count(tokens[p + d_len], i, seen, count, out, size)
        elif live[i]:
            for o in range(occ_offsets[i], occ_offsets[i + 1]):
                d = occ_docs[o]
                p = occ_pos[o] + d_len
                if p < doc_offsets[d + 1] and _has_doc(bits, i, d):
                    out, size = _count(tokens[p], i, seen, count, out, size)
        out[start:size] = np.sort(out[start:size])
        for j in range(start, size):  # the table holds this row's counts until the next row
            out_counts = _push(out_counts, j, count[out[j]])
        offsets[i + 1] = size
    return offsets, out[:size].copy(), out_counts[:size].copy()


@numba.njit(cache=True, nogil=True)
def docs_kernel(tokens, doc_offsets, bits, depth, gram_at, scan, live, occ_offsets, occ_docs):
    """Row by row, the documents of the set that hold the n-gram, by scan or filter (``scan[i]``)."""
    n, words = bits.shape
    n_docs = len(doc_offsets) - 1
    out = np.zeros((n, words), dtype=np.uint64)
    for i in range(n):
        d_len = depth[i]
        if d_len == 0:
            out[i] = bits[i]
        elif not live[i]:
            continue
        elif scan[i]:
            for d in _row_docs(bits, i, n_docs):
                for p in range(doc_offsets[d], doc_offsets[d + 1] - d_len + 1):
                    if _matches(tokens, p, gram_at[i], d_len):
                        out[i, d // 64] |= np.uint64(1) << np.uint64(d % 64)
                        break
        else:
            for o in range(occ_offsets[i], occ_offsets[i + 1]):
                d = occ_docs[o]
                if _has_doc(bits, i, d):
                    out[i, d // 64] |= np.uint64(1) << np.uint64(d % 64)
    return out
