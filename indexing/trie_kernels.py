"""The docid trie's array work: checking identifiers, sorting them into CSR order, and the numba kernels that step
and mask many states at once (:class:`indexing.trie.DocidTrie` calls them)."""

from __future__ import annotations

import numba
import numpy as np


def check_ids(offsets: np.ndarray, values: np.ndarray, lens: np.ndarray, eos: int, vocab: int) -> None:
    def docs_of(positions: np.ndarray) -> list[int]:
        return sorted({int(d) for d in np.searchsorted(offsets, positions, side="right") - 1})

    def name(docs: list[int]) -> str:
        return ", ".join(map(str, docs[:10])) + (f" ... ({len(docs)} in all)" if len(docs) > 10 else "")

    empty = np.flatnonzero(lens == 0)
    if len(empty):
        raise ValueError(f"empty identifier for document(s) {name(empty.tolist())}")
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"token ids must be integers, got dtype {values.dtype}")
    bad = np.flatnonzero(values == eos)
    if len(bad):
        raise ValueError(f"identifier of document(s) {name(docs_of(bad))} contains the end-of-id token {eos}")
    bad = np.flatnonzero((values < 0) | (values >= vocab))
    if len(bad):
        raise ValueError(
            f"identifier of document(s) {name(docs_of(bad))} has token ids outside [0, {vocab}), "
            f"e.g. {int(values[bad[0]])}"
        )


def broadcast_flat(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``a`` broadcast to ``shape``, as a fresh-or-own contiguous writeable 1-d int64 array."""
    if a.shape != shape:
        a = np.broadcast_to(a, shape).copy()
    return np.ascontiguousarray(a.reshape(-1))


def sort_rows(cols: list[np.ndarray], vocab: int) -> np.ndarray:
    """Row order sorting the column-major matrix ``cols`` (values in [-1, vocab)) lexicographically.

    Columns are packed (value + 1) into uint64 keys, several per key; rows are sorted by the first
    key and only runs of rows tied on all keys so far are refined by the next key.
    """
    n = len(cols[0]) if cols else 0
    bits = max(1, int(vocab).bit_length())  # value + 1 <= vocab
    per_key = max(1, 64 // bits)
    keys = []
    for g in range(0, len(cols), per_key):
        group = cols[g : g + per_key]
        key = np.zeros(n, dtype=np.uint64)
        for j, col in enumerate(group):
            shift = np.uint64(bits * (len(group) - 1 - j))
            key |= (col.astype(np.int64) + 1).astype(np.uint64) << shift
        keys.append(key)
    order = np.argsort(keys[0]) if keys else np.zeros(0, dtype=np.int64)
    if n < 2:
        return order
    sorted_key = keys[0][order]
    tie = sorted_key[1:] == sorted_key[:-1]
    for key in keys[1:]:
        if not tie.any():
            break
        in_run = np.zeros(n, dtype=bool)
        in_run[1:] |= tie
        in_run[:-1] |= tie
        pos = np.flatnonzero(in_run)
        run_id = np.cumsum(np.concatenate(([True], ~tie)))[pos]
        sub = order[pos]
        order[pos] = sub[np.lexsort((key[sub], run_id))]
        sorted_key = key[order]
        tie &= sorted_key[1:] == sorted_key[:-1]
    return order


@numba.njit(cache=True, nogil=True)
def step_kernel(first_child, token, states, tokens):  # pragma: no cover - compiled
    n_nodes = len(token)
    out = np.full(len(states), -1, dtype=np.int64)
    for i in range(len(states)):
        s = states[i]
        if s < 0 or s >= n_nodes:
            continue
        lo = np.int64(first_child[s])
        end = np.int64(first_child[s + 1])
        hi = end
        t = tokens[i]
        while lo < hi:
            mid = (lo + hi) >> 1
            if np.int64(token[mid]) < t:
                lo = mid + 1
            else:
                hi = mid
        if lo < end and np.int64(token[lo]) == t:
            out[i] = lo
    return out


@numba.njit(cache=True, nogil=True)
def mask_kernel(first_child, token, states, source, mask):  # pragma: no cover - compiled
    n_nodes = len(token)
    for i in range(len(states)):
        if source[i] != i:  # same state as an earlier row: copied afterwards
            continue
        s = states[i]
        if s < 0 or s >= n_nodes:
            continue
        for j in range(first_child[s], first_child[s + 1]):
            mask[i, token[j]] = True
