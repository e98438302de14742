"""``NgramIndex``: every n-gram of a tokenized corpus, as one index over one or more shards.

SEAL's identifiers are n-grams of the corpus: a model generates an n-gram one token at a time,
the index says which tokens may follow (only n-grams that occur), and where an n-gram occurs
maps it back to documents. A shard (``sa`` backend: suffix array; ``fm``: compressed FM-index;
see ``indexing/ngrams/base.py``) indexes up to ``shard_tokens`` tokens; an index is a list of
shards queried together, so a corpus beyond one shard (or beyond 2**31 tokens) is still one index.

    index = NgramIndex.build(corpus, load_tokenizer("minilm"), backend="sa")
    r = index.extend(index.root(1), np.array([2003]))       # n-grams grow one token per call
    index.next_tokens(r)                                      # [(tokens, counts)] that follow
    index.locate(r, limit=100)                                # [(documents, start offsets)]
    index.save("indexes/scifact-ngrams"); NgramIndex.load("indexes/scifact-ngrams")  # memory-mapped

Documents are numbered in corpus order across shards; ``doc_ids`` holds the corpus's ``_id`` of
each. With ``title_markers=(begin, end)`` a document is stored as ``begin title end text``, so
n-grams that start with ``begin`` are the title view (SEAL decodes titles that way); without, it
is the corpus's document text (title and text joined, ``indexing.columns.document_texts``).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import indexing.ngrams.within as within
from indexing.artifacts import check_counts, load_json, read_manifest, reading, save_json, write_artifact
from indexing.columns import column, column_names, document_texts, n_rows
from indexing.ngrams.base import NgramShard
from indexing.ngrams.ranges import Ranges
from indexing.tokenizer import TextTokenizer

KIND = "ngram-index"
BACKENDS = {"sa": "indexing.ngrams.sa:SuffixArrayShard", "fm": "indexing.ngrams.fm:FMIndexShard"}
DEFAULT_SHARD_TOKENS = 1 << 30


def backend_class(name: str) -> type:
    """The shard class registered as ``name`` (``sa`` or ``fm``)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown n-gram index backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)


class NgramIndex:
    """The shards of one corpus, answering for all of them at once (see the module docstring)."""

    def __init__(
        self, shards: Sequence[NgramShard], doc_ids: Sequence[str] | None = None, config: dict[str, Any] | None = None
    ) -> None:
        if not shards:
            raise ValueError("an NgramIndex needs at least one shard")
        backends = {s.backend for s in shards}
        if len(backends) != 1:
            raise ValueError(f"all shards must use one backend, got {sorted(backends)}")
        self.shards = list(shards)
        self.backend = backends.pop()
        #: the first global document number of each shard, then the total
        self.doc_starts = np.concatenate([[0], np.cumsum([s.n_docs for s in self.shards])]).astype(np.int64)
        self.n_docs = int(self.doc_starts[-1])
        self.n_tokens = int(sum(s.n_tokens for s in self.shards))
        if doc_ids is not None and len(doc_ids) != self.n_docs:
            raise ValueError(f"{len(doc_ids)} doc_ids for {self.n_docs} documents")
        self.doc_ids = list(doc_ids) if doc_ids is not None else [str(d) for d in range(self.n_docs)]
        self.config = dict(config or {})
        self._roots = [s.root() for s in self.shards]
        self._forward: tuple[np.ndarray, np.ndarray] | None = None
        self._token_bound = 1

    def __repr__(self) -> str:
        return (
            f"NgramIndex(backend={self.backend!r}, documents={self.n_docs}, tokens={self.n_tokens}, "
            f"shards={len(self.shards)})"
        )

    # ------------------------------------------------------------------ queries

    def root(self, n: int = 1) -> Ranges:
        """``n`` rows of the empty n-gram (every token position of the corpus)."""
        lo = np.array([[r[0] for r in self._roots]] * n, dtype=np.int64).reshape(n, len(self.shards))
        hi = np.array([[r[1] for r in self._roots]] * n, dtype=np.int64).reshape(n, len(self.shards))
        return Ranges(lo, hi, np.zeros(n, dtype=np.int64))

    def extend(self, ranges: Ranges, tokens: np.ndarray) -> Ranges:
        """Each row's n-gram followed by ``tokens[i]`` (one token per row); empty where it never occurs."""
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if len(tokens) != len(ranges):
            raise ValueError(f"{len(tokens)} tokens for {len(ranges)} ranges: one token per row")
        lo = np.empty_like(ranges.lo)
        hi = np.empty_like(ranges.hi)
        for s, shard in enumerate(self.shards):
            lo[:, s], hi[:, s] = shard.extend(ranges.lo[:, s].copy(), ranges.hi[:, s].copy(), ranges.depth, tokens)
        return Ranges(lo, hi, ranges.depth + 1)

    def find(self, ngrams: Sequence[Sequence[int]]) -> Ranges:
        """Ranges of whole n-grams (walks from the root; decoding extends instead)."""
        n = len(ngrams)
        ranges = self.root(n)
        longest = max((len(g) for g in ngrams), default=0)
        for step in range(longest):
            tokens = np.array([g[step] if step < len(g) else -1 for g in ngrams], dtype=np.int64)
            grown = self.extend(ranges, tokens)
            keep = np.array([step < len(g) for g in ngrams])
            ranges = Ranges(
                np.where(keep[:, None], grown.lo, ranges.lo),
                np.where(keep[:, None], grown.hi, ranges.hi),
                np.where(keep, grown.depth, ranges.depth),
            )
        return ranges

    def count(self, ranges: Ranges) -> np.ndarray:
        """Occurrences of each row's n-gram, int64 ``[n]``."""
        return ranges.counts

    # ------------------------------------------------------------------ decoding checks

    @property
    def n_shards(self) -> int:
        """Shards the index holds: a range has one ``(lo, hi)`` per shard."""
        return len(self.shards)

    @property
    def select_width(self) -> int:
        """A wide range of at most this many occurrences is cheaper to enumerate than to check (the backend's)."""
        return self.shards[0].select_width

    def occurs(self, ranges: Ranges, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Bool per ``i``: row ``rows[i]``'s n-gram followed by ``tokens[i]`` occurs in some shard (as cheaply as
        the backend answers it: ``sa`` with one binary search, not ``extend``'s two)."""
        found = np.zeros(len(tokens), dtype=bool)
        depth = ranges.depth[rows]
        for s, shard in enumerate(self.shards):
            found |= shard.occurs(ranges.lo[rows, s], ranges.hi[rows, s], depth, tokens)
        return found

    def first_occurring(self, ranges: Ranges, rows: np.ndarray, candidates: np.ndarray, need: np.ndarray) -> np.ndarray:
        """Bool ``[len(rows), k]``: which ``candidates[i]`` continue row ``rows[i]``'s n-gram, true at least up to the
        ``need[i]``-th that does (later ones may be left unchecked, False). One shard stops each row early where
        its backend can (``sa``); several shards check every candidate."""
        if len(self.shards) == 1:
            return self.shards[0].first_occurring(
                ranges.lo[rows, 0], ranges.hi[rows, 0], ranges.depth[rows], candidates, need
            )
        width = candidates.shape[1]
        return self.occurs(ranges, np.repeat(rows, width), candidates.reshape(-1)).reshape(len(rows), width)

    def follower_table(self) -> Any:
        """The followers of frequent 1-2-token n-grams as bitmaps (a ``FollowerTable`` indexed by the one shard's
        ranges), when the index is one shard whose backend keeps them (``sa``); else None. Built on first use."""
        return self.shards[0].followers() if len(self.shards) == 1 else None

    def next_tokens_csr(self, ranges: Ranges) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(offsets, tokens, counts)``: the tokens that follow each row's n-gram, ascending, with counts."""
        parts = [
            shard.next_tokens(ranges.lo[:, s].copy(), ranges.hi[:, s].copy(), ranges.depth)
            for s, shard in enumerate(self.shards)
        ]
        if len(parts) == 1:
            return parts[0]
        return _merge_csr([(p[0], p[1], p[2]) for p in parts], combine_counts=True)

    def next_tokens(self, ranges: Ranges) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each row, ``(tokens, counts)`` of what follows its n-gram (tokens ascending)."""
        offsets, tokens, counts = self.next_tokens_csr(ranges)
        return [(tokens[offsets[i] : offsets[i + 1]], counts[offsets[i] : offsets[i + 1]]) for i in range(len(ranges))]

    def locate_csr(self, ranges: Ranges, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(offsets, docs, starts)``: up to ``limit`` occurrences per row (global document numbers)."""
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        remaining = np.full(len(ranges), limit, dtype=np.int64)
        parts = []
        for s, shard in enumerate(self.shards):
            # each row asks this shard for what the earlier shards left of its limit: locate returns a
            # range's first rows, so cutting the range to that length does it
            lo, hi = ranges.lo[:, s].copy(), ranges.hi[:, s].copy()
            hi = np.minimum(hi, lo + np.maximum(remaining, 0))
            offsets, docs, starts = shard.locate(lo, hi, ranges.depth, int(remaining.max(initial=0)))
            parts.append((offsets, docs.astype(np.int64) + self.doc_starts[s], starts.astype(np.int64)))
            remaining -= np.diff(offsets)
        if len(parts) == 1:
            return parts[0]
        return _merge_csr(parts, combine_counts=False)

    def locate(self, ranges: Ranges, limit: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each row, ``(documents, start offsets)`` of up to ``limit`` occurrences of its n-gram."""
        offsets, docs, starts = self.locate_csr(ranges, limit)
        return [(docs[offsets[i] : offsets[i + 1]], starts[offsets[i] : offsets[i + 1]]) for i in range(len(ranges))]

    # ------------------------------------------------------- within document sets (1-Pager)

    def forward_tokens(self) -> tuple[np.ndarray, np.ndarray]:
        """``(tokens, doc_offsets)``: every document's tokens in corpus order (int32 where the ids fit) and where
        each starts (``n_docs + 1``); built from the shards on first use, then kept."""
        if self._forward is None:
            lengths = self.doc_lengths()
            offsets = np.zeros(self.n_docs + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            parts = [self.doc_tokens(d) for d in range(self.n_docs)]
            tokens = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
            if len(tokens) and tokens.max() <= INT32_MAX:
                tokens = tokens.astype(np.int32)
            self._forward = (np.ascontiguousarray(tokens), offsets)
            self._token_bound = int(tokens.max()) + 1 if len(tokens) else 1
        return self._forward

    def token_bound(self) -> int:
        """One more than the largest token id in the corpus (the size of a per-token table)."""
        self.forward_tokens()
        return self._token_bound

    def followers_within(
        self, ranges: Ranges, docs: np.ndarray, method: str = "auto"
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``next_tokens_csr`` counted only inside row ``i``'s documents ``docs[i]`` (a bitmap of
        :mod:`indexing.ngrams.within`): ``(offsets, tokens, counts)``, tokens ascending."""
        return self._within(ranges, docs, method, want_docs=False)

    def docs_within(self, ranges: Ranges, docs: np.ndarray, method: str = "auto") -> np.ndarray:
        """The documents of each row's set ``docs[i]`` (bitmap) that hold the row's n-gram, as a new bitmap (the
        empty n-gram keeps the set)."""
        return self._within(ranges, docs, method, want_docs=True)

    def _within(self, ranges: Ranges, bits: np.ndarray, method: str, want_docs: bool) -> Any:
        """Each row scans its documents (cost: their tokens) or filters its n-gram's occurrences (cost: how many),
        whichever reads less (``method="auto"``); the empty n-gram always scans."""
        if method not in within.METHODS:
            raise ValueError(f"method must be one of {', '.join(within.METHODS)}; got {method!r}")
        bits = np.ascontiguousarray(bits, dtype=np.uint64)
        n = len(ranges)
        if bits.shape != (n, within.words_for(self.n_docs)):
            raise ValueError(f"document sets of shape {bits.shape} for {n} rows over {self.n_docs} documents")
        tokens, doc_offsets = self.forward_tokens()
        counts = ranges.counts
        cheaper = {"auto": within.set_tokens(bits, doc_offsets) <= counts, "scan": True, "filter": False}[method]
        scan = (ranges.depth == 0) | cheaper
        gram_at = np.zeros(n, dtype=np.int64)  # a scan matches the n-gram's tokens, read at one occurrence
        need = np.flatnonzero(scan & (ranges.depth > 0) & (counts > 0))
        if len(need):
            offsets, docs, starts = self.locate_csr(ranges[need], 1)
            gram_at[need] = doc_offsets[docs[offsets[:-1]]] + starts[offsets[:-1]]
        filtered = np.flatnonzero(~scan & (counts > 0))
        occ_offsets = np.zeros(n + 1, dtype=np.int64)
        occ_docs = occ_pos = np.zeros(0, dtype=np.int64)
        if len(filtered):
            offsets, occ_docs, starts = self.locate_csr(ranges[filtered], int(counts[filtered].max()))
            sizes = np.zeros(n, dtype=np.int64)
            sizes[filtered] = np.diff(offsets)
            occ_offsets[1:] = np.cumsum(sizes)
            occ_pos = doc_offsets[occ_docs] + starts
        args = (tokens, doc_offsets, bits, ranges.depth, gram_at, scan, counts > 0, occ_offsets, occ_docs)
        if want_docs:
            return within.docs_kernel(*args)
        return within.followers_kernel(*args, occ_pos, self.token_bound())

    def _shard_of(self, doc: int) -> tuple[NgramShard, int]:
        if not 0 <= doc < self.n_docs:
            raise IndexError(f"document {doc} out of range: the index has {self.n_docs} documents")
        s = int(np.searchsorted(self.doc_starts, doc, side="right") - 1)
        return self.shards[s], doc - int(self.doc_starts[s])

    def doc_tokens(self, doc: int) -> np.ndarray:
        """The tokens of document ``doc`` (a global number), as indexed."""
        shard, local = self._shard_of(int(doc))
        return shard.doc_tokens(local)

    def doc_lengths(self) -> np.ndarray:
        return np.concatenate([s.doc_lengths() for s in self.shards]).astype(np.int64)

    def nbytes(self) -> int:
        """Bytes of every array the shards keep (doc ids not counted)."""
        return int(sum(s.nbytes() for s in self.shards))

    # ---------------------------------------------------------------- building

    @classmethod
    def from_token_lists(
        cls,
        docs: Sequence[Sequence[int]],
        backend: str = "sa",
        doc_ids: Sequence[str] | None = None,
        shard_tokens: int = DEFAULT_SHARD_TOKENS,
        config: dict[str, Any] | None = None,
    ) -> NgramIndex:
        """Index documents given as token-id sequences (the tokenized corpus, in order)."""
        builder = _ShardBuilder(backend_class(backend), shard_tokens)
        for doc in docs:
            builder.add(np.asarray(doc, dtype=np.int64))
        return cls(builder.finish(), doc_ids=doc_ids, config={"backend": backend, **(config or {})})

    @classmethod
    def build(
        cls,
        corpus: Any,
        tokenizer: TextTokenizer,
        backend: str = "sa",
        title_markers: tuple[int, int] | None = None,
        shard_tokens: int = DEFAULT_SHARD_TOKENS,
        batch_size: int = 1000,
        progress: bool = True,
    ) -> NgramIndex:
        """Tokenize ``corpus`` (a ``datasets.Dataset`` or anything ``indexing.columns`` reads) in
        batches, streaming the tokens into shards of at most ``shard_tokens``."""
        from tqdm.auto import tqdm

        check_title_markers(title_markers, tokenizer.vocab_size)
        names = column_names(corpus)
        doc_ids = [str(x) for x in column(corpus, "_id")] if "_id" in names else None
        with_titles = title_markers is not None and "title" in names
        builder = _ShardBuilder(backend_class(backend), shard_tokens)
        n = n_rows(corpus)
        with tqdm(total=n, desc=f"n-gram index ({backend})", unit="doc", disable=not progress) as bar:
            for start in range(0, n, batch_size):
                batch = _rows(corpus, start, min(n, start + batch_size))
                if with_titles:
                    begin, end = title_markers
                    titles = tokenizer.encode_batch(document_texts(batch, ("title",)))
                    texts = tokenizer.encode_batch(document_texts(batch, ("text",)))
                    encoded = [[begin, *t, end, *x] for t, x in zip(titles, texts, strict=True)]
                else:
                    encoded = tokenizer.encode_batch(document_texts(batch))
                for tokens in encoded:
                    builder.add(np.asarray(tokens, dtype=np.int64))
                bar.update(len(encoded))
        config = {
            "backend": backend,
            "tokenizer": tokenizer.name,
            "vocab_size": tokenizer.vocab_size,
            "title_markers": list(title_markers) if with_titles else None,
        }
        return cls(builder.finish(), doc_ids=doc_ids, config=config)

    # ------------------------------------------------------------- save / load

    def counts(self) -> dict[str, int]:
        return {"documents": self.n_docs, "tokens": self.n_tokens, "shards": len(self.shards), "bytes": self.nbytes()}

    def write_files(self, folder: Path) -> None:
        """Each shard in ``shard-00000/`` ..., and ``doc_ids.json`` (inside an artifact being written)."""
        for s, shard in enumerate(self.shards):
            sub = folder / f"shard-{s:05d}"
            sub.mkdir(parents=True)
            shard.save(sub)
        save_json(folder, "doc_ids.json", self.doc_ids)

    def manifest_config(self) -> dict[str, Any]:
        """What a manifest records about this index; ``from_files`` reads it back."""
        return {**self.config, "backend": self.backend, "shards": len(self.shards)}

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the index as one verified folder (manifest with checksums; see ``indexing.artifacts``)."""
        return write_artifact(
            path, KIND, self.write_files, config=self.manifest_config(), counts=self.counts(), overwrite=overwrite
        )

    @classmethod
    def from_files(cls, folder: Path, config: dict[str, Any], mmap: bool = True) -> NgramIndex:
        """Read what ``write_files`` wrote; ``config`` is ``manifest_config()`` as recorded."""
        shard_cls = backend_class(config["backend"])
        shards = [shard_cls.load(folder / f"shard-{s:05d}", mmap=mmap) for s in range(int(config["shards"]))]
        return cls(shards, doc_ids=load_json(folder, "doc_ids.json"), config=config)

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = True, verify: bool = True) -> NgramIndex:
        """Load a saved index, arrays memory-mapped; refused if the manifest or a checksum does not match."""
        folder = Path(path)
        manifest = read_manifest(folder, kind=KIND, verify=verify)
        with reading(folder):
            index = cls.from_files(folder, manifest["config"], mmap=mmap)
        check_counts(folder, manifest, index.counts())
        return index


def check_title_markers(markers: Sequence[int] | None, vocab_size: int) -> None:
    """ValueError unless ``markers`` is None or two different token ids of a vocabulary of ``vocab_size``."""
    if markers is not None and (
        len(markers) != 2 or len(set(markers)) != 2 or not all(0 <= m < vocab_size for m in markers)
    ):
        raise ValueError(
            f"title markers must be two different token ids of the tokenizer (0..{vocab_size - 1}), got {list(markers)}"
        )


INT32_MAX = np.iinfo(np.int32).max


class _ShardBuilder:
    """Collects documents' tokens and cuts a shard whenever ``shard_tokens`` would be exceeded."""

    def __init__(self, shard_cls: type, shard_tokens: int) -> None:
        if shard_tokens < 1:
            raise ValueError(f"shard_tokens must be >= 1, got {shard_tokens}")
        self.shard_cls, self.shard_tokens = shard_cls, shard_tokens
        self.shards: list[NgramShard] = []
        self.docs: list[np.ndarray] = []
        self.size = 0

    def add(self, tokens: np.ndarray) -> None:
        if self.docs and self.size + len(tokens) > self.shard_tokens:
            self._cut()
        if len(tokens) and 0 <= tokens.min() and tokens.max() <= INT32_MAX:  # half the memory of int64
            tokens = tokens.astype(np.int32)  # (ids outside int32 stay as given: the shard build refuses them)
        self.docs.append(tokens)
        self.size += len(tokens)

    def _cut(self) -> None:
        offsets = np.zeros(len(self.docs) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(d) for d in self.docs])
        tokens = np.concatenate(self.docs) if self.docs else np.zeros(0, dtype=np.int64)
        self.docs, self.size = [], 0  # freed before the build, whose temporaries are the peak
        self.shards.append(self.shard_cls.build(tokens, offsets))

    def finish(self) -> list[NgramShard]:
        if self.docs or not self.shards:
            self._cut()
        return self.shards


def _rows(corpus: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of a corpus, in a form ``indexing.columns`` reads."""
    if isinstance(corpus, dict):
        return {k: list(v)[start:stop] for k, v in corpus.items()}
    return corpus[start:stop]


def _merge_csr(
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], combine_counts: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-wise concatenation of CSR parts; with ``combine_counts``, equal keys are summed (keys ascending)."""
    n = len(parts[0][0]) - 1
    out_keys, out_vals, offsets = [], [], np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        keys = np.concatenate([p[1][p[0][i] : p[0][i + 1]] for p in parts]).astype(np.int64)
        vals = np.concatenate([p[2][p[0][i] : p[0][i + 1]] for p in parts]).astype(np.int64)
        if combine_counts:
            keys, inverse = np.unique(keys, return_inverse=True)
            vals = np.bincount(inverse, weights=vals, minlength=len(keys)).astype(np.int64)
        out_keys.append(keys)
        out_vals.append(vals)
        offsets[i + 1] = offsets[i] + len(keys)
    empty = np.zeros(0, dtype=np.int64)
    return offsets, np.concatenate(out_keys) if n else empty, np.concatenate(out_vals) if n else empty
