"""Numba kernels of SEAL's scoring (:mod:`genret.retrievers.seal_scoring`): first stage and intersective rescoring.

One query's n-grams arrive as flat arrays: ``offsets`` (CSR over the n-grams), ``tokens`` (corpus
token ids, for matching) and ``local`` (the same tokens renumbered ``0 .. n_local - 1``, for the
"tokens already seen" marks). ``order`` lists the n-grams a kernel uses, best first (weight
descending, ties by input position): the order in which the pure-Python code took them. Every
set of the pure-Python code is a stamp array here (an entry "belongs" to the current document
when it holds the document's stamp), so nothing is cleared between documents.

The arithmetic is the pure-Python code's, operation for operation and in the same order
(``weight * (1 - beta + beta * new / distinct)``, summed in the order the n-grams are taken), so
the scores are the same floats and the rankings the same.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _distinct(local, a, b, seen, stamp):  # pragma: no cover - compiled
    """(distinct tokens of the n-gram ``local[a:b]``, how many of them ``seen`` lacks for ``stamp``)."""
    distinct = 0
    new = 0
    for j in range(a, b):
        first = True
        for m in range(a, j):
            if local[m] == local[j]:
                first = False
                break
        if first:
            distinct += 1
            if seen[local[j]] != stamp:
                new += 1
    return distinct, new


@numba.njit(cache=True, nogil=True)
def _add_evidence(total, weight, local, a, b, seen, stamp, any_seen, beta):  # pragma: no cover - compiled
    """``total`` + the n-gram's weight with SEAL's repetition penalty; marks its tokens seen."""
    distinct, new = _distinct(local, a, b, seen, stamp)
    if any_seen and distinct > 0:
        total += weight * (1.0 - beta + beta * new / distinct)
    else:
        total += weight
    for j in range(a, b):
        seen[local[j]] = stamp
    return total


@numba.njit(cache=True, nogil=True, inline="always")
def _claim(marks, start, length, stamp):  # pragma: no cover - compiled
    """Mark positions ``start .. start + length`` with ``stamp`` unless one already carries it (taken by a
    better n-gram of the same document); True when they were free and are now claimed."""
    for p in range(start, start + length):
        if marks[p] == stamp:
            return False
    for p in range(start, start + length):
        marks[p] = stamp
    return True


@numba.njit(cache=True, nogil=True)
def first_stage_kernel(
    order, weights, offsets, local, n_local, occ_offsets, occ_docs, occ_starts, beta
):  # pragma: no cover - compiled
    """``(documents ascending, first-stage scores)`` from the occurrences of the n-grams ``order``.

    ``occ_*``: CSR of the occurrences, row ``r`` those of n-gram ``order[r]`` (``locate`` order).
    An occurrence counts where none of its positions in its document is taken by an earlier one
    (earlier n-gram, or earlier occurrence of the same n-gram); a document's n-grams count once each,
    in the order first counted.
    """
    total_occ = occ_offsets[-1]
    rows = np.empty(total_occ, dtype=np.int64)
    longest = 0
    for r in range(len(order)):
        length = offsets[order[r] + 1] - offsets[order[r]]
        for o in range(occ_offsets[r], occ_offsets[r + 1]):
            rows[o] = r
            longest = max(longest, occ_starts[o] + length)
    by_doc = np.argsort(occ_docs, kind="mergesort")  # stable: each document's occurrences in taking order
    taken = np.full(longest, -1, dtype=np.int64)
    seen = np.full(n_local, -1, dtype=np.int64)
    found = np.empty(total_occ, dtype=np.int64)
    docs = np.empty(total_occ, dtype=np.int64)
    scores = np.empty(total_occ, dtype=np.float64)
    n_out = 0
    g = 0
    while g < total_occ:
        doc = occ_docs[by_doc[g]]
        end = g
        while end < total_occ and occ_docs[by_doc[end]] == doc:
            end += 1
        n_found = 0
        for o in by_doc[g:end]:
            r = rows[o]
            start = occ_starts[o]
            length = offsets[order[r] + 1] - offsets[order[r]]
            if not _claim(taken, start, length, n_out):
                continue
            if n_found == 0 or found[n_found - 1] != r:
                found[n_found] = r
                n_found += 1
        total = 0.0
        for f in range(n_found):
            i = order[found[f]]
            total = _add_evidence(total, weights[i], local, offsets[i], offsets[i + 1], seen, n_out, f > 0, beta)
        docs[n_out] = doc
        scores[n_out] = total
        n_out += 1
        g = end
    return docs[:n_out], scores[:n_out]


@numba.njit(cache=True, nogil=True)
def intersective_kernel(
    text, shift, begins, ends, order, weights, offsets, tokens, local, n_local, beta
):  # pragma: no cover - compiled
    """Each document's intersective score; document ``d`` is ``text[begins[d]:ends[d]] - shift``.

    The n-grams ``order`` (best first) are matched wherever they occur in the document; matches are
    taken by (rank, start) where all their positions are still free; a further match of an n-gram
    already counted only takes its positions.
    """
    n = len(order)
    first_max = -1
    for r in range(n):
        first_max = max(first_max, tokens[offsets[order[r]]])
    head = np.full(first_max + 1, -1, dtype=np.int64)  # first token -> a rank starting with it, then nxt
    nxt = np.full(n, -1, dtype=np.int64)
    for r in range(n - 1, -1, -1):
        t = tokens[offsets[order[r]]]
        nxt[r] = head[t]
        head[t] = r
    longest = 0
    for d in range(len(begins)):
        longest = max(longest, ends[d] - begins[d])
    free = np.full(longest, -1, dtype=np.int64)
    seen = np.full(n_local, -1, dtype=np.int64)
    keys = np.empty(64, dtype=np.int64)  # a document's matches as rank * (size + 1) + start
    out = np.zeros(len(begins), dtype=np.float64)
    for d in range(len(begins)):
        begin = begins[d]
        size = ends[d] - begin
        n_keys = 0
        for s in range(size):
            t = np.int64(text[begin + s]) - shift
            if t < 0 or t > first_max:
                continue
            r = head[t]
            while r >= 0:
                i = order[r]
                a, b = offsets[i], offsets[i + 1]
                if s + (b - a) <= size:
                    match = True
                    for j in range(1, b - a):
                        if np.int64(text[begin + s + j]) - shift != tokens[a + j]:
                            match = False
                            break
                    if match:
                        if n_keys == len(keys):
                            keys = _grow(keys, n_keys)
                        keys[n_keys] = r * (size + 1) + s
                        n_keys += 1
                r = nxt[r]
        keys[:n_keys].sort()  # by rank, then start: the order the greedy takes matches in
        total = 0.0
        any_seen = False
        last = -1  # the rank counted last: a rank's matches are consecutive
        for k in range(n_keys):
            r, s = divmod(keys[k], size + 1)
            i = order[r]
            length = offsets[i + 1] - offsets[i]
            if not _claim(free, s, length, d):
                continue
            if r == last:  # a further match of a counted n-gram only takes its positions
                continue
            last = r
            total = _add_evidence(total, weights[i], local, offsets[i], offsets[i + 1], seen, d, any_seen, beta)
            any_seen = True
        out[d] = total
    return out


@numba.njit(cache=True, nogil=True)
def _grow(values, n):  # pragma: no cover - compiled
    """A twice as long array starting with ``values[:n]``."""
    grown = np.empty(2 * len(values), dtype=values.dtype)
    grown[:n] = values[:n]
    return grown
