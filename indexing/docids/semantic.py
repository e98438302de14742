"""Semantic identifiers (DSI, NCI): hierarchical k-means codes over document embeddings."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from indexing.docids.base import (
    DocidError,
    Docids,
    doc_ids_of,
    docids_from_symbols,
    docids_from_token_ids,
)
from indexing.kmeans import hierarchical_codes
from indexing.tokenizer import TextTokenizer


@dataclass
class SemanticScheme:
    """DSI's semantically structured identifiers.

    Documents are embedded (``encoder``, see ``indexing.embeddings``), clustered into ``k``
    clusters, and every cluster with more than ``c`` documents is clustered again; in a leaf of
    ``<= c`` documents each gets its position in the leaf (row order) as the last code. The
    identifier string is the codes joined by ``-`` (``"3-7-12"``). DSI used k = 10, c = 100;
    NCI k = c = 30. ``max_depth`` caps the clustering levels (leaves may then exceed ``c``).

    Tokens: with ``new_tokens=True``, level-specific new tokens ``<L{level}_{code}>`` (vocabulary
    of the (level, code) pairs used, ordered by level then code), so each position has its own
    small output vocabulary; with ``new_tokens=False`` the string ``"3 7 12"`` is tokenized with
    the tokenizer (required then).

    Embeddings may be precomputed: ``assign(corpus, tokenizer, embeddings=x)`` or the field
    ``embeddings``; the recorded ``encoder`` parameter is then ``"precomputed"``.
    Deterministic for ``seed``.
    """

    k: int = 10
    c: int = 100
    seed: int = 0
    encoder: str | Callable[[list[str]], Any] = "auto"
    max_depth: int | None = None
    new_tokens: bool = True
    embeddings: np.ndarray | None = field(default=None, repr=False, compare=False)
    batch_size: int = field(default=64, compare=False)
    progress: bool = field(default=False, compare=False)
    name: ClassVar[str] = "semantic"

    def __post_init__(self) -> None:
        if self.k < 2:
            raise DocidError(f"semantic k (clusters per level) must be >= 2, got {self.k}")
        if self.c < 1:
            raise DocidError(f"semantic c (documents per leaf) must be >= 1, got {self.c}")
        if self.max_depth is not None and self.max_depth < 0:
            raise DocidError(f"semantic max_depth must be >= 0 or None, got {self.max_depth}")

    def params(self) -> dict[str, Any]:
        if self.embeddings is not None:
            encoder = "precomputed"
        elif callable(self.encoder):
            encoder = f"callable:{getattr(self.encoder, '__qualname__', type(self.encoder).__name__)}"
        else:
            from indexing.embeddings import resolve_encoder

            encoder = resolve_encoder(self.encoder)
        return {
            "k": self.k,
            "c": self.c,
            "seed": self.seed,
            "encoder": encoder,
            "max_depth": self.max_depth,
            "new_tokens": self.new_tokens,
        }

    def assign(
        self, corpus: Any, tokenizer: TextTokenizer | None = None, embeddings: np.ndarray | None = None
    ) -> Docids:
        doc_ids = doc_ids_of(corpus)
        if not self.new_tokens and tokenizer is None:
            raise DocidError(
                "semantic ids with new_tokens=False are tokenized text: pass a tokenizer "
                "(e.g. load_tokenizer('minilm')) or use new_tokens=True"
            )
        scheme = self
        if embeddings is None:
            embeddings = self.embeddings
        else:
            scheme = dataclasses.replace(self, embeddings=embeddings)
        if embeddings is None:
            from indexing.embeddings import encode_corpus

            embeddings = encode_corpus(corpus, self.encoder, batch_size=self.batch_size, progress=self.progress)
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or len(embeddings) != len(doc_ids):
            raise DocidError(
                f"embeddings must have shape ({len(doc_ids)}, d) for {len(doc_ids)} documents, got {embeddings.shape}"
            )
        if not np.all(np.isfinite(embeddings)):
            raise DocidError("embeddings contain NaN or infinite values")
        codes = hierarchical_codes(embeddings, self.k, self.c, self.seed, self.max_depth, self.progress)
        identifiers = ["-".join(map(str, code)) for code in codes]
        if self.new_tokens:
            symbols = [[f"<L{level}_{v}>" for level, v in enumerate(code)] for code in codes]
            pairs = sorted({(level, v) for code in codes for level, v in enumerate(code)})
            vocabulary = [f"<L{level}_{v}>" for level, v in pairs]
            return docids_from_symbols(scheme, doc_ids, identifiers, symbols, tokenizer, vocabulary=vocabulary)
        texts = [" ".join(map(str, code)) for code in codes]
        return docids_from_token_ids(scheme, doc_ids, identifiers, tokenizer.encode_batch(texts), tokenizer)
