"""genret: generative retrieval. Corpus in, docids and indexes out, a seq2seq model that memorizes
the corpus, constrained decoding back to documents, and evaluation against BM25 and dense baselines.

The corpus side lives in the sibling package ``indexing``; the names below load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from indexing.artifacts import genret_version

__version__ = genret_version()

_EXPORTS = {
    "evaluate": "genret.evaluation",
    "read_trec_run": "genret.evaluation",
    "write_trec_run": "genret.evaluation",
    "RetrievalEvaluator": "genret.evaluation",
    "BM25Retriever": "genret.retrievers",
    "Retriever": "genret.retrievers",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'genret' has no attribute {name!r}")
