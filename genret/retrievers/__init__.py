"""Retrievers: anything with ``search(queries, k) -> Run``, ``save_pretrained`` and ``from_pretrained``.

Baselines (BM25, dense) and generative retrievers (DSI, SEAL) share the one protocol
(:class:`Retriever`). ``BM25Retriever`` is imported on first use, so importing the protocol does
not pull in bm25s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from genret.retrievers.base import Retriever

if TYPE_CHECKING:
    from genret.retrievers.bm25 import BM25Config, BM25Retriever

__all__ = ["BM25Config", "BM25Retriever", "Retriever", "load_retriever"]


def load_retriever(path: str, device: str | None = None) -> Any:
    """A trained generative retriever folder of any registered system (read from its manifest), verified, loaded."""
    from genret.systems import SYSTEMS, system_for_kind
    from indexing.artifacts import ArtifactError, read_manifest

    kind = read_manifest(path, verify=False).get("kind")
    system = system_for_kind(kind)
    if system is None:
        kinds = ", ".join(s.kind for s in SYSTEMS.values())
        raise ArtifactError(f"{path}: a {kind!r} folder, not a trained retriever of a registered system ({kinds})")
    return system.retriever_class().from_pretrained(path, device=device)


def __getattr__(name: str) -> Any:
    if name in ("BM25Config", "BM25Retriever"):
        from genret.retrievers import bm25

        return getattr(bm25, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
