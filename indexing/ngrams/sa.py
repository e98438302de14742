"""``sa`` backend of the n-gram store: a forward suffix array over the token text (SEAL-style identifiers).

Layout (three plain arrays, each one ``.npy`` file, plus ``sa.json`` with the counts, the largest
token id and the dtypes)::

    text        uint16 when the largest token + 1 <= 65,535, else int32; length n_tokens + n_docs.
                Every document's tokens as ``token + 1``, each document followed by the separator 0.
    suffixes    int32 below 2**31 positions, else int64: the suffix array of ``text``.
    doc_starts  int64, n_docs + 1: where document d starts in ``text`` (the last entry is len(text)).

The separator sorts below every token and matches no query token, so no n-gram crosses a document
boundary, and the n_docs suffixes that start with a separator are the first rows: the empty
n-gram's range is ``[n_docs, len(text))``. Inside the range ``[lo, hi)`` of an n-gram of length
``d`` the column ``text[suffixes[i] + d]`` is non-decreasing, so extending by a token is two binary
searches on it (``occurs``, whether the extension is non-empty, one), and the distinct next tokens
are its runs (a few linear probes, then galloping: O(k log(width / k)) for k runs). ``SA[i] + d``
stays inside the text: every document ends with a separator, which no n-gram contains. The binary
searches of a batch run in lockstep groups (``LANES``), so that their cache misses overlap (on large
corpora that halves the time of a decoding step's candidate checks). A decoding step checks candidates
mostly after one token, in the ranges of frequent unigrams, which are the widest (the longest
searches); ``first_occurring`` answers those from the follower bitmaps of the shard's
``FollowerTable`` instead (``followers``: frequent n-grams of 1-2 tokens, built on first use).
"""

from __future__ import annotations

from pathlib import Path

import numba
import numpy as np

from indexing.artifacts import ArtifactError, save_json, save_npy
from indexing.ngrams.base import read_shard_files
from indexing.ngrams.followers import BITMAP_MIN, FollowerTable
from indexing.ngrams.suffix import MAX_SYMBOL, suffix_array

SA_JSON = "sa.json"
SA_FILES = {"text": "sa_text.npy", "suffixes": "sa_suffixes.npy", "doc_starts": "sa_doc_starts.npy"}
SA_FORMAT = 1
UINT16_MAX_SYMBOL = 65_535
LINEAR_PROBES = 8  # rows of a run read one by one before galloping (measured: 4-16 all fine)
LANES = 32  # binary searches advanced together (extend: 16 rows, occurs: 32)


def _int64(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.int64)


class SuffixArrayShard:
    """One shard of the ``sa`` n-gram store (implements :class:`indexing.ngrams.base.NgramShard`)."""

    backend = "sa"
    select_width = 1 << 15
    """Wide rows up to this many occurrences are cheaper to enumerate than to check candidate by candidate (about
    one random read per occurrence)."""

    def __init__(self, text: np.ndarray, suffixes: np.ndarray, doc_starts: np.ndarray, max_token: int) -> None:
        self.text = text
        self.suffixes = suffixes
        self.doc_starts = doc_starts
        self.max_token = max_token
        """Largest token id in the shard (-1 when empty): larger ids give empty ranges without a search."""
        self.n_docs = len(doc_starts) - 1
        self.n_tokens = len(text) - self.n_docs
        self.follower_bitmap_min = BITMAP_MIN
        """N-grams seen this often get a follower bitmap (``followers``; tests lower it)."""
        self._followers: FollowerTable | None = None

    @classmethod
    def build(cls, tokens: np.ndarray, doc_offsets: np.ndarray) -> SuffixArrayShard:
        """Index ``tokens`` split by ``doc_offsets`` (see base.py); the only large temporaries are suffix.py's."""
        tokens = np.asarray(tokens)
        offsets = _int64(doc_offsets)
        if tokens.ndim != 1 or (len(tokens) and not np.issubdtype(tokens.dtype, np.integer)):
            raise ValueError(f"tokens must be a 1-d integer array, got {tokens.dtype} of shape {tokens.shape}")
        if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(tokens):
            raise ValueError("doc_offsets must run from 0 to len(tokens) (n_docs + 1 entries)")
        if np.any(offsets[1:] < offsets[:-1]):
            raise ValueError("doc_offsets must be non-decreasing")
        max_token = int(tokens.max()) if len(tokens) else -1
        if len(tokens) and (int(tokens.min()) < 0 or max_token + 1 > MAX_SYMBOL):
            raise ValueError(f"token ids must lie in [0, {MAX_SYMBOL - 1}]")
        n_docs = len(offsets) - 1
        dtype = np.uint16 if max_token + 1 <= UINT16_MAX_SYMBOL else np.int32
        text = np.zeros(len(tokens) + n_docs, dtype=dtype)
        if len(tokens):
            _fill_text(tokens, offsets, text)
        doc_starts = offsets + np.arange(n_docs + 1, dtype=np.int64)
        return cls(text, suffix_array(text), doc_starts, max_token)

    def root(self) -> tuple[int, int]:
        """Every suffix that starts with a token: all rows after the n_docs separator suffixes."""
        return self.n_docs, len(self.text)

    def extend(
        self, lo: np.ndarray, hi: np.ndarray, depth: np.ndarray, tokens: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Narrow each row's range to the n-gram followed by ``tokens[i]`` (two binary searches)."""
        return _extend_kernel(
            self.text, self.suffixes, _int64(lo), _int64(hi), _int64(depth), _int64(tokens), self.max_token
        )

    def occurs(self, lo: np.ndarray, hi: np.ndarray, depth: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Bool per row: ``extend`` would give a non-empty range (one binary search instead of two).

        What a decoding constraint needs to check candidate tokens.
        """
        return _occurs_kernel(
            self.text, self.suffixes, _int64(lo), _int64(hi), _int64(depth), _int64(tokens), self.max_token
        )

    def first_occurring(
        self, lo: np.ndarray, hi: np.ndarray, depth: np.ndarray, candidates: np.ndarray, need: np.ndarray
    ) -> np.ndarray:
        """Bool ``[n, k]``: candidate ``j`` of row ``i`` continues the row's n-gram (``occurs``),
        checked in order and only until ``need[i]`` of them did; later candidates stay False.

        What a decoding constraint needs when it wants a row's ``need`` best-scoring followers: it
        stops as soon as it has them, and a row's searches run in lockstep over the same range
        (its top levels stay in cache). Negative or unknown tokens never occur.
        """
        table = self.followers()
        lo, hi, depth = _int64(lo), _int64(hi), _int64(depth)
        return _first_occurring_kernel(
            self.text,
            self.suffixes,
            lo,
            hi,
            depth,
            _int64(candidates),
            _int64(need),
            self.max_token,
            table.rows(lo, hi, depth),
            table.bits,
        )

    def followers(self) -> FollowerTable:
        """The followers of this shard's frequent n-grams of 1-2 tokens, as bitmaps
        (:class:`~indexing.ngrams.followers.FollowerTable`): built on first use (seconds for tens of
        millions of tokens) and kept. ``first_occurring`` reads them; so does a decoding constraint."""
        if self._followers is None:
            self._followers = FollowerTable.build(self, self.follower_bitmap_min)
        return self._followers

    def next_tokens(
        self, lo: np.ndarray, hi: np.ndarray, depth: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR ``(offsets, tokens, counts)`` of the tokens following each row's n-gram, ascending."""
        return _next_tokens_kernel(self.text, self.suffixes, _int64(lo), _int64(hi), _int64(depth), self.max_token)

    def locate(
        self, lo: np.ndarray, hi: np.ndarray, depth: np.ndarray, limit: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR ``(offsets, docs, starts)`` of the first ``limit`` suffix-array rows of each range."""
        return _locate_kernel(self.suffixes, self.doc_starts, _int64(lo), _int64(hi), _int64(depth), max(int(limit), 0))

    def doc_tokens(self, doc: int) -> np.ndarray:
        """Document ``doc``'s tokens (int64), read back from the text."""
        if not 0 <= doc < self.n_docs:
            raise IndexError(f"document {doc} out of range for a shard of {self.n_docs} documents")
        start, end = int(self.doc_starts[doc]), int(self.doc_starts[doc + 1]) - 1
        return self.text[start:end].astype(np.int64) - 1

    def doc_lengths(self) -> np.ndarray:
        return np.diff(np.asarray(self.doc_starts, dtype=np.int64)) - 1

    def nbytes(self) -> int:
        """The stored arrays' bytes. Not the follower table's: a cache built on first use and never saved, so
        that a manifest's byte count (written after a search, as a trained retriever's is) matches its files."""
        return int(self.text.nbytes + self.suffixes.nbytes + self.doc_starts.nbytes)

    def info(self) -> dict[str, int | str]:
        """What ``sa.json`` records: counts and the arrays' dtypes, checked against the files on load."""
        return {
            "format": SA_FORMAT,
            "n_docs": self.n_docs,
            "n_tokens": self.n_tokens,
            "max_token": self.max_token,
            "text_dtype": self.text.dtype.name,
            "suffixes_dtype": self.suffixes.dtype.name,
        }

    def save(self, folder: Path) -> None:
        """Write the three arrays and ``sa.json`` into the existing ``folder``."""
        folder = Path(folder)
        for name, file in SA_FILES.items():
            save_npy(folder, file, getattr(self, name))
        save_json(folder, SA_JSON, self.info())

    @classmethod
    def load(cls, folder: Path, mmap: bool = True) -> SuffixArrayShard:
        """Read what ``save`` wrote; with ``mmap`` the arrays are memory-mapped read-only (np.memmap)."""
        folder = Path(folder)
        rebuild = "rebuild the n-gram store"
        info, arrays = read_shard_files(folder, "sa", SA_JSON, SA_FILES, SA_FORMAT, mmap)
        try:
            n_docs, n_text = int(info["n_docs"]), int(info["n_docs"]) + int(info["n_tokens"])
            expected = {
                "text": ((n_text,), info["text_dtype"], ("uint16", "int32")),
                "suffixes": ((n_text,), info["suffixes_dtype"], ("int32", "int64")),
                "doc_starts": ((n_docs + 1,), "int64", ("int64",)),
            }
            max_token = int(info["max_token"])
        except (KeyError, TypeError, ValueError) as err:
            raise ArtifactError(f"{folder}: damaged {SA_JSON} ({err!r}); {rebuild}") from None
        problems = [
            f"{name} is {arrays[name].dtype.name}{list(arrays[name].shape)}, expected {dtype}{list(shape)}"
            for name, (shape, dtype, allowed) in expected.items()
            if arrays[name].shape != shape or arrays[name].dtype.name != dtype or dtype not in allowed
        ]
        if not problems and (arrays["doc_starts"][0] != 0 or arrays["doc_starts"][-1] != n_text):
            problems.append(f"doc_starts does not run from 0 to {n_text}")
        if problems:
            raise ArtifactError(f"{folder}: inconsistent sa shard files: " + "; ".join(problems) + f"; {rebuild}")
        return cls(arrays["text"], arrays["suffixes"], arrays["doc_starts"], max_token)


# ---------------------------------------------------------------- numba kernels (whole batches per call)


@numba.njit(cache=True, nogil=True)
def _fill_text(tokens, offsets, text):  # pragma: no cover - compiled
    """``text[offsets[d] + d + j] = tokens[offsets[d] + j] + 1``; separators are already 0."""
    for d in range(len(offsets) - 1):
        for j in range(offsets[d], offsets[d + 1]):
            text[j + d] = tokens[j] + 1


@numba.njit(cache=True, nogil=True)
def _column(text, suffixes, i, depth):  # pragma: no cover - compiled
    """Symbol ``depth`` places into the suffix of row ``i`` (0 past the end, like a separator)."""
    p = np.int64(suffixes[i]) + depth
    return np.int64(text[p]) if p < len(text) else np.int64(0)


@numba.njit(cache=True, nogil=True)
def _clip(lo, hi, depth, n):  # pragma: no cover - compiled
    """A range inside ``[0, n)`` (garbage in gives an empty range, never an out-of-bounds read)."""
    a = min(max(lo, 0), n)
    b = min(max(hi, a), n)
    if depth < 0:
        b = a
    return a, b


@numba.njit(cache=True, nogil=True)
def _lower_bounds(text, suffixes, base, length, target, lane_depth, m, longest):  # pragma: no cover - compiled
    """For lanes ``j < m``: the first row of ``[base[j], base[j] + length[j])`` (length >= 1) whose
    column at ``lane_depth[j]`` is >= ``target[j]`` (the end if none), written into ``base``.

    The branch-free binary search whose steps depend only on the length; all lanes advance one step
    together (``longest``: the largest length), so their cache misses overlap instead of following
    one another.
    """
    while longest > 1:
        for j in range(m):
            half = length[j] >> 1
            below = _column(text, suffixes, base[j] + half, lane_depth[j]) < target[j]
            base[j] += half * below
            length[j] -= half
        longest -= longest >> 1
    for j in range(m):
        base[j] += _column(text, suffixes, base[j], lane_depth[j]) < target[j]


@numba.njit(cache=True, nogil=True)
def _extend_kernel(text, suffixes, lo, hi, depth, tokens, max_token):  # pragma: no cover - compiled
    """Both bounds of every row, ``LANES // 2`` rows at a time searched in lockstep: ``lo`` is the
    first row whose column is >= symbol ``t + 1``, ``hi`` the first >= ``t + 2``."""
    n = len(text)
    new_lo = np.empty(len(lo), dtype=np.int64)
    new_hi = np.empty(len(lo), dtype=np.int64)
    base = np.empty(LANES, dtype=np.int64)
    length = np.empty(LANES, dtype=np.int64)
    target = np.empty(LANES, dtype=np.int64)
    lane_depth = np.empty(LANES, dtype=np.int64)
    owner = np.empty(LANES, dtype=np.int64)
    r = 0
    while r < len(lo):
        m = 0  # lanes in use
        longest = 0
        while r < len(lo) and m < LANES:
            a, b = _clip(lo[r], hi[r], depth[r], n)
            t = tokens[r]
            new_lo[r] = a
            new_hi[r] = a
            if a < b and 0 <= t <= max_token:
                for j in range(2):
                    base[m + j] = a
                    length[m + j] = b - a
                    target[m + j] = t + 1 + j
                    lane_depth[m + j] = depth[r]
                    owner[m + j] = r
                m += 2
                longest = max(longest, b - a)
            r += 1
        _lower_bounds(text, suffixes, base, length, target, lane_depth, m, longest)
        for j in range(0, m, 2):
            new_lo[owner[j]] = base[j]
            new_hi[owner[j]] = max(base[j], base[j + 1])  # equal on a real range; never negative
    return new_lo, new_hi


@numba.njit(cache=True, nogil=True)
def _occurs_kernel(text, suffixes, lo, hi, depth, tokens, max_token):  # pragma: no cover - compiled
    """Whether ``extend`` would give a non-empty range: one lower bound (of symbol ``t + 1``) per row,
    then one read: the continuation occurs iff that row exists and holds ``t + 1``."""
    n = len(text)
    out = np.zeros(len(lo), dtype=np.bool_)
    base = np.empty(LANES, dtype=np.int64)
    length = np.empty(LANES, dtype=np.int64)
    target = np.empty(LANES, dtype=np.int64)
    lane_depth = np.empty(LANES, dtype=np.int64)
    owner = np.empty(LANES, dtype=np.int64)
    end = np.empty(LANES, dtype=np.int64)
    r = 0
    while r < len(lo):
        m = 0
        longest = 0
        while r < len(lo) and m < LANES:
            a, b = _clip(lo[r], hi[r], depth[r], n)
            t = tokens[r]
            if a < b and 0 <= t <= max_token:
                base[m] = a
                length[m] = b - a
                end[m] = b
                target[m] = t + 1
                lane_depth[m] = depth[r]
                owner[m] = r
                m += 1
                longest = max(longest, b - a)
            r += 1
        _lower_bounds(text, suffixes, base, length, target, lane_depth, m, longest)
        for j in range(m):
            out[owner[j]] = base[j] < end[j] and _column(text, suffixes, base[j], lane_depth[j]) == target[j]
    return out


@numba.njit(cache=True, nogil=True)
def _first_occurring_kernel(
    text, suffixes, lo, hi, depth, candidates, need, max_token, bit_rows, bits
):  # pragma: no cover - compiled
    """``first_occurring``: per row, lockstep groups of at most ``LANES`` candidates, each group as
    large as the hits still needed, until the row has ``need`` hits or no candidates left. A row
    with a follower bitmap (``bit_rows[r] >= 0``, a row of ``bits``) reads it instead."""
    n = len(text)
    rows, k = candidates.shape
    out = np.zeros((rows, k), dtype=np.bool_)
    base = np.empty(LANES, dtype=np.int64)
    length = np.empty(LANES, dtype=np.int64)
    target = np.empty(LANES, dtype=np.int64)
    lane_depth = np.empty(LANES, dtype=np.int64)
    owner = np.empty(LANES, dtype=np.int64)
    for r in range(rows):
        a, b = _clip(lo[r], hi[r], depth[r], n)
        if a >= b:
            continue
        hits, j = 0, 0
        row = bit_rows[r]
        if row >= 0:
            while j < k and hits < need[r]:
                t = candidates[r, j]
                if 0 <= t <= max_token and (bits[row, t >> 3] >> (t & 7)) & 1:
                    out[r, j] = True
                    hits += 1
                j += 1
            continue
        while j < k and hits < need[r]:
            m = 0
            group = min(LANES, need[r] - hits)
            while j < k and m < group:
                t = candidates[r, j]
                if 0 <= t <= max_token:
                    base[m] = a
                    length[m] = b - a
                    target[m] = t + 1
                    lane_depth[m] = depth[r]
                    owner[m] = j
                    m += 1
                j += 1
            _lower_bounds(text, suffixes, base, length, target, lane_depth, m, b - a)
            for i in range(m):
                if base[i] < b and _column(text, suffixes, base[i], lane_depth[i]) == target[i]:
                    out[r, owner[i]] = True
                    hits += 1
    return out


@numba.njit(cache=True, nogil=True)
def _next_tokens_kernel(text, suffixes, lo, hi, depth, max_token):  # pragma: no cover - compiled
    n = len(text)
    offsets = np.zeros(len(lo) + 1, dtype=np.int64)
    out_tokens = np.empty(1024, dtype=np.int64)
    out_counts = np.empty(1024, dtype=np.int64)
    k = 0
    for r in range(len(lo)):
        a, b = _clip(lo[r], hi[r], depth[r], n)
        need = k + min(b - a, max_token + 1)  # a row has at most this many distinct next tokens
        if need > len(out_tokens):  # grow between rows only: reassigning inside the scan costs 4x
            capacity = max(2 * len(out_tokens), need)
            grown = np.empty(capacity, dtype=np.int64)
            grown[:k] = out_tokens[:k]
            out_tokens = grown
            grown = np.empty(capacity, dtype=np.int64)
            grown[:k] = out_counts[:k]
            out_counts = grown
        k = _runs(text, suffixes, a, b, depth[r], out_tokens, out_counts, k)
        offsets[r + 1] = k
    return offsets, out_tokens[:k].copy(), out_counts[:k].copy()


@numba.njit(cache=True, nogil=True)
def _runs(text, suffixes, a, b, depth, out_tokens, out_counts, k):  # pragma: no cover - compiled
    """Append the runs of equal column values in rows ``[a, b)`` (separators skipped) at ``k``; new ``k``.

    Each run is scanned linearly for its first ``LINEAR_PROBES`` rows (short runs: one probe per row
    and few mispredicted branches), then galloped (i+1, i+2, i+4, ...) and binary-searched to its end.
    The column value that ended a run is carried over, so no row is read twice.
    """
    i = a
    value = _column(text, suffixes, i, depth) if i < b else np.int64(0)
    while i < b:
        following = np.int64(0)
        j = i + 1
        stop = min(i + LINEAR_PROBES, b)
        while j < stop:
            following = _column(text, suffixes, j, depth)
            if following != value:
                break
            j += 1
        if j < stop or j == b:
            end = j
        else:  # the run goes on past the linear probes: gallop from its last known row
            base, step = j - 1, 1
            while base + step < b:
                following = _column(text, suffixes, base + step, depth)
                if following > value:
                    break
                step *= 2
            left, end = base + step // 2 + 1, min(base + step, b)
            while left < end:
                mid = (left + end) >> 1
                probe = _column(text, suffixes, mid, depth)
                if probe <= value:
                    left = mid + 1
                else:
                    end = mid
                    following = probe
        if value != 0:  # a separator ends the document: not a token
            out_tokens[k] = value - 1
            out_counts[k] = end - i
            k += 1
        i = end
        value = following
    return k


@numba.njit(cache=True, nogil=True)
def _locate_kernel(suffixes, doc_starts, lo, hi, depth, limit):  # pragma: no cover - compiled
    n = len(suffixes)
    offsets = np.zeros(len(lo) + 1, dtype=np.int64)
    for r in range(len(lo)):
        a, b = _clip(lo[r], hi[r], depth[r], n)
        offsets[r + 1] = offsets[r] + min(b - a, limit)
    docs = np.empty(offsets[-1], dtype=np.int64)
    starts = np.empty(offsets[-1], dtype=np.int64)
    n_docs = len(doc_starts) - 1
    for r in range(len(lo)):
        a, _ = _clip(lo[r], hi[r], depth[r], n)
        for j in range(offsets[r + 1] - offsets[r]):
            p = np.int64(suffixes[a + j])
            left, right = 0, n_docs  # last document whose start is <= p
            while right - left > 1:
                mid = (left + right) >> 1
                if doc_starts[mid] <= p:
                    left = mid
                else:
                    right = mid
            docs[offsets[r] + j] = left
            starts[offsets[r] + j] = p - doc_starts[left]
    return offsets, docs, starts
