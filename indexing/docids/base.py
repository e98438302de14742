"""Docids: the mapping between a corpus's documents and their identifiers as token-id sequences.

A ``DocidScheme`` assigns every document a readable identifier (``"4821"``, ``"3-7-2"``, a title)
and a sequence of token ids that a model decodes. Token ids come either from a text tokenizer
(the identifier's text is tokenized) or from new tokens added to the vocabulary after the
tokenizer's own ids (atomic ids, semantic cluster codes). Without a tokenizer, a minimal
vocabulary of ``pad=0, eos=1`` plus the new tokens is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from indexing.artifacts import load_json, load_npy, save_json, save_npy
from indexing.tokenizer import TextTokenizer

# Vocabulary used when identifiers are made only of new tokens and no tokenizer is given.
PAD_ID, EOS_ID, N_RESERVED = 0, 1, 2


class DocidError(ValueError):
    """Identifiers could not be assigned (not unique, a field missing, a bad parameter)."""


@dataclass
class Docids:
    """Identifiers of a corpus's documents, in corpus row order.

    ``tokens(i)`` is the token-id sequence of document ``i`` without the end-of-id token.
    ``new_tokens[j]`` is the string of token id ``base_vocab_size + j``.
    """

    doc_ids: list[str]
    identifiers: list[str]
    offsets: np.ndarray  # int64, len(doc_ids) + 1
    values: np.ndarray  # int32, all token ids concatenated
    eos_token_id: int
    base_vocab_size: int
    new_tokens: list[str] = field(default_factory=list)
    scheme: dict[str, Any] = field(default_factory=dict)
    tokenizer: str | None = None

    def __len__(self) -> int:
        return len(self.doc_ids)

    @property
    def vocab_size(self) -> int:
        return self.base_vocab_size + len(self.new_tokens)

    def tokens(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def max_length(self) -> int:
        return int(np.diff(self.offsets).max(initial=0))

    def check(self) -> None:
        """Raise ``DocidError`` unless identifiers and token sequences are unique and well formed."""
        if not (len(self.doc_ids) == len(self.identifiers) == len(self.offsets) - 1):
            raise DocidError("doc_ids, identifiers and offsets disagree in length")
        dup = _first_duplicate(self.identifiers)
        if dup is not None:
            raise DocidError(
                f"identifier {self.identifiers[dup[1]]!r} is shared by documents "
                f"{self.doc_ids[dup[0]]!r} and {self.doc_ids[dup[1]]!r}"
            )
        lengths = np.diff(self.offsets)
        if len(lengths) and lengths.min() == 0:
            i = int(np.argmin(lengths))
            raise DocidError(f"document {self.doc_ids[i]!r} has an empty identifier")
        if np.any(self.values == self.eos_token_id):
            first = np.flatnonzero(self.values == self.eos_token_id)[0]
            i = int(np.searchsorted(self.offsets, first, "right")) - 1
            raise DocidError(f"identifier of {self.doc_ids[i]!r} contains the end-of-id token {self.eos_token_id}")
        if len(self.values) and (self.values.min() < 0 or self.values.max() >= self.vocab_size):
            raise DocidError(f"token ids outside the vocabulary [0, {self.vocab_size})")
        seqs = [self.tokens(i).tobytes() for i in range(len(self))]
        dup = _first_duplicate(seqs)
        if dup is not None:
            a, b = dup
            raise DocidError(
                f"documents {self.doc_ids[a]!r} and {self.doc_ids[b]!r} have the same token "
                f"sequence {self.tokens(a).tolist()} (identifiers {self.identifiers[a]!r}, "
                f"{self.identifiers[b]!r})"
            )

    def save(self, folder: Path) -> None:
        """Write plain files into ``folder`` (part of an artifact; see ``indexing.docid_index``)."""
        save_json(folder, "doc_ids.json", self.doc_ids)
        save_json(folder, "identifiers.json", self.identifiers)
        save_json(folder, "new_tokens.json", self.new_tokens)
        save_npy(folder, "docid_offsets.npy", self.offsets.astype(np.int64))
        save_npy(folder, "docid_tokens.npy", self.values.astype(np.int32))

    @classmethod
    def load(cls, folder: Path, info: dict[str, Any]) -> Docids:
        """Read what ``save`` wrote; ``info`` is ``info()`` as recorded in the manifest config."""
        return cls(
            doc_ids=load_json(folder, "doc_ids.json"),
            identifiers=load_json(folder, "identifiers.json"),
            offsets=load_npy(folder, "docid_offsets.npy"),
            values=load_npy(folder, "docid_tokens.npy"),
            eos_token_id=int(info["eos_token_id"]),
            base_vocab_size=int(info["base_vocab_size"]),
            new_tokens=load_json(folder, "new_tokens.json"),
            scheme=dict(info["scheme"]),
            tokenizer=info.get("tokenizer"),
        )

    def info(self) -> dict[str, Any]:
        """The scalar description that goes into a manifest."""
        return {
            "scheme": self.scheme,
            "tokenizer": self.tokenizer,
            "eos_token_id": self.eos_token_id,
            "base_vocab_size": self.base_vocab_size,
            "new_tokens": len(self.new_tokens),
            "vocab_size": self.vocab_size,
            "max_length": self.max_length(),
        }


class DocidScheme(Protocol):
    """Assigns identifiers to a corpus. Deterministic for its seed; identifiers checked unique."""

    name: str

    def params(self) -> dict[str, Any]:
        """The parameters that, with the corpus, determine the identifiers (recorded in manifests)."""
        ...

    def assign(self, corpus: Any, tokenizer: TextTokenizer | None = None) -> Docids:
        """Identifiers for every document of ``corpus`` (a Dataset with ``_id``, ``title``, ``text``)."""
        ...


def column_names(corpus: Any) -> list[str]:
    """Column names of a corpus (a ``datasets.Dataset`` or a dict of lists)."""
    names = getattr(corpus, "column_names", None)
    return list(names) if names is not None else list(corpus.keys())


def corpus_column(corpus: Any, name: str) -> list[Any]:
    """One column of a corpus as a list; ``DocidError`` naming the columns if it is missing."""
    names = column_names(corpus)
    if name not in names:
        raise DocidError(f"the corpus has no {name!r} column (columns: {', '.join(names)})")
    return list(corpus[name])


def doc_ids_of(corpus: Any) -> list[str]:
    """The corpus's ``_id`` column as strings."""
    return [str(d) for d in corpus_column(corpus, "_id")]


def _first_duplicate(items: Sequence[Any]) -> tuple[int, int] | None:
    seen: dict[Any, int] = {}
    for i, item in enumerate(items):
        if item in seen:
            return seen[item], i
        seen[item] = i
    return None


def _ragged(seqs: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(s) for s in seqs])
    values = np.fromiter((t for s in seqs for t in s), dtype=np.int32, count=int(offsets[-1]))
    return offsets, values


def docids_from_symbols(
    scheme: DocidScheme,
    doc_ids: list[str],
    identifiers: list[str],
    symbols: Sequence[Sequence[str]],
    tokenizer: TextTokenizer | None,
    vocabulary: Sequence[str] | None = None,
) -> Docids:
    """Docids whose tokens are new vocabulary entries, one per distinct symbol.

    ``vocabulary`` fixes the order of the new tokens (default: sorted distinct symbols), so token
    ids are deterministic. New ids start after the tokenizer's vocabulary, or after pad/eos.
    """
    vocab = list(vocabulary) if vocabulary is not None else sorted({s for seq in symbols for s in seq})
    base = tokenizer.vocab_size if tokenizer is not None else N_RESERVED
    index = {sym: base + j for j, sym in enumerate(vocab)}
    offsets, values = _ragged([[index[s] for s in seq] for seq in symbols])
    docids = Docids(
        doc_ids=list(doc_ids),
        identifiers=list(identifiers),
        offsets=offsets,
        values=values,
        eos_token_id=tokenizer.eos_token_id if tokenizer is not None else EOS_ID,
        base_vocab_size=base,
        new_tokens=vocab,
        scheme={"name": scheme.name, **scheme.params()},
        tokenizer=tokenizer.name if tokenizer is not None else None,
    )
    docids.check()
    return docids


def docids_from_token_ids(
    scheme: DocidScheme,
    doc_ids: list[str],
    identifiers: list[str],
    token_ids: Sequence[Sequence[int]],
    tokenizer: TextTokenizer,
) -> Docids:
    """Docids whose tokens are the tokenizer's own ids (identifiers tokenized as text)."""
    offsets, values = _ragged(token_ids)
    docids = Docids(
        doc_ids=list(doc_ids),
        identifiers=list(identifiers),
        offsets=offsets,
        values=values,
        eos_token_id=tokenizer.eos_token_id,
        base_vocab_size=tokenizer.vocab_size,
        scheme={"name": scheme.name, **scheme.params()},
        tokenizer=tokenizer.name,
    )
    docids.check()
    return docids
