"""``fm`` backend of the n-gram store: a compressed FM-index over token ids (wavelet matrix + sampled suffix array).

The indexed text is ``R = reversed(doc 0) 1 reversed(doc 1) 1 ... reversed(doc n-1) 1 0`` over dense
codes: 0 is the end of the text (unique and smallest, so the BWT is well defined), 1 the document
separator, and token ``alphabet[k]`` is code ``k + 2`` (only the ids the shard uses, so the wavelet
matrix needs ceil(log2(sigma)) levels). An n-gram ``g`` occurs where ``reversed(g)`` does, so FM-index
*backward* search reads ``g`` *forward*: extending ``g`` by token ``c`` is one LF step
``[C[c] + rank_c(lo), C[c] + rank_c(hi))``, and the tokens that follow ``g`` are the distinct symbols of
``BWT[lo:hi]`` (a separator or the end there means ``g`` ends its document: not a token). The separator
matches no query token, so nothing crosses a document boundary. Rows are BWT (= suffix array) rows of
``R``; the empty n-gram's range is every row whose suffix starts with a token, ``[C[2], len(R))``, and
a depth-0 row always means all of them (extend and next_tokens then read ``C``).

Layout (plain ``.npy`` files ``fm_<name>.npy`` plus ``fm.json``); ``N = len(R) = n_tokens + n_docs + 1``::

    wm_words, wm_dirs, wm_zeros  the BWT's codes as a wavelet matrix (wavelet.py), about 1.06 * levels bits/row
    before      int64 [sigma + 1]  C: symbols of R smaller than each code
    shift       int64 [sigma]      C[c] - bottom(c): an LF step is shift[c] + one wavelet descent (wavelet.py)
    alphabet    int64 [sigma - 2]  the token ids used, ascending
    mark_words, mark_dirs          bit vector (with rank directory) over rows: the suffix starts at a
                                   multiple of ``sample_rate``
    samples     int32 (int64 from 2**31 rows) [ceil(N / sample_rate)]: those suffixes' starts, in row order
    doc_starts  same int type [n_docs + 1]: where reversed(doc d) starts in R (the last entry is N - 1)
    doc_rows    same int type [n_docs]: the row of the suffix that starts at doc d's separator

``locate`` LF-walks each row to a marked one (at most ``sample_rate - 1`` steps) and maps the position
in R to (document, forward start); ``doc_tokens`` LF-walks from the document's separator row, which
reads the reversed document backwards, i.e. forward. At 32k-token Zipfian vocabularies and the default
sample rate of 32 the whole shard is about 2.4 bytes per token (the ``sa`` backend: 6).
"""

from __future__ import annotations

from pathlib import Path

import numba
import numpy as np

from indexing.artifacts import ArtifactError, save_json, save_npy
from indexing.ngrams.base import read_shard_files
from indexing.ngrams.suffix import MAX_SYMBOL, suffix_array
from indexing.ngrams.wavelet import (
    access_descend,
    access_descend_many,
    bit,
    build_levels,
    descend,
    descend_ranges,
    directory_dtype,
    distinct,
    levels_for,
    n_words,
    pack_bits,
    rank1,
    rank_directory,
)

FM_JSON = "fm.json"
FM_FORMAT = 1
FM_ARRAYS = (
    "wm_words", "wm_dirs", "wm_zeros", "before", "shift", "alphabet",
    "mark_words", "mark_dirs", "samples", "doc_starts", "doc_rows",
)
DEFAULT_SAMPLE_RATE = 32
NARROW_WIDTH = 1024  # next_tokens reads ranges up to this wide symbol by symbol (cheaper than the descent)
NARROW_CHUNK = 64  # rows whose narrow ranges are read together
END, SEPARATOR, FIRST_TOKEN = 0, 1, 2  # codes


def _int64(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.int64)


class FMIndexShard:
    """One shard of the ``fm`` n-gram store (implements :class:`indexing.ngrams.base.NgramShard`)."""

    backend = "fm"
    select_width = 1 << 12
    """Wide rows up to this many occurrences are cheaper to enumerate than to check candidate by candidate (one
    wavelet descent per distinct follower; measured at 50M tokens, benchmarks/ngram_index.py)."""

    def __init__(self, arrays: dict[str, np.ndarray], n_tokens: int, n_docs: int, sample_rate: int) -> None:
        missing = set(FM_ARRAYS) - set(arrays)
        if missing:
            raise ValueError(f"FMIndexShard: missing arrays {sorted(missing)}")
        self.arrays = {name: arrays[name] for name in FM_ARRAYS}
        for name, array in self.arrays.items():
            setattr(self, name, array)
        self.n_tokens, self.n_docs, self.sample_rate = int(n_tokens), int(n_docs), int(sample_rate)
        self.n_rows = self.n_tokens + self.n_docs + 1
        self.sigma = len(self.alphabet) + FIRST_TOKEN
        self._wm = (self.wm_words, self.wm_dirs, self.wm_zeros)

    # ------------------------------------------------------------------------------------------ build

    @classmethod
    def build(
        cls, tokens: np.ndarray, doc_offsets: np.ndarray, sample_rate: int = DEFAULT_SAMPLE_RATE
    ) -> FMIndexShard:
        """Index ``tokens`` split by ``doc_offsets`` (see base.py); ``sample_rate`` trades locate time for memory."""
        tokens = np.asarray(tokens)
        offsets = _int64(doc_offsets)
        if tokens.ndim != 1 or (len(tokens) and not np.issubdtype(tokens.dtype, np.integer)):
            raise ValueError(f"tokens must be a 1-d integer array, got {tokens.dtype} of shape {tokens.shape}")
        if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(tokens):
            raise ValueError("doc_offsets must run from 0 to len(tokens) (n_docs + 1 entries)")
        if np.any(offsets[1:] < offsets[:-1]):
            raise ValueError("doc_offsets must be non-decreasing")
        tokens = tokens.astype(np.int64, copy=False)  # (a uint64 id beyond int64 turns negative: refused)
        if len(tokens) and int(tokens.min()) < 0:
            raise ValueError("token ids must be non-negative (and below 2**63)")
        if sample_rate < 1:
            raise ValueError(f"sample_rate must be >= 1, got {sample_rate}")
        n_tokens, n_docs = len(tokens), len(offsets) - 1
        n_rows = n_tokens + n_docs + 1
        index_dtype = np.int32 if n_rows < (1 << 31) else np.int64

        alphabet, codes = _compact(tokens)
        sigma = len(alphabet) + FIRST_TOKEN
        if sigma - 1 > MAX_SYMBOL:
            raise ValueError(f"at most {MAX_SYMBOL - 1} distinct token ids per shard, got {len(alphabet)}")
        text = np.empty(n_rows, dtype=np.uint16 if sigma <= (1 << 16) else np.uint32)
        _fill_reversed(codes, offsets, text)
        del codes
        before = np.zeros(sigma + 1, dtype=np.int64)
        before[1:] = np.cumsum(np.bincount(text, minlength=sigma))

        suffixes = suffix_array(text)
        bwt = _bwt(text, suffixes)
        del text
        doc_starts = (offsets + np.arange(n_docs + 1, dtype=np.int64)).astype(index_dtype)
        # Rows 1..n_docs are the suffixes that start at a separator (code 1; row 0 is the end).
        separator_docs = np.searchsorted(doc_starts, suffixes[1 : n_docs + 1], side="right") - 1
        doc_rows = np.empty(n_docs, dtype=index_dtype)
        doc_rows[separator_docs] = np.arange(1, n_docs + 1, dtype=index_dtype)
        marked = suffixes % sample_rate == 0
        samples = suffixes[marked].astype(index_dtype)
        del suffixes
        mark_words = pack_bits(marked)
        del marked

        levels = levels_for(sigma)
        wm_words, wm_zeros = build_levels(bwt, levels)
        del bwt
        wm_dirs = rank_directory(wm_words, n_rows)
        shift = _shifts(wm_words, wm_dirs, wm_zeros, before)
        arrays = {
            "wm_words": wm_words, "wm_dirs": wm_dirs, "wm_zeros": wm_zeros, "before": before, "shift": shift,
            "alphabet": alphabet, "mark_words": mark_words, "mark_dirs": rank_directory(mark_words, n_rows),
            "samples": samples, "doc_starts": doc_starts, "doc_rows": doc_rows,
        }
        return cls(arrays, n_tokens, n_docs, sample_rate)

    # ------------------------------------------------------------------------------------------ queries

    def root(self) -> tuple[int, int]:
        """Every row whose suffix starts with a token: after the end row and the n_docs separator rows."""
        return int(self.before[FIRST_TOKEN]), self.n_rows

    def extend(
        self, lo: np.ndarray, hi: np.ndarray, depth: np.ndarray, tokens: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Narrow each row's range to the n-gram followed by ``tokens[i]``: one backward-search step."""
        return _extend_kernel(
            *self._wm, self.before, self.shift, self.alphabet, _int64(lo), _int64(hi), _int64(depth), _int64(tokens)
        )

    def occurs(self, lo: np.ndarray, hi: np.ndarray, depth: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Bool per row: ``extend`` gives a non-empty range (a backward-search step is all fm has)."""
        new_lo, new_hi = self.extend(lo, hi, depth, tokens)
        return new_hi > new_lo

    def first_occurring(self, lo: np.ndarray, hi: np.ndarray, depth: np.ndarray, candidates: np.ndarray,
                        need: np.ndarray) -> np.ndarray:
        """Bool ``[n, k]``: candidate ``j`` of row ``i`` continues the row's n-gram; fm checks every candidate."""
        n, k = candidates.shape
        rows = np.repeat(np.arange(n), k)
        found = self.occurs(_int64(lo)[rows], _int64(hi)[rows], _int64(depth)[rows], candidates.reshape(-1))
        return found.reshape(n, k)

    def followers(self) -> None:
        """fm keeps no follower bitmaps."""
        return None

    def next_tokens(
        self, lo: np.ndarray, hi: np.ndarray, depth: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR ``(offsets, tokens, counts)``: the distinct tokens of ``BWT[lo:hi]``, ascending."""
        return _next_tokens_kernel(*self._wm, self.before, self.alphabet, _int64(lo), _int64(hi), _int64(depth))

    def locate(
        self, lo: np.ndarray, hi: np.ndarray, depth: np.ndarray, limit: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR ``(offsets, docs, starts)`` of the first ``limit`` rows of each range (LF walks to samples)."""
        return _locate_kernel(
            *self._wm, self.before, self.shift, self.mark_words, self.mark_dirs, self.samples, self.doc_starts,
            _int64(lo), _int64(hi), _int64(depth), max(int(limit), 0),
        )

    def doc_tokens(self, doc: int) -> np.ndarray:
        """Document ``doc``'s tokens (int64), decoded by LF steps from its separator's row."""
        if not 0 <= doc < self.n_docs:
            raise IndexError(f"document {doc} out of range for a shard of {self.n_docs} documents")
        length = int(self.doc_starts[doc + 1]) - int(self.doc_starts[doc]) - 1
        return _extract_kernel(*self._wm, self.shift, self.alphabet, int(self.doc_rows[doc]), length)

    def doc_lengths(self) -> np.ndarray:
        return np.diff(np.asarray(self.doc_starts, dtype=np.int64)) - 1

    def nbytes(self) -> int:
        return int(sum(array.nbytes for array in self.arrays.values()))

    # ------------------------------------------------------------------------------------------ files

    def info(self) -> dict[str, int | str]:
        return {
            "format": FM_FORMAT,
            "n_docs": self.n_docs,
            "n_tokens": self.n_tokens,
            "sigma": self.sigma,
            "sample_rate": self.sample_rate,
            "index_dtype": self.samples.dtype.name,
        }

    def save(self, folder: Path) -> None:
        """Write every array as ``fm_<name>.npy`` and ``fm.json`` into the existing ``folder``."""
        folder = Path(folder)
        for name, array in self.arrays.items():
            save_npy(folder, f"fm_{name}.npy", array)
        save_json(folder, FM_JSON, self.info())

    @classmethod
    def load(cls, folder: Path, mmap: bool = True) -> FMIndexShard:
        """Read what ``save`` wrote; with ``mmap`` the arrays stay memory-mapped (read-only)."""
        folder = Path(folder)
        rebuild = "rebuild the n-gram store"
        files = {name: f"fm_{name}.npy" for name in FM_ARRAYS}
        info, arrays = read_shard_files(folder, "fm", FM_JSON, files, FM_FORMAT, mmap)
        arrays = {name: np.asarray(array) for name, array in arrays.items()}
        try:
            n_docs, n_tokens, sigma, rate = (int(info[k]) for k in ("n_docs", "n_tokens", "sigma", "sample_rate"))
            index = str(info["index_dtype"])
        except (KeyError, TypeError, ValueError) as err:
            raise ArtifactError(f"{folder}: damaged {FM_JSON} ({err!r}); {rebuild}") from None
        n_rows, levels = n_tokens + n_docs + 1, levels_for(sigma)
        words, n_blocks, dirs = n_words(n_rows), (n_rows >> 9) + 1, np.dtype(directory_dtype(n_rows)).name
        expected = {
            "wm_words": ((levels, words), "uint64"),
            "wm_dirs": ((levels, n_blocks), dirs),
            "wm_zeros": ((levels,), "int64"),
            "before": ((sigma + 1,), "int64"),
            "shift": ((sigma,), "int64"),
            "alphabet": ((sigma - FIRST_TOKEN,), "int64"),
            "mark_words": ((1, words), "uint64"),
            "mark_dirs": ((1, n_blocks), dirs),
            "samples": (((n_rows + rate - 1) // rate,), index),
            "doc_starts": ((n_docs + 1,), index),
            "doc_rows": ((n_docs,), index),
        }
        problems = [
            f"{name} is {arrays[name].dtype.name}{list(arrays[name].shape)}, expected {dtype}{list(shape)}"
            for name, (shape, dtype) in expected.items()
            if arrays[name].shape != shape or arrays[name].dtype.name != dtype
        ]
        if problems:
            raise ArtifactError(f"{folder}: inconsistent fm shard files: " + "; ".join(problems) + f"; {rebuild}")
        return cls(arrays, n_tokens, n_docs, rate)


def _compact(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
def _fill_reversed(codes, offsets, text):  # pragma: no cover - compiled
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
def _bwt(text, suffixes):  # pragma: no cover - compiled
    """``BWT[i] = text[SA[i] - 1]`` (the last symbol for the suffix that starts at 0)."""
    out = np.empty_like(text)
    n = len(text)
    for i in range(n):
        p = np.int64(suffixes[i])
        out[i] = text[p - 1] if p > 0 else text[n - 1]
    return out


@numba.njit(cache=True, nogil=True)
def _shifts(words, dirs, zeros, before):  # pragma: no cover - compiled
    """``C[c] - bottom(c)`` for every code: LF(i) = shift[c] + the descent of i."""
    sigma = len(before) - 1
    out = np.empty(sigma, dtype=np.int64)
    for c in range(sigma):
        out[c] = before[c] - descend(words, dirs, zeros, c, np.int64(0))
    return out


@numba.njit(cache=True, nogil=True)
def _code(alphabet, token):  # pragma: no cover - compiled
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
def _clip(lo, hi, depth, before):  # pragma: no cover - compiled
    """A range inside the root ``[C[2], N)``: every n-gram's range lies there; garbage gives an empty one."""
    first, n = before[FIRST_TOKEN], before[len(before) - 1]
    a = min(max(lo, first), n)
    b = min(max(hi, a), n)
    if depth < 0:
        b = a
    return a, b


@numba.njit(cache=True, nogil=True)
def _lf(words, dirs, zeros, shift, i):  # pragma: no cover - compiled
    """``(BWT[i], LF(i))``: the row of the suffix that starts one position earlier in R."""
    c, x = access_descend(words, dirs, zeros, i)
    return c, shift[c] + x


@numba.njit(cache=True, nogil=True)
def _extend_kernel(words, dirs, zeros, before, shift, alphabet, lo, hi, depth, tokens):  # pragma: no cover
    n = len(lo)
    new_lo = np.empty(n, dtype=np.int64)
    new_hi = np.empty(n, dtype=np.int64)
    codes = np.zeros(n, dtype=np.int64)
    steps = np.empty(n, dtype=np.int64)  # rows that take a backward-search step
    n_steps = 0
    for r in range(n):
        a, b = _clip(lo[r], hi[r], depth[r], before)
        c = _code(alphabet, tokens[r])
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
def _grow(out_tokens, out_counts, k, need):  # pragma: no cover - compiled
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
def _next_tokens_kernel(words, dirs, zeros, before, alphabet, lo, hi, depth):  # pragma: no cover - compiled
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
            a, b = _clip(lo[r], hi[r], depth[r], before)
            if depth[r] > 0 and b - a <= NARROW_WIDTH:
                m += b - a
        x = np.empty(m, dtype=np.int64)
        codes = np.empty(m, dtype=np.int64)
        m = 0
        for r in range(first, last):
            a, b = _clip(lo[r], hi[r], depth[r], before)
            if depth[r] > 0 and b - a <= NARROW_WIDTH:
                for i in range(a, b):
                    x[m] = i
                    m += 1
        access_descend_many(words, dirs, zeros, x, codes, np.arange(m), m)
        m = 0
        for r in range(first, last):
            a, b = _clip(lo[r], hi[r], depth[r], before)
            if a < b:
                out_tokens, out_counts = _grow(out_tokens, out_counts, k, min(b - a, n_symbols))
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
def _locate_kernel(
    words, dirs, zeros, before, shift, mark_words, mark_dirs, samples, doc_starts, lo, hi, depth, limit
):  # pragma: no cover - compiled
    offsets = np.zeros(len(lo) + 1, dtype=np.int64)
    for r in range(len(lo)):
        a, b = _clip(lo[r], hi[r], depth[r], before)
        offsets[r + 1] = offsets[r] + min(b - a, limit)
    total = offsets[-1]
    rows = np.empty(total, dtype=np.int64)  # one LF walk per occurrence, all walked in lockstep
    for r in range(len(lo)):
        a, _ = _clip(lo[r], hi[r], depth[r], before)
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
def _extract_kernel(words, dirs, zeros, shift, alphabet, row, length):  # pragma: no cover - compiled
    """``length`` tokens read by LF steps from ``row``: reversed(doc) backwards, i.e. the document forward."""
    out = np.empty(length, dtype=np.int64)
    i = np.int64(row)
    for j in range(length):
        c, i = _lf(words, dirs, zeros, shift, i)
        out[j] = alphabet[c - FIRST_TOKEN]
    return out
