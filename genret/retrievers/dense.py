"""Dense baseline: exact cosine search over sentence embeddings (all-MiniLM-L6-v2 offline by default).

The reference point generative retrieval is compared with at equal footing: the same corpus
text (title + text), the same queries, brute-force inner product over L2-normalised vectors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from genret.retrievers.base import check_k
from indexing.artifacts import load_json, load_npy, read_manifest, save_json, save_npy, write_artifact
from indexing.columns import column
from indexing.embeddings import encode_corpus, encode_texts
from indexing.trec import Run

KIND = "dense"


class DenseRetriever:
    """Exact inner-product search over normalised document embeddings."""

    def __init__(self, doc_ids: list[str], embeddings: np.ndarray, encoder: str = "minilm") -> None:
        if encoder == "tfidf":
            raise ValueError("the dense baseline needs a query encoder; tfidf/SVD is fitted per corpus (use minilm)")
        self.doc_ids = list(doc_ids)
        self.embeddings = np.asarray(embeddings, dtype=np.float32)
        self.encoder = encoder

    @classmethod
    def index(cls, corpus: Any, encoder: str = "minilm", batch_size: int = 64, progress: bool = True) -> DenseRetriever:
        """Embed every document (``title + text``) with ``encoder``."""
        embeddings = encode_corpus(corpus, encoder, batch_size=batch_size, progress=progress)
        return cls([str(d) for d in column(corpus, "_id")], _normalise(embeddings), encoder)

    def search(self, queries: dict[str, str], k: int = 100, progress: bool = False) -> Run:
        """Top-``k`` documents per query by cosine similarity."""
        check_k(k)
        qids = list(queries)
        if not qids:
            return {}
        q = _normalise(encode_texts([queries[i] for i in qids], self.encoder, progress=progress))
        scores = q @ self.embeddings.T
        k = min(k, len(self.doc_ids))
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        run: Run = {}
        for row, qid in enumerate(qids):
            order = top[row][np.argsort(-scores[row, top[row]], kind="stable")]
            run[qid] = {self.doc_ids[j]: float(scores[row, j]) for j in order}
        return run

    def save_pretrained(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        def write(tmp: Path) -> None:
            save_npy(tmp, "embeddings.npy", self.embeddings)
            save_json(tmp, "doc_ids.json", self.doc_ids)

        return write_artifact(
            path,
            KIND,
            write,
            config={"encoder": self.encoder},
            counts={"documents": len(self.doc_ids)},
            overwrite=overwrite,
        )

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> DenseRetriever:
        folder = Path(path)
        manifest = read_manifest(folder, kind=KIND)
        return cls(load_json(folder, "doc_ids.json"), load_npy(folder, "embeddings.npy"), manifest["config"]["encoder"])


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
