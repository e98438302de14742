"""Model helpers for tests only: tiny configs and the docid-vocabulary check."""

from __future__ import annotations

from genret.models import ModelConfig, ModelError, _resolve, decoder_vocab_size
from indexing.docids import Docids


def tiny_model_config(kind: str = "t5") -> ModelConfig:
    """Small models for tests (a few hundred thousand parameters besides the vocabulary matrices).

    ``"t5"``: a 2+2-layer T5 of width 64. ``"minilm-decoder"``: the warm start's architecture
    (BERT encoder + BERT decoder, ``"bert"``) at width 64, random init, no weights read.
    ``"minilm"``: the real pretrained MiniLM encoder with a 1-layer, 4-head decoder.
    """
    if kind == "t5":
        return ModelConfig(
            name_or_path="t5",
            dropout=0.0,
            config={"d_model": 64, "d_kv": 16, "d_ff": 128, "num_layers": 2, "num_decoder_layers": 2, "num_heads": 4},
        )
    if kind == "minilm-decoder":
        return ModelConfig(
            name_or_path="bert",
            dropout=0.0,
            decoder_layers=2,
            config={
                "hidden_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "intermediate_size": 128,
                "max_position_embeddings": 128,
            },
        )
    if kind == "minilm":
        return ModelConfig(
            name_or_path="minilm", dropout=0.0, decoder_layers=1, decoder_heads=4, decoder_intermediate=512
        )
    raise ModelError(f"unknown tiny model kind {kind!r}; valid: t5, minilm-decoder, minilm")


def check_docids(model, docids: Docids) -> None:
    """``ModelError`` unless ``model`` decodes ``docids``' vocabulary (size and end-of-id token)."""
    if decoder_vocab_size(model) != docids.vocab_size:
        raise ModelError(
            f"the model decodes {decoder_vocab_size(model)} token ids, the docids use "
            f"{docids.vocab_size}: built for other docids"
        )
    info = getattr(model.config, "genret", None) or {}
    if model.generation_config.eos_token_id != docids.eos_token_id or (
        info and _resolve(info.get("tokenizer")) != _resolve(docids.tokenizer)
    ):
        raise ModelError(
            f"the model was built for docids with tokenizer {info.get('tokenizer')!r} and end-of-id "
            f"{model.generation_config.eos_token_id}; these docids use {docids.tokenizer!r} and "
            f"{docids.eos_token_id}"
        )
