"""Reading a corpus's columns, whether it is a ``datasets.Dataset``, a dict of lists or a list of records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def column_names(corpus: Any) -> list[str]:
    """Column names of a corpus (a ``datasets.Dataset``, a dict of lists, or a list of mappings)."""
    names = getattr(corpus, "column_names", None)
    if names is not None:
        return list(names)
    if isinstance(corpus, dict):
        return list(corpus.keys())
    records = list(corpus)
    return list(dict.fromkeys(key for record in records for key in record))


def n_rows(corpus: Any) -> int:
    """Documents in a corpus (for a dict of lists, the length of its columns, not its number of keys)."""
    if isinstance(corpus, dict):
        return len(next(iter(corpus.values()), []))
    return len(corpus)


def column(corpus: Any, name: str) -> list[Any]:
    """One column as a list; ``KeyError`` naming the columns that exist if it is missing."""
    names = column_names(corpus)
    if name not in names:
        raise KeyError(f"the corpus has no {name!r} column (columns: {', '.join(names)})")
    if hasattr(corpus, "column_names") or isinstance(corpus, dict):
        return list(corpus[name])
    return [record.get(name) for record in corpus]


def document_texts(corpus: Any, fields: Sequence[str] = ("title", "text")) -> list[str]:
    """The ``fields`` of every document joined by a space (blank or missing parts skipped), stripped.

    This is the one definition of "a document's text" used for training pairs, embeddings and BM25.
    """
    names = set(column_names(corpus))
    present = [f for f in fields if f in names]
    if not present:
        raise KeyError(f"the corpus has no column among {list(fields)} (columns: {', '.join(sorted(names))})")
    columns = [column(corpus, f) for f in present]
    return [
        " ".join(s for s in (str(p).strip() for p in parts if p is not None) if s)
        for parts in zip(*columns, strict=True)
    ]
