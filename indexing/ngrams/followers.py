"""``FollowerTable``: which tokens follow a suffix-array shard's frequent short n-grams, as bitmaps.

A SEAL decoding step (``genret.constraints.ngram.NgramConstraint``) checks the model's best
candidates of each wide range one by one: does the n-gram continue with token ``t``? On the suffix
array that is a binary search, a chain of cache misses (about 40 per wide row at 50M tokens); the
wide rows are mostly short, frequent n-grams. For every n-gram of 1 to ``MAX_DEPTH`` tokens seen
``bitmap_min`` times or more, the table keeps a bitmap over the vocabulary (bit ``u``: ``u``
follows), so a check is one read. Rows are keyed by the n-gram's whole range, ``lo * (MAX_DEPTH +
1) + depth`` (sorted) with ``hi`` beside it: a lookup is a binary search over a small array. The
most frequent n-grams come first within ``BITMAP_BYTES``. Built level by level: listing an n-gram's
followers gives the ranges of its one-token extensions, the next level's candidates. Built once per
shard, in seconds for tens of millions of tokens. Lists of the followers of less frequent n-grams
(to skip enumerating narrow rows) were measured too and saved too little a step for their build time
and memory, so they are not kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numba
import numpy as np

MAX_DEPTH = 2
BITMAP_MIN = 1024
BITMAP_BYTES = 32 << 20
CHUNK = 256  # ranges listed per call while building (bounds the temporaries)


class _Shard(Protocol):
    max_token: int

    def root(self) -> tuple[int, int]: ...

    def next_tokens(self, lo: np.ndarray, hi: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, ...]: ...


@dataclass(frozen=True)
class FollowerTable:
    """Follower bitmaps, one row per frequent n-gram, rows sorted by ``keys``."""

    keys: np.ndarray
    """int64: ``lo * (MAX_DEPTH + 1) + depth`` of the n-gram's range, ascending."""
    his: np.ndarray
    """int64: the end of the n-gram's range (a key alone could name a shorter range at ``lo``)."""
    bits: np.ndarray
    """uint8 ``[rows, ceil(vocab / 8)]``: bit ``u & 7`` of byte ``u >> 3`` says whether ``u`` follows."""

    @classmethod
    def build(cls, shard: _Shard, bitmap_min: int = BITMAP_MIN) -> FollowerTable:
        """The bitmaps of ``shard``'s n-grams of 1 to ``MAX_DEPTH`` tokens seen ``bitmap_min`` times or more."""
        bitmap_min = max(int(bitmap_min), 1)
        row_bytes = max((shard.max_token + 1 + 7) // 8, 1)
        budget = BITMAP_BYTES // row_bytes
        keys, his, bits = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)], []
        lo, hi = (np.array([v], dtype=np.int64) for v in shard.root())
        lo, hi = _list_level(shard, lo, hi, 0, bitmap_min, None)
        for depth in range(1, MAX_DEPTH + 1):
            order = np.argsort(-(hi - lo), kind="stable")[:budget]  # the most frequent first
            lo, hi = lo[order], hi[order]
            budget -= len(lo)
            keys.append(lo * (MAX_DEPTH + 1) + depth)
            his.append(hi)
            bits.append(np.zeros((len(lo), row_bytes), dtype=np.uint8))
            lo, hi = _list_level(shard, lo, hi, depth, bitmap_min if depth < MAX_DEPTH else None, bits[-1])
        all_keys = np.concatenate(keys)
        order = np.argsort(all_keys, kind="stable")
        return cls(all_keys[order], np.concatenate(his)[order], np.concatenate(bits)[order])

    def rows(self, lo: np.ndarray, hi: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Per range ``[lo, hi)`` of a ``depth``-token n-gram, its row of ``bits`` (-1: none)."""
        lo, hi, depth = (np.asarray(a, dtype=np.int64) for a in (lo, hi, depth))
        if not len(self.keys):
            return np.full(len(lo), -1, dtype=np.int64)
        key = lo * (MAX_DEPTH + 1) + depth
        at = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
        found = (self.keys[at] == key) & (self.his[at] == hi) & (depth >= 1) & (depth <= MAX_DEPTH)
        return np.where(found, at, -1)

    def nbytes(self) -> int:
        return int(self.keys.nbytes + self.his.nbytes + self.bits.nbytes)


def _list_level(
    shard: _Shard, lo: np.ndarray, hi: np.ndarray, depth: int, child_min: int | None, bits: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """List the followers of the ranges ``[lo, hi)`` of ``depth``-token n-grams, ``CHUNK`` at a time,
    into ``bits`` (one row per range) and return the ranges of the extensions seen ``child_min``
    times or more (none when ``child_min`` is None)."""
    found_lo, found_hi = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    for start in range(0, len(lo), CHUNK):
        a, b = lo[start : start + CHUNK], hi[start : start + CHUNK]
        offsets, tokens, counts = shard.next_tokens(a, b, np.full(len(a), depth, dtype=np.int64))
        owner = np.repeat(np.arange(len(a)), np.diff(offsets))
        if bits is not None:
            _set_bits(bits, start + owner, tokens)
        if child_min is not None:  # an extension's range: after its row's separator rows, in token order
            total = np.concatenate([[0], np.cumsum(counts)])
            separators = (b - a) - (total[offsets[1:]] - total[offsets[:-1]])
            end = a[owner] + separators[owner] + total[1:] - total[offsets[:-1]][owner]
            keep = counts >= child_min
            found_lo.append((end - counts)[keep])
            found_hi.append(end[keep])
    return np.concatenate(found_lo), np.concatenate(found_hi)


@numba.njit(cache=True, nogil=True)
def _set_bits(bits, rows, tokens):  # pragma: no cover - compiled
    """Set bit ``tokens[i]`` of row ``rows[i]`` (8 per byte, lowest bit first)."""
    for i in range(len(rows)):
        bits[rows[i], tokens[i] >> 3] |= np.uint8(1 << (tokens[i] & 7))
