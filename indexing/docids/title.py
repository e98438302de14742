"""Title and URL identifiers (GENRE-style): the document's title or url, tokenized as text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from indexing.docids.base import (
    DocidError,
    Docids,
    column_names,
    corpus_column,
    doc_ids_of,
    docids_from_token_ids,
)
from indexing.tokenizer import TextTokenizer

EMPTY = ("error", "doc_id")


def _normalise(value: Any) -> str:
    return " ".join(str(value).split()) if value is not None else ""


@dataclass
class TitleScheme:
    """The identifier is the text of ``field`` (whitespace normalised), tokenized with the tokenizer.

    - A document whose field is empty falls back to the first ``max_tokens`` words of its
      ``text``. If both are empty: ``empty="doc_id"`` (default) uses the document's ``_id`` as the
      text (Cranfield has two such documents); ``empty="error"`` raises ``DocidError`` naming it.
    - Token sequences are truncated to ``max_tokens`` (the identifier string is then the part
      of the text the kept tokens cover).
    - Collisions are resolved in row order: the 2nd document with the same token sequence gets
      the suffix ``" (2)"``, the 3rd ``" (3)"``, ...; the suffix's tokens are appended and the
      title part truncated so the total stays ``<= max_tokens``; the number goes up until the
      sequence is unused. The identifier string is then the title plus the suffix.
    - End-of-id tokens that the text happens to contain are dropped from the sequence.

    A tokenizer is required (e.g. ``load_tokenizer("minilm")``).
    """

    field: str = "title"
    max_tokens: int = 32
    empty: str = "doc_id"
    name: ClassVar[str] = "title"

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise DocidError(f"{self.name} max_tokens must be >= 1, got {self.max_tokens}")
        if self.empty not in EMPTY:
            raise DocidError(f"{self.name} empty must be one of {', '.join(EMPTY)}; got {self.empty!r}")

    def params(self) -> dict[str, Any]:
        return {"field": self.field, "max_tokens": self.max_tokens, "empty": self.empty}

    def assign(self, corpus: Any, tokenizer: TextTokenizer | None = None) -> Docids:
        if tokenizer is None:
            raise DocidError(f"{self.name} ids are tokenized text: pass a tokenizer, e.g. load_tokenizer('minilm')")
        if self.field not in column_names(corpus):
            raise DocidError(
                f"{self.name} ids need a {self.field!r} column; the corpus has columns "
                f"{', '.join(column_names(corpus))}"
            )
        doc_ids = doc_ids_of(corpus)
        values = [_normalise(v) for v in corpus_column(corpus, self.field)]
        if any(not v for v in values):
            body = corpus_column(corpus, "text") if "text" in column_names(corpus) else [""] * len(values)
            for i, v in enumerate(values):
                if not v:
                    values[i] = " ".join(_normalise(body[i]).split(" ")[: self.max_tokens])
                    if not values[i] and self.empty == "doc_id":
                        values[i] = _normalise(doc_ids[i])
        encoded = [_encode(tokenizer, v) for v in values]
        used: set[tuple[int, ...]] = set()
        seen: dict[tuple[int, ...], int] = {}
        identifiers: list[str] = []
        token_ids: list[list[int]] = []
        for i, (value, (ids, ends)) in enumerate(zip(values, encoded, strict=True)):
            if not ids:
                raise DocidError(
                    f"document {doc_ids[i]!r} has an empty {self.field} and an empty text: "
                    f"no {self.name} identifier can be made (empty='doc_id' uses its _id)"
                )
            keep = min(len(ids), self.max_tokens)
            base = tuple(ids[:keep])
            text = _cut(value, ends, keep)
            seen[base] = count = seen.get(base, 0) + 1
            if count == 1 and base not in used:
                chosen, ident = base, text
            else:
                number = max(count, 2)
                while True:
                    suffix = f" ({number})"
                    suf_ids, _ = _encode(tokenizer, suffix)
                    room = self.max_tokens - len(suf_ids)
                    if room < 1:
                        raise DocidError(
                            f"max_tokens={self.max_tokens} leaves no room for the suffix "
                            f"{suffix!r} that document {doc_ids[i]!r} needs; raise max_tokens"
                        )
                    head = min(keep, room)
                    chosen = tuple(ids[:head]) + tuple(suf_ids)
                    if chosen not in used:
                        ident = _cut(value, ends, head) + suffix
                        break
                    number += 1
            used.add(chosen)
            identifiers.append(ident)
            token_ids.append(list(chosen))
        return docids_from_token_ids(self, doc_ids, identifiers, token_ids, tokenizer)


@dataclass
class UrlScheme(TitleScheme):
    """``TitleScheme`` on the ``url`` column (same fallback, truncation and collision rules)."""

    field: str = "url"
    name: ClassVar[str] = "url"


def _encode(tokenizer: TextTokenizer, text: str) -> tuple[list[int], list[int] | None]:
    """Token ids without end-of-id tokens, and the end offset of each in ``text`` when known."""
    backend = getattr(tokenizer, "backend", None)
    if backend is not None and hasattr(backend, "encode"):
        enc = backend.encode(text, add_special_tokens=False)
        eos = tokenizer.eos_token_id
        pairs = [(t, end) for t, (_, end) in zip(enc.ids, enc.offsets, strict=True) if t != eos]
        return [t for t, _ in pairs], [end for _, end in pairs]
    return [t for t in tokenizer.encode(text) if t != tokenizer.eos_token_id], None


def _cut(text: str, ends: list[int] | None, keep: int) -> str:
    """The part of ``text`` covered by its first ``keep`` tokens."""
    if ends is None or keep >= len(ends):
        return text
    return text[: ends[keep - 1]].rstrip()
