"""``Ranges``: where a batch of n-grams occurs in an :class:`NgramIndex`, one row per n-gram (beam).

A row holds, for each shard, the half-open interval ``[lo, hi)`` of that shard's sorted suffixes
(suffix array rows for the ``sa`` backend, BWT rows for ``fm``) that start with the n-gram, and
the n-gram's length ``depth``. Its number of occurrences is ``sum(hi - lo)``. Extending an n-gram
by one token narrows every interval; a beam keeps its row and never recomputes it from the start.
Rows are selected or reordered like any decoding cache: ``ranges[beam_idx]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Ranges:
    """``lo``, ``hi``: int64 ``[n, shards]``; ``depth``: int64 ``[n]`` (tokens matched so far)."""

    lo: np.ndarray
    hi: np.ndarray
    depth: np.ndarray

    def __post_init__(self) -> None:
        if self.lo.ndim != 2 or self.lo.shape != self.hi.shape or self.depth.shape != (self.lo.shape[0],):
            raise ValueError(
                f"Ranges: lo and hi must be [n, shards] and depth [n]; got {self.lo.shape}, {self.hi.shape}, "
                f"{self.depth.shape}"
            )

    def __len__(self) -> int:
        return self.lo.shape[0]

    def __getitem__(self, rows: np.ndarray | slice | list[int] | int) -> Ranges:
        """The rows ``rows`` (an int keeps a batch of one)."""
        if isinstance(rows, (int, np.integer)):
            rows = [int(rows)]
        return Ranges(self.lo[rows], self.hi[rows], self.depth[rows])

    @property
    def counts(self) -> np.ndarray:
        """Occurrences of each row's n-gram in the whole index (all shards), int64 ``[n]``."""
        return (self.hi - self.lo).sum(axis=1)
