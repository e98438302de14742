"""Synthetic corpora for cost measurements: i.i.d. Zipfian token ids, seeded, numpy only.

Token ids are drawn from a Zipf law over the content ids ``[2, vocab)`` (rank ``r`` has probability
proportional to ``1 / r**s``; ranks are given to ids by a seeded permutation), so pad = 0 and
eos = 1 never occur. The text means nothing: these corpora exist to measure how build time,
memory, index size and decoding latency grow with the number of documents and tokens, never
retrieval quality.

- ``zipf_token_stream(n_tokens, ...)``: exactly ``n_tokens`` tokens cut into documents of 64-192
  tokens (corpora of a given size in tokens, as an n-gram index is sized);
- ``zipf_documents(n_docs, ...)``: ``n_docs`` documents of ``min_length..max_length`` tokens;
  nested: the first ``m`` documents of a corpus of ``n > m`` are the corpus of ``m`` (same seed);
- ``as_dataset(tokens, offsets)``: a ``datasets.Dataset`` (``_id``, ``title``, ``text``) whose
  text spells token ``t`` as the word ``w{t}``, for code that wants a corpus rather than ids.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FIRST_ID = 2  # ids 0 (pad) and 1 (eos) never occur in a synthetic document
CHUNK = 1 << 22  # tokens drawn per call (bounds the temporary uniform doubles to 32 MB)


def zipf_table(vocab: int, s: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(cdf float64, ids)``: the cumulative Zipf law over ranks ``1..vocab-2`` and the id of each
    rank (a permutation of ``[2, vocab)`` drawn from ``rng``; uint16 when it fits, else int32)."""
    if vocab <= FIRST_ID:
        raise ValueError(f"vocab must be > {FIRST_ID} (ids 0 and 1 are reserved), got {vocab}")
    if s < 0:
        raise ValueError(f"the Zipf exponent s must be >= 0, got {s}")
    ranks = np.arange(1, vocab - FIRST_ID + 1, dtype=np.float64)
    cdf = np.cumsum(ranks**-s)
    cdf /= cdf[-1]
    ids = (FIRST_ID + rng.permutation(len(ranks))).astype(np.uint16 if vocab <= 65536 else np.int32)
    return cdf, ids


def draw_tokens(cdf: np.ndarray, ids: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` i.i.d. token ids from the law ``(cdf, ids)`` (one uniform double per token, so drawing
    ``n`` then ``m`` tokens gives the same ids as drawing ``n + m``)."""
    out = np.empty(n, dtype=ids.dtype)
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        ranks = np.searchsorted(cdf, rng.random(m), side="right")
        out[start : start + m] = ids[np.minimum(ranks, len(ids) - 1)]
    return out


def zipf_token_stream(
    n_tokens: int, vocab: int = 32000, s: float = 1.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(tokens [n_tokens], doc_offsets int64)``: documents of 64-192 tokens (uniform), the last one
    cut so that the corpus has exactly ``n_tokens`` tokens."""
    rng = np.random.default_rng(seed)
    cdf, ids = zipf_table(vocab, s, rng)
    tokens = draw_tokens(cdf, ids, n_tokens, rng)
    lengths = rng.integers(64, 193, size=n_tokens // 64 + 2)
    ends = np.cumsum(lengths)
    n_docs = int(np.searchsorted(ends, n_tokens)) + 1
    offsets = np.concatenate([[0], np.minimum(ends[:n_docs], n_tokens)]).astype(np.int64)
    return tokens, offsets


def document_lengths(n_docs: int, min_length: int, max_length: int, seed: int) -> np.ndarray:
    """The lengths ``zipf_documents`` gives its documents (int64), without drawing any token."""
    if n_docs < 0:
        raise ValueError(f"n_docs must be >= 0, got {n_docs}")
    if not 1 <= min_length <= max_length:
        raise ValueError(f"document lengths need 1 <= min_length <= max_length, got {min_length}..{max_length}")
    _, length_seed, _ = np.random.SeedSequence(seed).spawn(3)
    # one 64-bit draw per document (int64, bounded by Lemire's method): prefixes do not depend on n_docs
    return np.random.default_rng(length_seed).integers(min_length, max_length + 1, size=n_docs, dtype=np.int64)


def zipf_documents(
    n_docs: int, vocab: int = 32000, s: float = 1.0, min_length: int = 64, max_length: int = 64, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(tokens, doc_offsets int64 [n_docs + 1])``: ``n_docs`` documents of ``min_length..max_length``
    tokens (uniform), every token i.i.d. Zipf(``s``) over ``[2, vocab)``.

    Three independent streams (the rank permutation, the lengths, the tokens) come from
    ``np.random.SeedSequence(seed)``, so the corpus of ``m`` documents is the first ``m`` documents
    of any larger corpus with the same settings: sizes of a sweep are nested, as real subsets are.
    """
    lengths = document_lengths(n_docs, min_length, max_length, seed)
    perm_seed, _, token_seed = np.random.SeedSequence(seed).spawn(3)
    cdf, ids = zipf_table(vocab, s, np.random.default_rng(perm_seed))
    offsets = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    tokens = draw_tokens(cdf, ids, int(offsets[-1]), np.random.default_rng(token_seed))
    return tokens, offsets


def doc_ids(n_docs: int) -> list[str]:
    """The ``_id`` of each synthetic document: ``"d0"``, ``"d1"``, ..."""
    return [f"d{i}" for i in range(n_docs)]


def as_dataset(tokens: np.ndarray, offsets: np.ndarray, title_tokens: int = 0) -> Any:
    """A ``datasets.Dataset`` with ``_id``, ``title`` (the first ``title_tokens`` words) and ``text``
    (the words of the rest), token ``t`` written as the word ``w{t}``. Meant for small corpora:
    building the strings costs about a microsecond per token."""
    from datasets import Dataset

    n = len(offsets) - 1
    words = np.array([f"w{t}" for t in range(int(tokens.max(initial=0)) + 1)], dtype=object)
    titles, texts = [], []
    for i in range(n):
        doc = words[tokens[offsets[i] : offsets[i + 1]]].tolist()
        titles.append(" ".join(doc[:title_tokens]))
        texts.append(" ".join(doc[title_tokens:]))
    return Dataset.from_dict({"_id": doc_ids(n), "title": titles, "text": texts})
