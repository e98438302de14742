"""The ``Retriever`` protocol: queries in, a run out; saved and loaded as an artifact folder.

Every retriever genret offers has this shape: the baselines (BM25, dense) and the generative
ones (DSI with trie-constrained decoding over docids, SEAL with n-gram constrained decoding
over the corpus). Evaluation (:class:`genret.evaluation.RetrievalEvaluator`), the CLI and the
experiment recipes only ever call these three methods, so any retriever drops in.
"""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

from genret.evaluation import Run


@runtime_checkable
class Retriever(Protocol):
    """Anything that ranks documents for queries and lives in a folder.

    ``search`` takes ``{qid: query text}`` and returns ``{qid: {doc _id: score}}`` with at most
    ``k`` documents per query, higher scores first when sorted; every qid of the input is a key of
    the output (with an empty dict where nothing matched). ``save_pretrained(path)`` writes an
    artifact folder (``indexing.artifacts``: manifest plus plain files, no pickle) and
    ``from_pretrained(path)`` loads it back, refusing a damaged or foreign folder.
    """

    def search(self, queries: dict[str, str], k: int = 100) -> Run: ...

    def save_pretrained(self, path: str | os.PathLike) -> None: ...

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> Retriever: ...
