"""genret's corpus side: corpus I/O, docid schemes, docid tries, n-gram stores and artifacts.

Imports no torch: everything here is numpy (and numba) so that indexes build on any machine.
The names below load on first use, so ``import indexing`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_corpus": "indexing.corpus",
    "load_queries": "indexing.corpus",
    "load_qrels": "indexing.corpus",
    "load_beir": "indexing.corpus",
    "CorpusError": "indexing.corpus",
    "make_scheme": "indexing.docids",
    "Docids": "indexing.docids",
    "DocidTrie": "indexing.trie",
    "DocidIndex": "indexing.docid_index",
    "build_index": "indexing.docid_index",
    "load_tokenizer": "indexing.tokenizer",
    "ArtifactError": "indexing.artifacts",
    "NgramIndex": "indexing.ngrams",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'indexing' has no attribute {name!r}")
