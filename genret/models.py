"""DSI models: any Hugging Face seq2seq model whose decoder emits docid token ids.

The encoder reads query/document text with a tokenizer; the decoder's vocabulary (input
embeddings and output layer) is exactly the docid vocabulary ``Docids.vocab_size``: the
tokenizer's ids plus one new row per atomic/semantic docid token. The source side never sees
the new tokens, so the tokenizer is left as it is (decode docid ids through ``Docids``, not the
tokenizer).

``ModelConfig.name_or_path`` picks the model:

- ``"minilm"``: the offline warm start (``genret.warm_start``): pretrained all-MiniLM-L6-v2 encoder
  + a small random BERT decoder in ``EncoderDecoderModel``;
- ``"t5"``, ``"bart"``, ``"bert"``: built from config with random weights (``config`` overrides;
  ``"bert"`` is the warm start's architecture, MiniLM-shaped unless overridden);
- anything else: a hub name or local folder loaded with ``AutoModelForSeq2SeqLM.from_pretrained``.

Tokenizers. The docids must have been encoded with the model's tokenizer (ids must match);
``build_model`` raises ``ModelError`` otherwise. The model's tokenizer is ``ModelConfig.tokenizer``,
else the model's own (MiniLM's for ``"minilm"``, the checkpoint's for hub/local models); a model
built from config has none of its own and adopts the docids' (MiniLM's when they have none).
Docids built *without* a tokenizer have their own vocabulary (``pad=0, eos=1``, new tokens from
2): they are accepted by the encoder-decoder kinds (``"minilm"``, ``"bert"``, or a saved
``EncoderDecoderModel``), whose encoder and decoder vocabularies are separate: the source is
read with the model's tokenizer and the decoder vocabulary is the docid vocabulary (decoder start
= eos, since BERT's decoder masks pad positions). T5/BART share one embedding matrix between
source and target, so they refuse such docids.

Token ids: ``pad`` = the tokenizer's pad (0 for standalone docids), ``eos`` = ``docids.eos_token_id``,
``decoder_start`` = the checkpoint's own for hub models, else the tokenizer's ``[CLS]``/bos (eos
if none). The generation config is replaced by a minimal one with these ids and
``max_new_tokens = docids.max_length() + 1``, so ``model.generate`` starts and stops correctly.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    BartConfig,
    BartForConditionalGeneration,
    EncoderDecoderModel,
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    T5Config,
    T5ForConditionalGeneration,
)

from genret.warm_start import build_bert2bert, drop_pooler, init_new_rows, quiet_transformers, set_dropout
from indexing.artifacts import genret_version
from indexing.docids import Docids
from indexing.tokenizer import MINILM, TextTokenizer, minilm_path

# EncoderDecoderModel warns on every forward with labels about a v4.12 change; irrelevant here.
warnings.filterwarnings("ignore", message="Version v4.12.0 introduces", category=FutureWarning)

FROM_CONFIG = ("t5", "bart", "bert")
ENCODER_DECODER = ("minilm", "bert")
SOURCE_INPUTS = ("input_ids", "attention_mask")
MODEL_JSON = "genret_model.json"
MODEL_FORMAT = 1
AUTO_CLASSES = {"AutoModelForSeq2SeqLM": AutoModelForSeq2SeqLM, "EncoderDecoderModel": EncoderDecoderModel}


DECODER_INITS = ("mean-pooling",)
"""Values of ``ModelConfig.init_decoder`` (``genret.decoder_init``)."""


class ModelError(ValueError):
    """A model cannot be built for these docids (tokenizer mismatch, bad config) or loaded."""


@dataclass
class ModelConfig:
    """The ``model`` section of a recipe: which seq2seq model, and how to shape it."""

    name_or_path: str = "minilm"
    """``"minilm"`` (offline MiniLM encoder + random BERT decoder), ``"t5"``/``"bart"``/``"bert"`` (random
    init from config), or a hub name / local folder for ``AutoModelForSeq2SeqLM.from_pretrained``."""
    config: dict[str, Any] = field(default_factory=dict)
    """Config overrides: the architecture of from-config builds (``{"d_model": 64, "num_layers": 2}``);
    the decoder's BertConfig for ``"minilm"``; encoder and decoder for ``"bert"``; the loaded config
    of hub/local models (non-shape fields only)."""
    decoder_layers: int = 2
    """Decoder layers of ``"minilm"``/``"bert"`` (others: set them in ``config``)."""
    decoder_heads: int | None = None
    """Decoder attention heads of ``"minilm"``/``"bert"`` (None: the encoder's, 12 for MiniLM)."""
    decoder_intermediate: int | None = None
    """Decoder feed-forward size of ``"minilm"``/``"bert"`` (None: the encoder's, 1536 for MiniLM)."""
    dropout: float | None = None
    """Every dropout probability of encoder and decoder (None: the model's defaults, 0.1 mostly)."""
    tokenizer: str | None = None
    """Tokenizer of the source text: ``"minilm"``, a folder or hub name (None: the model's own, or the
    docids' for from-config builds). Must be the one the docids were encoded with."""
    tie_output: bool = True
    """``"minilm"``/``"bert"``: tie the decoder's output layer to its input embeddings."""
    new_token_noise: float = 0.1
    """New (atomic/semantic) token rows = mean of the base rows + this x their std x N(0, 1)."""
    init_docids_from: str | None = None
    """An encoder (``indexing.embeddings``: ``minilm``, ``tfidf``, a sentence-transformers name) whose document
    embeddings start the new docid token rows (``genret.docid_init``: an atomic token is its document's
    embedding, a semantic one its documents' centroid) instead of noise; None: noise."""
    freeze_docid_rows: bool = False
    """Train the decoder but not its token rows (``genret.docid_init.freeze_docid_rows``): with
    ``init_docids_from``, the decoder learns to map queries onto the fixed document embeddings."""
    init_decoder: str | None = None
    """``mean-pooling``: a bert2bert decoder starts as its encoder's mean pooling (``genret.decoder_init``), so
    that with ``init_docids_from`` the same encoder, untrained DSI ranks as dense retrieval does; None: random."""
    seed: int = 0
    """Seed of every random initialisation (the global RNG is left untouched)."""
    freeze_encoder: bool = False
    """Train only the decoder: the encoder (and what it shares with the decoder) is frozen and each distinct
    source text is encoded once, in eval mode, into a memory-mapped cache (``genret.encoder_cache``)."""
    encoder_cache_gb: float = 16.0
    """Bound on the encoder cache's size (float16 states); a larger one is refused before encoding."""

    def __post_init__(self) -> None:
        if self.init_decoder not in (None, *DECODER_INITS):
            raise ValueError(
                f"init_decoder must be one of {', '.join(DECODER_INITS)} or null, got {self.init_decoder!r}"
            )


def _resolve(name: str | None) -> str | None:
    """A comparable key for a tokenizer name: ``"minilm"`` and folders become resolved paths."""
    if name is None:
        return None
    path = minilm_path() if name == MINILM else Path(name)
    return str(path.resolve()) if path.is_dir() else name


def load_hf_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """The transformers tokenizer of ``"minilm"`` (offline), a folder or a hub name.

    It returns only ``input_ids`` and ``attention_mask`` (no BERT ``token_type_ids``, which
    ``generate`` of T5/BART/encoder-decoder models rejects); saved with it.
    """
    path = minilm_path() if name == MINILM else name
    return AutoTokenizer.from_pretrained(
        path, local_files_only=name == MINILM or Path(name).is_dir(), model_input_names=list(SOURCE_INPUTS)
    )


def _hub_config(name: str) -> Any:
    """The config of a hub name or local folder (``ModelError`` when it cannot be read)."""
    local = Path(name).is_dir()
    if not local and name.startswith(("/", "./", "../", "~")):
        raise ModelError(f"model folder {name!r} does not exist")
    try:
        return AutoConfig.from_pretrained(name, local_files_only=local)
    except (OSError, ValueError) as err:
        raise ModelError(
            f"cannot load model {name!r}: not 'minilm', 't5', 'bart', 'bert', a local folder, "
            f"or a hub name reachable from here ({err})"
        ) from err


def _source_tokenizer_name(cfg: ModelConfig, docids: Docids, hub_config: Any) -> str:
    name = cfg.name_or_path
    if name == "minilm":
        if cfg.tokenizer is not None and _resolve(cfg.tokenizer) != _resolve(MINILM):
            raise ModelError(
                f"the MiniLM warm start reads MiniLM's own vocabulary; model.tokenizer "
                f"{cfg.tokenizer!r} cannot be used with it (leave it unset or 'minilm')"
            )
        return MINILM
    if cfg.tokenizer is not None:
        return cfg.tokenizer
    if name in FROM_CONFIG:
        return docids.tokenizer or MINILM
    saved = getattr(hub_config, "genret", None) or {}  # a model saved by genret: the tokenizer it was built with
    return saved.get("source_tokenizer") or name


def _check_tokenizer_name(docids: Docids, name: str) -> None:
    if docids.tokenizer is not None and _resolve(docids.tokenizer) != _resolve(name):
        raise ModelError(
            f"the docids were encoded with tokenizer {docids.tokenizer!r} but the model reads "
            f"{name!r}: their token ids would not match. Rebuild the docids with "
            f"load_tokenizer({name!r}) or set model.tokenizer to {docids.tokenizer!r}"
        )


def _check_tokenizer(docids: Docids, name: str, tokenizer: PreTrainedTokenizerBase) -> None:
    if docids.tokenizer is None:
        return
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if len(tokenizer) != docids.base_vocab_size or eos != docids.eos_token_id:
        raise ModelError(
            f"tokenizer {name!r} has {len(tokenizer)} tokens and end-of-id {eos}, the docids "
            f"{docids.base_vocab_size} and {docids.eos_token_id}: not the same tokenizer"
        )


def _token_ids(docids: Docids, tokenizer: PreTrainedTokenizerBase) -> tuple[int, int]:
    """(pad, start) for the decoder of an encoder-decoder or from-config build."""
    if docids.tokenizer is None:
        return 0, docids.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else docids.eos_token_id
    start = next(
        (t for t in (tokenizer.cls_token_id, tokenizer.bos_token_id) if t is not None and t != pad), docids.eos_token_id
    )
    return pad, start


def _from_config(cfg: ModelConfig, docids: Docids, pad: int, start: int) -> PreTrainedModel:
    ids = {
        "vocab_size": docids.vocab_size,
        "pad_token_id": pad,
        "eos_token_id": docids.eos_token_id,
        "decoder_start_token_id": start,
    }
    if cfg.name_or_path == "t5":
        config = T5Config(**{**cfg.config, **ids})
        model_cls: type[PreTrainedModel] = T5ForConditionalGeneration
    else:
        config = BartConfig(
            **{**cfg.config, **ids, "bos_token_id": start, "forced_bos_token_id": None, "forced_eos_token_id": None}
        )
        model_cls = BartForConditionalGeneration
    set_dropout(config, cfg.dropout)
    return model_cls(config)


def _from_pretrained(cfg: ModelConfig, config: Any) -> PreTrainedModel:
    for key, value in cfg.config.items():
        setattr(config, key, value)
    set_dropout(config, cfg.dropout)
    with quiet_transformers():
        model = AutoModelForSeq2SeqLM.from_pretrained(
            cfg.name_or_path, config=config, local_files_only=Path(cfg.name_or_path).is_dir()
        )
    drop_pooler(model)
    return model


def build_model(cfg: ModelConfig, docids: Docids) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A seq2seq model whose decoder vocabulary is ``docids.vocab_size``, and its source tokenizer.

    ``model(input_ids, attention_mask, labels=docid tokens + eos, -100 padded)`` gives the loss;
    ``model.generate(input_ids, attention_mask)`` starts at the decoder start token and stops at
    eos. New decoder rows (ids ``base_vocab_size..``) of pretrained models are the mean of the base
    rows plus seeded noise (rows a genret-saved model already had are kept, so training can
    resume); random builds keep their random rows. Returned in eval mode, like
    ``from_pretrained`` (call ``model.train()`` to train).
    """
    name = cfg.name_or_path
    hub_config = None if name in ENCODER_DECODER or name in FROM_CONFIG else _hub_config(name)
    tok_name = _source_tokenizer_name(cfg, docids, hub_config)
    _check_tokenizer_name(docids, tok_name)
    tokenizer = load_hf_tokenizer(tok_name)
    _check_tokenizer(docids, tok_name, tokenizer)
    if (
        docids.tokenizer is None
        and name not in ENCODER_DECODER
        and (hub_config is None or hub_config.model_type != "encoder-decoder")
    ):
        raise ModelError(
            f"docids built without a tokenizer have their own vocabulary (pad=0, eos=1, new tokens "
            f"from 2), which {name!r} cannot keep apart from the source vocabulary (one shared "
            f"embedding matrix); use name_or_path 'minilm' or 'bert', or rebuild the docids with "
            f"the model's tokenizer (load_tokenizer({tok_name!r}))"
        )
    pad, start = _token_ids(docids, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        if name in ENCODER_DECODER:
            overrides = dict(cfg.config)
            overrides.setdefault("tie_word_embeddings", cfg.tie_output)
            model = build_bert2bert(
                pretrained=name == "minilm",
                vocab_size=docids.vocab_size,
                encoder_vocab_size=len(tokenizer),
                pad_token_id=pad,
                copy_word_embeddings=docids.base_vocab_size if docids.tokenizer else 0,
                decoder_layers=cfg.decoder_layers,
                decoder_heads=cfg.decoder_heads,
                decoder_intermediate=cfg.decoder_intermediate,
                overrides=overrides,
                dropout=cfg.dropout,
            )
        elif name in FROM_CONFIG:
            model = _from_config(cfg, docids, pad, start)
        else:
            model = _from_pretrained(cfg, hub_config)
            if docids.tokenizer is not None and model.config.decoder_start_token_id is not None:
                start = model.config.decoder_start_token_id
    old_rows = decoder_vocab_size(model)
    if old_rows != docids.vocab_size:
        target = model.decoder if isinstance(model, EncoderDecoderModel) else model
        target.resize_token_embeddings(docids.vocab_size, mean_resizing=False)
    if docids.tokenizer is not None and name not in FROM_CONFIG:
        keep = old_rows if getattr(model.config, "genret", None) else docids.base_vocab_size
        init_new_rows(model, docids.base_vocab_size, max(keep, docids.base_vocab_size), cfg.seed, cfg.new_token_noise)
    _set_token_ids(model, pad, docids.eos_token_id, start, docids.max_length() + 1)
    model.config.genret = {
        "tokenizer": docids.tokenizer,
        "source_tokenizer": tok_name,
        "vocab_size": docids.vocab_size,
        "base_vocab_size": docids.base_vocab_size,
        "eos_token_id": docids.eos_token_id,
        "pad_token_id": pad,
    }
    return model.eval(), tokenizer


def build_text_model(
    cfg: ModelConfig, tokenizer: TextTokenizer, max_new_tokens: int = 10
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A seq2seq model that decodes ``tokenizer``'s own tokens (SEAL's n-grams: no identifier tokens).

    The same builds as :func:`build_model`, for a target vocabulary of no documents and no new tokens.
    """
    plain = Docids(
        doc_ids=[],
        identifiers=[],
        offsets=np.zeros(1, dtype=np.int64),
        values=np.zeros(0, np.int32),
        eos_token_id=tokenizer.eos_token_id,
        base_vocab_size=tokenizer.vocab_size,
        scheme={"name": "text"},
        tokenizer=tokenizer.name,
    )
    model, hf_tokenizer = build_model(cfg, plain)
    model.generation_config.max_new_tokens = max_new_tokens
    return model, hf_tokenizer


def _set_token_ids(model: PreTrainedModel, pad: int, eos: int, start: int, max_new_tokens: int) -> None:
    configs = [model.config]
    if isinstance(model, EncoderDecoderModel):
        configs.append(model.decoder.config)
    for config in configs:
        config.pad_token_id, config.eos_token_id, config.decoder_start_token_id = pad, eos, start
    model.generation_config = GenerationConfig(
        decoder_start_token_id=start, eos_token_id=eos, pad_token_id=pad, max_new_tokens=max_new_tokens
    )


def decoder_vocab_size(model: PreTrainedModel) -> int:
    """Rows of the model's output layer (the docid vocabulary it decodes)."""
    return int(model.get_output_embeddings().weight.shape[0])


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: str | Path) -> Path:
    """Write model (safetensors), generation config, tokenizer and ``genret_model.json`` into ``folder``.

    Plain files only, no manifest: wrap in ``indexing.artifacts.write_artifact`` for an atomic,
    checksummed artifact.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    auto = "EncoderDecoderModel" if isinstance(model, EncoderDecoderModel) else "AutoModelForSeq2SeqLM"
    info = {
        "format_version": MODEL_FORMAT,
        "auto_class": auto,
        "model_class": type(model).__name__,
        "genret_version": genret_version(),
        "genret": getattr(model.config, "genret", None),
    }
    (out / MODEL_JSON).write_text(json.dumps(info, indent=2) + "\n")
    return out


def load_model(folder: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """What ``save_model`` wrote: (model in eval mode, tokenizer). Local files and safetensors only."""
    path = Path(folder)
    meta = path / MODEL_JSON
    if not meta.is_file():
        raise ModelError(f"{path}: no {MODEL_JSON}; not a model saved by genret.models.save_model")
    info = json.loads(meta.read_text())
    if info.get("format_version") != MODEL_FORMAT or info.get("auto_class") not in AUTO_CLASSES:
        raise ModelError(
            f"{meta}: unknown format {info.get('format_version')!r} or class "
            f"{info.get('auto_class')!r}; save the model again with this genret version"
        )
    with quiet_transformers():
        model = AUTO_CLASSES[info["auto_class"]].from_pretrained(path, local_files_only=True, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    drop_pooler(model)
    return model.eval(), tokenizer


def _unique(params: Any) -> dict[int, torch.nn.Parameter]:
    return {id(p): p for p in params}


def _numel(params: dict[int, torch.nn.Parameter]) -> int:
    return sum(p.numel() for p in params.values())


def count_parameters(model: PreTrainedModel) -> dict[str, int]:
    """Parameter counts: ``encoder`` (all of it, its embeddings included), ``output`` (the output layer,
    weight and bias, even when tied), ``decoder`` (the rest: layers, cross-attention, untied input
    embeddings), ``embeddings`` (unique word-embedding matrices and output layer), ``non_embedding`` and
    ``total`` (unique). encoder + decoder + output > total when the output layer is tied."""
    everything = _unique(model.parameters())
    encoder = _unique(model.get_encoder().parameters())
    output = _unique(model.get_output_embeddings().parameters())
    decoder = {k: p for k, p in everything.items() if k not in encoder and k not in output}
    embeddings = _unique(
        [
            model.get_encoder().get_input_embeddings().weight,
            model.get_decoder().get_input_embeddings().weight,
            *output.values(),
        ]
    )
    return {
        "encoder": _numel(encoder),
        "decoder": _numel(decoder),
        "output": _numel(output),
        "embeddings": _numel(embeddings),
        "non_embedding": _numel(everything) - _numel(embeddings),
        "total": _numel(everything),
    }
