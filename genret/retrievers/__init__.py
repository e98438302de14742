"""Retrievers: anything with ``search(queries, k) -> Run``, ``save_pretrained`` and ``from_pretrained``.

Baselines (BM25 here; dense later) and generative retrievers (DSI, SEAL) share the one protocol
(:class:`Retriever`). ``BM25Retriever`` is imported on first use, so importing the protocol does
not pull in bm25s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from genret.retrievers.base import Retriever

if TYPE_CHECKING:
    from genret.retrievers.bm25 import BM25Config, BM25Retriever

__all__ = ["BM25Config", "BM25Retriever", "Retriever"]


def __getattr__(name: str) -> Any:
    if name in ("BM25Config", "BM25Retriever"):
        from genret.retrievers import bm25

        return getattr(bm25, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
