"""Docid schemes: atomic, naive, semantic, title and url identifiers; ``make_scheme`` by name."""

from __future__ import annotations

import dataclasses
from typing import Any

from indexing.docids.atomic import AtomicScheme
from indexing.docids.base import (
    DocidError,
    Docids,
    DocidScheme,
    docids_from_symbols,
    docids_from_token_ids,
)
from indexing.docids.naive import NaiveScheme
from indexing.docids.semantic import SemanticScheme
from indexing.docids.title import TitleScheme, UrlScheme

SCHEMES: dict[str, type] = {
    "atomic": AtomicScheme,
    "naive": NaiveScheme,
    "semantic": SemanticScheme,
    "title": TitleScheme,
    "url": UrlScheme,
}


def make_scheme(name: str, **params: Any) -> DocidScheme:
    """The scheme registered as ``name`` built with ``params``, e.g. ``make_scheme("semantic", k=30, c=30)``.

    ``DocidError`` lists the valid names for an unknown scheme and the valid parameters for an
    unknown parameter.
    """
    if name not in SCHEMES:
        raise DocidError(f"unknown docid scheme {name!r}; valid schemes: {', '.join(SCHEMES)}")
    cls = SCHEMES[name]
    valid = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise DocidError(
            f"unknown parameter(s) {', '.join(unknown)} for docid scheme {name!r}; "
            f"valid parameters: {', '.join(valid) or '(none)'}"
        )
    return cls(**params)


__all__ = [
    "SCHEMES",
    "AtomicScheme",
    "DocidError",
    "DocidScheme",
    "Docids",
    "NaiveScheme",
    "SemanticScheme",
    "TitleScheme",
    "UrlScheme",
    "docids_from_symbols",
    "docids_from_token_ids",
    "make_scheme",
]
