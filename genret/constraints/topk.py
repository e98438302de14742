"""Host kernels of the n-gram constraint (numba, GIL released): the best tokens of score rows, the best followers of
a row from the index's follower bitmaps, and the one pass that writes a mask into the scores.

Generic over where the allowed tokens come from: they take score rows (``[n, vocab]`` float arrays read in place)
and token ids; :mod:`genret.constraints.ngram` decides which rows and which tokens.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import torch

BLOCK = 32  # tokens per block in top_tokens
MIN_ROWS_PER_THREAD = 16  # fewer wide rows than this per thread: not worth a hand-off
SMALL_SORT = 256  # _keep_best sorts up to this many entries by insertion


def thread_pool(workers: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``workers`` threads, shared by every constraint that asks for that many
    (per process id: a forked child gets its own, the parent's threads do not exist there)."""
    return _pool_of(workers, os.getpid())


@functools.cache
def _pool_of(workers: int, pid: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix=f"genret-ngram-{pid}")


def host_view(scores: torch.Tensor) -> np.ndarray | None:
    """``scores`` as a numpy array without a copy (CPU float32 / float64), else None."""
    if scores.device.type != "cpu" or scores.dtype not in (torch.float32, torch.float64):
        return None
    return scores.detach().numpy()


@numba.njit(cache=True, nogil=True)
def _keep_best(values, ids, n, k):  # pragma: no cover - compiled
    """Order the first ``n`` entries by value descending (stable: equal values keep their order); min(n, k)."""
    if n <= SMALL_SORT:  # insertion sort
        for i in range(1, n):
            v, t, p = values[i], ids[i], i
            while p > 0 and values[p - 1] < v:
                values[p] = values[p - 1]
                ids[p] = ids[p - 1]
                p -= 1
            values[p] = v
            ids[p] = t
    else:
        order = np.argsort(-values[:n], kind="mergesort")
        v = values[order].copy()
        t = ids[order].copy()
        values[:n] = v
        ids[:n] = t
    return min(n, k)


@numba.njit(cache=True, nogil=True)
def _kth_largest(buf, n, k):  # pragma: no cover - compiled
    """The ``k``-th largest of ``buf[:n]`` (1 <= k <= n); reorders ``buf`` (quickselect, median of three)."""
    lo, hi, target = 0, n - 1, k - 1
    while hi > lo:
        a, b, c = buf[lo], buf[(lo + hi) >> 1], buf[hi]
        pivot = max(min(a, b), min(max(a, b), c))
        i, j = lo, hi
        while i <= j:
            while buf[i] > pivot:
                i += 1
            while buf[j] < pivot:
                j -= 1
            if i <= j:
                buf[i], buf[j] = buf[j], buf[i]
                i += 1
                j -= 1
        if target <= j:
            hi = j
        elif target >= i:
            lo = i
        else:
            break
    return buf[target]


@numba.njit(cache=True, nogil=True, fastmath={"nnan", "nsz"})
def _block_maxima(row, out):  # pragma: no cover - compiled
    """``out[b]``: the largest score of block ``b`` of ``row`` (``BLOCK`` tokens; the last may be
    shorter). The one full pass over a row: compiled without NaN semantics, so the reductions
    vectorize (at memory speed); NaN scores make the maxima meaningless, which
    ``top_tokens`` detects."""
    vocab = len(row)
    full = vocab // BLOCK
    for b in range(full):
        m = row[b * BLOCK]
        for t in range(b * BLOCK + 1, (b + 1) * BLOCK):
            m = max(m, row[t])
        out[b] = m
    if full * BLOCK < vocab:
        m = row[full * BLOCK]
        for t in range(full * BLOCK + 1, vocab):
            m = max(m, row[t])
        out[full] = m


@numba.njit(cache=True, nogil=True, fastmath={"nnan", "nsz"})
def _group_floor(maxima, k):  # pragma: no cover - compiled
    """The smallest of the maxima of ``k`` groups of consecutive blocks: at most the ``k``-th largest
    block maximum (each group holds a block that high), so a cheap first cut for the quickselect."""
    n = len(maxima)
    size = n // k
    floor = maxima[0]
    for g in range(k):
        a = g * size
        b = n if g == k - 1 else a + size
        m = maxima[a]
        for i in range(a + 1, b):
            m = max(m, maxima[i])
        floor = m if g == 0 else min(floor, m)
    return floor


@numba.njit(cache=True, nogil=True)
def top_tokens(scores, rows, k):  # pragma: no cover - compiled
    """``[len(rows), k]`` token ids: each row's ``k`` best scores, by score descending, then id ascending.

    One pass over each row takes the maxima of blocks of ``BLOCK`` tokens (``_block_maxima``); the
    ``k``-th largest block maximum bounds the ``k``-th best score from below (the ``k`` best blocks
    hold ``k`` tokens at least that high), so only the tokens at or above it, in the few blocks that
    reach it, are collected (branch-free) and sorted (stable, so equal scores keep id order). A row
    where fewer than ``k`` tokens reach the bound (NaN scores) is ordered whole.
    """
    out = np.empty((len(rows), k), dtype=np.int64)
    vocab = scores.shape[1]
    n_blocks = (vocab + BLOCK - 1) // BLOCK
    maxima = np.empty(n_blocks, dtype=scores.dtype)
    buf = np.empty(n_blocks, dtype=scores.dtype)
    values = np.empty(vocab, dtype=np.float64)
    ids = np.empty(vocab, dtype=np.int64)
    for j in range(len(rows)):
        row = scores[rows[j]]
        floor = -np.inf
        if k < n_blocks:
            _block_maxima(row, maxima)
            coarse = _group_floor(maxima, k)
            m = 0
            for b in range(n_blocks):  # the block maxima that may be among the k largest
                buf[m] = maxima[b]
                m += maxima[b] >= coarse
            floor = _kth_largest(buf, m, k) if m >= k else np.nan
        n = 0
        for b in range(n_blocks):
            if k >= n_blocks or maxima[b] >= floor:
                for t in range(b * BLOCK, min((b + 1) * BLOCK, vocab)):
                    values[n] = row[t]
                    ids[n] = t
                    n += row[t] >= floor
        if n < k:  # NaN scores: order the whole row instead
            n = 0
            for t in range(vocab):
                values[n] = row[t]
                ids[n] = t
                n += 1
        _keep_best(values, ids, n, k)
        out[j] = ids[:k]
    return out


_LOW_BIT = np.zeros(256, dtype=np.int64)  # _LOW_BIT[1 << i] = i
for _i in range(8):
    _LOW_BIT[1 << _i] = _i


@numba.njit(cache=True, nogil=True)
def best_followers(scores, rows, bits, bit_rows, k, eos):  # pragma: no cover - compiled
    """``[len(rows), k]``: the ``k`` best-scoring tokens set in bitmap ``bits[bit_rows[j]]`` (eos
    excluded), by score descending then id ascending; -1 pads a row with fewer. Only the set bits'
    scores are read, in id order, into a buffer cut back to the ``k`` best whenever it fills."""
    vocab = scores.shape[1]
    out = np.full((len(rows), k), -1, dtype=np.int64)
    values = np.empty(2 * k, dtype=np.float64)
    ids = np.empty(2 * k, dtype=np.int64)
    for j in range(len(rows)):
        row = scores[rows[j]]
        bitmap = bits[bit_rows[j]]
        n = 0
        full = False
        threshold = -np.inf
        for at in range(min(len(bitmap), (vocab + 7) // 8)):
            byte = np.int64(bitmap[at])
            while byte:
                low = byte & -byte
                byte ^= low
                t = at * 8 + _LOW_BIT[low]
                if t >= vocab or t == eos:
                    continue
                v = row[t]
                if not full or v > threshold:
                    values[n] = v
                    ids[n] = t
                    n += 1
                    if n == 2 * k:
                        n = _keep_best(values, ids, n, k)
                        threshold = values[k - 1]
                        full = True
        n = _keep_best(values, ids, n, k)
        out[j, :n] = ids[:n]
    return out


@numba.njit(cache=True, nogil=True)
def first_hits(ok, hits, k):  # pragma: no cover - compiled
    """``(kept, total)``: ``ok``'s marks, per row in order, while the row's ``hits[i]`` plus those kept
    stay within ``k``; and each row's hits after them."""
    kept = np.zeros(ok.shape, dtype=np.bool_)
    total = np.empty(len(hits), dtype=np.int64)
    for i in range(ok.shape[0]):
        t = hits[i]
        for j in range(ok.shape[1]):
            if ok[i, j] and t < k:
                kept[i, j] = True
                t += 1
        total[i] = t
    return kept, total


@numba.njit(cache=True, nogil=True)
def write_mask(out, scores, at_start, first, rows, cols):  # pragma: no cover - compiled
    """``out`` = ``scores + first`` in rows ``at_start``, -inf elsewhere but at (``rows``, ``cols``),
    which keep their scores; ``out`` may be ``scores`` itself."""
    kept = np.empty(len(rows), dtype=np.float64)
    for i in range(len(rows)):
        kept[i] = scores[rows[i], cols[i]]
    for r in range(out.shape[0]):
        if at_start[r]:
            for t in range(out.shape[1]):
                out[r, t] = scores[r, t] + first[t]
        else:
            out[r, :] = -np.inf
    for i in range(len(rows)):
        out[rows[i], cols[i]] = kept[i]


@numba.njit(cache=True, nogil=True)
def select_best(offsets, tokens, values, keep_all, eligible, k):  # pragma: no cover - compiled
    """Which CSR entries stay: every entry of rows with ``keep_all``; elsewhere the ``k`` best eligible
    entries by value (descending, then token ascending: tokens ascend within a row)."""
    chosen = np.zeros(len(tokens), dtype=np.bool_)
    buffer_values = np.empty(2 * k, dtype=np.float64)
    buffer_ids = np.empty(2 * k, dtype=np.int64)
    for r in range(len(offsets) - 1):
        a, b = offsets[r], offsets[r + 1]
        if keep_all[r]:
            chosen[a:b] = True
            continue
        n = 0
        full = False
        threshold = -np.inf
        for e in range(a, b):
            if not eligible[e]:
                continue
            v = values[e]
            if not full or v > threshold:
                buffer_values[n] = v
                buffer_ids[n] = e
                n += 1
                if n == 2 * k:
                    n = _keep_best(buffer_values, buffer_ids, n, k)
                    threshold = buffer_values[k - 1]
                    full = True
        n = _keep_best(buffer_values, buffer_ids, n, k)
        for j in range(n):
            chosen[buffer_ids[j]] = True
    return chosen
