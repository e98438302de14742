"""The one interface every n-gram store backend (``sa``, ``fm``) implements for one shard.

A shard indexes a tokenized corpus: ``tokens`` (all documents concatenated, int, >= 0) and
``doc_offsets`` (``n_docs + 1`` positions; document ``d`` is ``tokens[doc_offsets[d]:doc_offsets[d+1]]``).
Documents may be empty. An n-gram matches only inside one document: a backend puts a separator
between documents that no token equals, so nothing crosses a boundary.

All batch methods take int64 arrays ``lo``, ``hi``, ``depth`` of one length ``n`` (a shard's half of
:class:`indexing.ngrams.Ranges`), are compiled numba kernels behind one Python call, and never
recompute a range from the start of its n-gram. ``tokens`` are the corpus's own ids; an id the
corpus never uses (or a negative one) simply gives an empty range.

:class:`indexing.ngrams.NgramIndex` holds a list of shards and presents them as one index.

The decoding checks (``occurs``, ``first_occurring``, ``followers``, ``select_width``) let a constraint ask
whether candidate tokens continue an n-gram as cheaply as the backend can answer (``sa``: one binary search
instead of two, early stops, follower bitmaps; ``fm``: ``extend``); :class:`~indexing.ngrams.NgramIndex`
presents them over its shards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from indexing.artifacts import ArtifactError, load_json, load_npy


@runtime_checkable
class NgramShard(Protocol):
    backend: str
    """``"sa"`` or ``"fm"``: the name under which the backend is registered."""

    n_tokens: int
    """Tokens in the shard's documents (separators not counted)."""

    n_docs: int

    def root(self) -> tuple[int, int]:
        """``(lo, hi)`` of the empty n-gram: every suffix that starts with a token."""
        ...

    def extend(
        self, lo: np.ndarray, hi: np.ndarray, depth: np.ndarray, tokens: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """New ``(lo, hi)`` of row ``i``'s n-gram (length ``depth[i]``) followed by ``tokens[i]``.

        An empty input range, or a continuation that does not occur, gives ``lo == hi``.
        """
        ...

    def occurs(self, lo: np.ndarray, hi: np.ndarray, depth: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Bool per row: ``extend`` would give a non-empty range."""
        ...

    def first_occurring(
        self, lo: np.ndarray, hi: np.ndarray, depth: np.ndarray, candidates: np.ndarray, need: np.ndarray
    ) -> np.ndarray:
        """Bool ``[n, k]``: candidate ``j`` of row ``i`` continues the row's n-gram, true at least up to the
        ``need[i]``-th candidate that does (a backend may leave later ones unchecked, False)."""
        ...

    def followers(self) -> Any:
        """The followers of frequent short n-grams as bitmaps (:class:`~indexing.ngrams.followers.FollowerTable`),
        or None where the backend keeps none."""
        ...

    select_width: int
    """A wide range of at most this many occurrences is cheaper to enumerate (``next_tokens``) than to check
    candidate by candidate (``first_occurring``)."""

    def next_tokens(
        self, lo: np.ndarray, hi: np.ndarray, depth: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every token that follows row ``i``'s n-gram somewhere in the shard, with how often.

        CSR: ``offsets`` (``n + 1``), ``tokens`` and ``counts`` (row ``i`` is
        ``offsets[i]:offsets[i+1]``, tokens ascending, counts > 0). Ends of documents are not tokens.
        """
        ...

    def locate(
        self, lo: np.ndarray, hi: np.ndarray, depth: np.ndarray, limit: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Up to ``limit`` occurrences of each row's n-gram as (document, start offset in it).

        CSR: ``offsets`` (``n + 1``), ``docs`` (shard-local ids) and ``starts``, for the first
        ``min(limit, hi - lo)`` rows of each range in the shard's sorted order.
        """
        ...

    def doc_tokens(self, doc: int) -> np.ndarray:
        """The tokens of document ``doc`` (shard-local id), as given to ``build``."""
        ...

    def doc_lengths(self) -> np.ndarray:
        """Tokens per document, int64 ``[n_docs]``."""
        ...

    def nbytes(self) -> int:
        """Bytes of every array the shard keeps (what decoding and locating need), on disk or in memory."""
        ...

    def save(self, folder: Path) -> None:
        """Write the shard's arrays as ``.npy`` files (and small JSON) into the existing ``folder``."""
        ...

    @classmethod
    def load(cls, folder: Path, mmap: bool = True) -> NgramShard:
        """Read a shard ``save`` wrote; arrays memory-mapped when ``mmap``."""
        ...

    @classmethod
    def build(cls, tokens: np.ndarray, doc_offsets: np.ndarray) -> NgramShard:
        """Index one tokenized corpus (see the module docstring)."""
        ...


def read_shard_files(
    folder: Path, backend: str, json_name: str, files: dict[str, str], fmt: int, mmap: bool
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A shard's JSON and arrays (``name -> file``), with ``ArtifactError`` for missing, damaged or
    foreign files; what each backend's ``load`` starts with."""
    rebuild = "rebuild the n-gram store"
    try:
        info = load_json(folder, json_name)
        arrays = {name: load_npy(folder, file, mmap=mmap) for name, file in files.items()}
    except FileNotFoundError as err:
        raise ArtifactError(f"{folder}: {backend} shard file missing ({Path(err.filename).name}); {rebuild}") from None
    except ValueError as err:  # includes json.JSONDecodeError
        raise ArtifactError(f"{folder}: damaged {backend} shard file ({err}); {rebuild}") from None
    if not isinstance(info, dict) or info.get("format") != fmt:
        found = info.get("format") if isinstance(info, dict) else None
        raise ArtifactError(f"{folder}: {backend} shard format {found}, this genret reads {fmt}; {rebuild}")
    return info, arrays
