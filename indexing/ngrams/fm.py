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

import numpy as np

from indexing.artifacts import ArtifactError, save_json, save_npy
from indexing.ngrams.base import read_shard_files
from indexing.ngrams.fm_kernels import (
    FIRST_TOKEN,
    build_bwt,
    compact,
    extend_kernel,
    extract_kernel,
    fill_reversed,
    locate_kernel,
    next_tokens_kernel,
    shifts,
)
from indexing.ngrams.suffix import MAX_SYMBOL, suffix_array
from indexing.ngrams.wavelet import (
    build_levels,
    directory_dtype,
    levels_for,
    n_words,
    pack_bits,
    rank_directory,
)

FM_JSON = "fm.json"
FM_FORMAT = 1
FM_ARRAYS = (
    "wm_words",
    "wm_dirs",
    "wm_zeros",
    "before",
    "shift",
    "alphabet",
    "mark_words",
    "mark_dirs",
    "samples",
    "doc_starts",
    "doc_rows",
)
DEFAULT_SAMPLE_RATE = 32


def _int64(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.int64)


class FMIndexShard:
    """One shard of the ``fm`` n-gram store (implements :class:`indexing.ngrams.base.NgramShard`)."""

    backend = "fm"
    select_width = 1 << 12
    """Wide rows up to this many occurrences are cheaper to enumerate than to check candidate by candidate (one
    wavelet descent per distinct follower)."""

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
    def build(cls, tokens: np.ndarray, doc_offsets: np.ndarray, sample_rate: int = DEFAULT_SAMPLE_RATE) -> FMIndexShard:
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

        alphabet, codes = compact(tokens)
        sigma = len(alphabet) + FIRST_TOKEN
        if sigma - 1 > MAX_SYMBOL:
            raise ValueError(f"at most {MAX_SYMBOL - 1} distinct token ids per shard, got {len(alphabet)}")
        text = np.empty(n_rows, dtype=np.uint16 if sigma <= (1 << 16) else np.uint32)
        fill_reversed(codes, offsets, text)
        del codes
        before = np.zeros(sigma + 1, dtype=np.int64)
        before[1:] = np.cumsum(np.bincount(text, minlength=sigma))

        suffixes = suffix_array(text)
        bwt = build_bwt(text, suffixes)
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
        shift = shifts(wm_words, wm_dirs, wm_zeros, before)
        arrays = {
            "wm_words": wm_words,
            "wm_dirs": wm_dirs,
            "wm_zeros": wm_zeros,
            "before": before,
            "shift": shift,
            "alphabet": alphabet,
            "mark_words": mark_words,
            "mark_dirs": rank_directory(mark_words, n_rows),
            "samples": samples,
            "doc_starts": doc_starts,
            "doc_rows": doc_rows,
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
        return extend_kernel(
            *self._wm, self.before, self.shift, self.alphabet, _int64(lo), _int64(hi), _int64(depth), _int64(tokens)
        )

    def occurs(self, lo: np.ndarray, hi: np.ndarray, depth: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Bool per row: ``extend`` gives a non-empty range (a backward-search step is all fm has)."""
        new_lo, new_hi = self.extend(lo, hi, depth, tokens)
        return new_hi > new_lo

    def first_occurring(
        self, lo: np.ndarray, hi: np.ndarray, depth: np.ndarray, candidates: np.ndarray, need: np.ndarray
    ) -> np.ndarray:
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
        return next_tokens_kernel(*self._wm, self.before, self.alphabet, _int64(lo), _int64(hi), _int64(depth))

    def locate(
        self, lo: np.ndarray, hi: np.ndarray, depth: np.ndarray, limit: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR ``(offsets, docs, starts)`` of the first ``limit`` rows of each range (LF walks to samples)."""
        return locate_kernel(
            *self._wm,
            self.before,
            self.shift,
            self.mark_words,
            self.mark_dirs,
            self.samples,
            self.doc_starts,
            _int64(lo),
            _int64(hi),
            _int64(depth),
            max(int(limit), 0),
        )

    def doc_tokens(self, doc: int) -> np.ndarray:
        """Document ``doc``'s tokens (int64), decoded by LF steps from its separator's row."""
        if not 0 <= doc < self.n_docs:
            raise IndexError(f"document {doc} out of range for a shard of {self.n_docs} documents")
        length = int(self.doc_starts[doc + 1]) - int(self.doc_starts[doc]) - 1
        return extract_kernel(*self._wm, self.shift, self.alphabet, int(self.doc_rows[doc]), length)

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
