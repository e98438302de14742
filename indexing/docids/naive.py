"""Naive string identifiers (DSI): the integers ``0..N-1`` as text, in row order or shuffled."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from indexing.docids.base import (
    DocidError,
    Docids,
    doc_ids_of,
    docids_from_symbols,
    docids_from_token_ids,
)
from indexing.tokenizer import TextTokenizer

ORDERS = ("sequential", "shuffled")
DIGITS = [str(d) for d in range(10)]


@dataclass
class NaiveScheme:
    """Document ``i`` gets ``str(i)`` (``order="sequential"``) or ``str(perm[i])`` for a permutation
    drawn with ``np.random.default_rng(seed)`` (``order="shuffled"``).

    With a tokenizer, the string is tokenized with it; without, every digit is a new token
    (vocabulary ``"0".."9"`` in that order).
    """

    order: str = "sequential"
    seed: int = 0
    name: ClassVar[str] = "naive"

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise DocidError(f"naive order must be one of {', '.join(ORDERS)}; got {self.order!r}")

    def params(self) -> dict[str, Any]:
        return {"order": self.order, "seed": self.seed}

    def assign(self, corpus: Any, tokenizer: TextTokenizer | None = None) -> Docids:
        doc_ids = doc_ids_of(corpus)
        n = len(doc_ids)
        if self.order == "sequential":
            numbers = np.arange(n)
        else:
            numbers = np.random.default_rng(self.seed).permutation(n)
        identifiers = [str(int(v)) for v in numbers]
        if tokenizer is not None:
            token_ids = tokenizer.encode_batch(identifiers)
            return docids_from_token_ids(self, doc_ids, identifiers, token_ids, tokenizer)
        return docids_from_symbols(self, doc_ids, identifiers, [list(s) for s in identifiers], None, vocabulary=DIGITS)
