"""Docid token rows that start from what the documents mean, not from noise.

A new docid token (an atomic ``<doc_i>``, a semantic ``<L0_3>``) starts as the mean embedding of the
documents whose identifier holds it: an atomic token is its document's embedding, a first-level semantic
token its cluster's centroid (a deeper level-tagged token is shared across parents, so its row is the mean of
all documents holding it). The decoder then only has to learn to map a query into the space the rows already
live in, instead of learning a random code book and the mapping at once (DSI's atomic ids memorized nothing
from noise rows on 2 CPU cores; from MiniLM's embeddings they start where dense retrieval is).

Rows are unit vectors: with BERT's output transform (LayerNorm) the logits then span about +-sqrt(width), the
scale of a contrastive dense retriever's similarities. When the decoder's width differs from the embeddings',
they are projected by a seeded Gaussian matrix (distances kept approximately, Johnson-Lindenstrauss).
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import PreTrainedModel

from indexing.docids import Docids


def token_centroids(docids: Docids, embeddings: np.ndarray) -> np.ndarray:
    """``float32 (len(docids.new_tokens), d)``: per new token, the mean embedding of the documents holding it
    (a document counted once per token however often it holds it; a token no document holds: zeros)."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or len(embeddings) != len(docids):
        raise ValueError(
            f"embeddings must have shape ({len(docids)}, d) for {len(docids)} documents, got {embeddings.shape}"
        )
    base, n_new = docids.base_vocab_size, len(docids.new_tokens)
    rows = np.repeat(np.arange(len(docids)), np.diff(docids.offsets))
    tokens = docids.values.astype(np.int64) - base
    keep = tokens >= 0
    pairs = np.unique(np.stack([tokens[keep], rows[keep]]), axis=1)  # (token, document), once each
    sums = np.zeros((n_new, embeddings.shape[1]), dtype=np.float64)
    np.add.at(sums, pairs[0], embeddings[pairs[1]])
    counts = np.bincount(pairs[0], minlength=n_new)
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)


def project(vectors: np.ndarray, width: int, seed: int) -> np.ndarray:
    """``vectors`` in ``width`` dimensions: unchanged when they already have it, else through a seeded Gaussian
    projection (scaled by 1/sqrt(width))."""
    if vectors.shape[1] == width:
        return vectors
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((vectors.shape[1], width)).astype(np.float32) / np.sqrt(width)
    return vectors @ matrix


@torch.no_grad()
def init_docid_rows(model: PreTrainedModel, docids: Docids, embeddings: np.ndarray, seed: int = 0) -> None:
    """Set the decoder's new-token rows (input embeddings and output layer, tied or not) to the unit-length
    centroids of :func:`token_centroids`, projected to the decoder's width; their output biases to 0."""
    if not docids.new_tokens:
        raise ValueError(
            f"docids of scheme {docids.scheme.get('name')!r} add no tokens: nothing to initialise "
            f"(their tokens are the tokenizer's own)"
        )
    inp = model.get_decoder().get_input_embeddings()
    out = model.get_output_embeddings()
    width = inp.weight.shape[1]
    rows = project(token_centroids(docids, embeddings), width, seed)
    rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    start = docids.base_vocab_size
    for weight in {id(w): w for w in (inp.weight, out.weight)}.values():
        weight[start:].copy_(torch.from_numpy(rows).to(weight.dtype))
    for bias in (getattr(out, "bias", None), getattr(model, "final_logits_bias", None)):
        if bias is not None:
            bias[..., start:] = 0.0


def freeze_docid_rows(model: PreTrainedModel) -> int:
    """Keep the decoder's token rows (input embeddings and output layer weight) as they are: with rows started
    from document embeddings, the decoder then learns to map queries into that fixed space (a query encoder
    against fixed document vectors) instead of moving the rows; Adam moves every row of a softmax output layer
    at every step, by about the learning rate, which erases a 384-dimensional unit vector (entries ~0.05) within
    a few hundred steps. The output biases stay trainable. Returns the number of parameters frozen."""
    weights = {
        id(w): w for w in (model.get_decoder().get_input_embeddings().weight, model.get_output_embeddings().weight)
    }
    for weight in weights.values():
        weight.requires_grad_(False)
    return sum(w.numel() for w in weights.values())
