"""Atomic identifiers (DSI): one new vocabulary token per document."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from indexing.docids.base import Docids, doc_ids_of, docids_from_symbols
from indexing.tokenizer import TextTokenizer


@dataclass
class AtomicScheme:
    """Document in row ``i`` gets the single new token ``<doc_{i}>`` (also its identifier string).

    New tokens are numbered in row order after the tokenizer's vocabulary (or after pad/eos).
    """

    name: ClassVar[str] = "atomic"

    def params(self) -> dict[str, Any]:
        return {}

    def assign(self, corpus: Any, tokenizer: TextTokenizer | None = None) -> Docids:
        doc_ids = doc_ids_of(corpus)
        symbols = [f"<doc_{i}>" for i in range(len(doc_ids))]
        return docids_from_symbols(self, doc_ids, symbols, [[s] for s in symbols], tokenizer, vocabulary=symbols)
