"""Frozen-encoder training: each distinct source text is encoded once, its states are cached, and a training
step runs only the decoder.

>>> freeze_encoder(model)                                                              # doctest: +SKIP
>>> cache = EncoderStateCache.build(model, hf_tokenizer, pairs["source"], "runs/x/encoder_cache",
...                                 max_length=64)                                    # doctest: +SKIP
>>> dataset, collate = CachedPairs(pairs, cache), CachedStatesCollator(cache)          # doctest: +SKIP
>>> train(model, dataset, collate, TrainConfig(...))                                   # doctest: +SKIP

Why: on a CPU a step of a fine-tuned MiniLM encoder + small decoder is almost all the encoder's forward and
backward. With the encoder frozen its output for a source text never changes, so it
is computed once per distinct text (in eval mode: no dropout) and read back at every epoch; the decoder attends to
the cached states exactly as it would to fresh ones (``model(encoder_outputs=(states,), attention_mask, labels)``,
which every Hugging Face encoder-decoder accepts: T5, BART, ``EncoderDecoderModel``).

What is frozen: every parameter of ``model.get_encoder()``. Where the encoder shares a parameter with the decoder
(T5 / BART's one word-embedding matrix, and an output layer tied to it) that parameter is the encoder's and stays
frozen too, since the cached states must remain the states the encoder gives at query time; the decoder layers
(and, for ``EncoderDecoderModel``, the decoder's own embeddings and output layer) learn on top of them.

The cache is a verified artifact folder (``indexing.artifacts``): ``states.npy`` (every text's token states, one
after the other, float16 by default, memory-mapped when read), ``offsets.npy`` (int64, text ``i`` is
``states[offsets[i]:offsets[i + 1]]``) and ``texts.json``. Its key hashes the encoder's weights, the tokenizer,
``max_length``, the dtype and the texts: a run that resumes finds the same key and reuses the folder; anything else
is rebuilt. The size is known before anything is encoded (tokens x hidden x bytes) and must stay within
``max_bytes``; the error says how large it would be and which knobs shrink it.

Under ``accelerate launch`` the process of rank 0 builds the cache and the others wait for it and read the same
files, so several nodes need ``output_dir`` on a filesystem they share.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from genret.dsi_pairs import pad_labels
from indexing.artifacts import ArtifactError, load_json, load_npy, read_manifest, save_json, write_artifact

logger = logging.getLogger(__name__)

KIND = "encoder-state-cache"
_STORE = {"float16": np.float16, "float32": np.float32}


class EncoderCacheError(ValueError):
    """The cache cannot be built as asked (too large, unknown dtype, a model without an encoder)."""


def freeze_encoder(model: Any) -> int:
    """``requires_grad=False`` on every parameter of ``model.get_encoder()`` (shared ones included); returns how
    many parameters that froze. Training then reads the encoder's states from the cache (computed in eval mode),
    so its dropout never applies."""
    encoder = model.get_encoder()
    frozen = 0
    for param in encoder.parameters():
        param.requires_grad_(False)
        frozen += param.numel()
    return frozen


def trainable_parameters(model: Any) -> int:
    """Parameters the optimizer will update (those with ``requires_grad``)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters() if p.requires_grad}.values())


def _weights_digest(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_key(model: Any, tokenizer: Any, texts: Sequence[str], max_length: int, dtype: str) -> str:
    """What the cached states depend on, hashed: encoder weights, tokenizer, max_length, dtype and the texts."""
    digest = hashlib.sha256()
    vocab = json.dumps(sorted(tokenizer.get_vocab().items())) if hasattr(tokenizer, "get_vocab") else ""
    head = {
        "encoder": _weights_digest(model.get_encoder()),
        "tokenizer": type(tokenizer).__name__,
        "vocab": hashlib.sha256(vocab.encode()).hexdigest(),
        "max_length": max_length,
        "dtype": dtype,
    }
    digest.update(json.dumps(head, sort_keys=True).encode())
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


def _hidden_size(model: Any) -> int:
    config = model.get_encoder().config
    for name in ("hidden_size", "d_model"):
        if isinstance(getattr(config, name, None), int):
            return int(getattr(config, name))
    raise EncoderCacheError(f"cannot tell the encoder's hidden size from {type(config).__name__}")


@dataclass
class EncoderStateCache:
    """The cached encoder states of a list of distinct texts (see the module docstring)."""

    folder: Path
    texts: list[str]
    offsets: np.ndarray
    states: np.ndarray
    key: str

    def __post_init__(self) -> None:
        self.row_of = {text: i for i, text in enumerate(self.texts)}

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def nbytes(self) -> int:
        return int(self.states.nbytes)

    def rows(self, texts: Sequence[str]) -> np.ndarray:
        """Cache row of each text (``KeyError`` naming the first text that is not cached)."""
        try:
            return np.fromiter((self.row_of[t] for t in texts), dtype=np.int64, count=len(texts))
        except KeyError as err:
            raise KeyError(f"text not in the encoder cache {self.folder}: {str(err)[:80]}") from None

    def states_of(self, row: int) -> np.ndarray:
        """``(tokens, hidden)`` states of cache row ``row``."""
        return self.states[self.offsets[row] : self.offsets[row + 1]]

    @classmethod
    def load(cls, folder: str | Path, key: str | None = None, verify: bool = True) -> EncoderStateCache:
        """Read a cache folder (checksums verified unless ``verify=False``; states memory-mapped); ``key``: refuse
        one built for other inputs (``ArtifactError``)."""
        path = Path(folder)
        manifest = read_manifest(path, kind=KIND, verify=verify)
        if key is not None and manifest["config"].get("key") != key:
            raise ArtifactError(
                f"{path}: an encoder cache of other inputs (encoder weights, tokenizer, texts or "
                f"max_length differ); delete it to rebuild"
            )
        return cls(
            path,
            load_json(path, "texts.json"),
            load_npy(path, "offsets.npy"),
            load_npy(path, "states.npy", mmap=True),
            manifest["config"]["key"],
        )

    @classmethod
    def build(
        cls,
        model: Any,
        tokenizer: Any,
        texts: Sequence[str],
        folder: str | Path,
        *,
        max_length: int = 64,
        dtype: str = "float16",
        max_bytes: int = 16 << 30,
        batch_size: int = 64,
        device: str | None = None,
        progress: bool = True,
        wait_s: float = 6 * 3600,
    ) -> EncoderStateCache:
        """The cache of the distinct ``texts`` (first-seen order), reused from ``folder`` when its key matches,
        else encoded and written there. Under ``accelerate launch`` only the process of rank 0 writes it; the others
        wait (at most ``wait_s``) until it is in place and read it."""
        if dtype not in _STORE:
            raise EncoderCacheError(f"encoder cache dtype must be one of {', '.join(_STORE)}; got {dtype!r}")
        distinct = list(dict.fromkeys(texts))
        key = cache_key(model, tokenizer, distinct, max_length, dtype)
        path = Path(folder)
        if int(os.environ.get("RANK", "0")) != 0:  # another process of `accelerate launch` writes it
            return _wait_for(cls, path, key, wait_s)
        try:
            cache = cls.load(path, key)
            logger.info("reusing the encoder cache %s (%d texts)", path, len(cache))
            return cache
        except ArtifactError:
            _write(model, tokenizer, distinct, path, key, max_length, dtype, max_bytes, batch_size, device, progress)
        return cls.load(path, key, verify=False)  # just written and checksummed: hashing it again buys nothing


def _wait_for(cls: type[EncoderStateCache], path: Path, key: str, wait_s: float) -> EncoderStateCache:
    """The cache the main process is writing, once it is in place (it is renamed there whole). Polling the folder
    needs no process group, so this works before and outside accelerate's own state."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return cls.load(path, key)
        except ArtifactError:
            if time.monotonic() > deadline:
                raise EncoderCacheError(
                    f"waited {wait_s:.0f} s for the main process to write the encoder cache {path}; did it fail?"
                ) from None
            time.sleep(1.0)


def _write(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    path: Path,
    key: str,
    max_length: int,
    dtype: str,
    max_bytes: int,
    batch_size: int,
    device: str | None,
    progress: bool,
) -> None:
    from tqdm.auto import tqdm

    start = time.perf_counter()
    enc = tokenizer(texts, truncation=True, max_length=max_length, padding=False)
    lengths = np.fromiter((len(ids) for ids in enc["input_ids"]), dtype=np.int64, count=len(texts))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    hidden = _hidden_size(model)
    size = int(offsets[-1]) * hidden * np.dtype(_STORE[dtype]).itemsize
    if size > max_bytes:
        raise EncoderCacheError(
            f"the encoder cache would take {size / 2**30:.2f} GiB ({len(texts)} distinct sources, {offsets[-1]} "
            f"tokens x {hidden} x {dtype}), over its bound of {max_bytes / 2**30:.2f} GiB: raise "
            f"model.encoder_cache_gb, or shrink pairs.max_source_length or the number of distinct sources"
        )
    encoder = model.get_encoder()
    home = next(encoder.parameters()).device
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    was_training = encoder.training
    encoder.to(target).eval()
    order = np.argsort(-lengths, kind="stable")  # longest first: batches pad little

    def write_files(tmp: Path) -> None:
        states = np.lib.format.open_memmap(
            tmp / "states.npy", mode="w+", dtype=_STORE[dtype], shape=(int(offsets[-1]), hidden)
        )
        with (
            torch.inference_mode(),
            tqdm(total=len(texts), desc="encoder cache", unit="text", disable=not progress, mininterval=1.0) as bar,
        ):
            for begin in range(0, len(texts), batch_size):
                rows = order[begin : begin + batch_size]
                batch = tokenizer.pad({"input_ids": [enc["input_ids"][r] for r in rows]}, return_tensors="pt")
                out = encoder(
                    input_ids=batch["input_ids"].to(target), attention_mask=batch["attention_mask"].to(target)
                ).last_hidden_state
                out = out.float().cpu().numpy()
                for j, r in enumerate(rows.tolist()):
                    states[offsets[r] : offsets[r + 1]] = out[j, : lengths[r]]
                bar.update(len(rows))
        states.flush()
        del states
        np.save(tmp / "offsets.npy", offsets, allow_pickle=False)
        save_json(tmp, "texts.json", texts)

    try:
        config = {
            "key": key,
            "max_length": max_length,
            "dtype": dtype,
            "hidden": hidden,
            "texts": len(texts),
            "tokens": int(offsets[-1]),
            "bytes": size,
        }
        write_artifact(path, KIND, write_files, config=config, counts={"texts": len(texts)}, overwrite=True)
    finally:
        encoder.to(home)
        encoder.train(was_training)
    logger.info(
        "encoder cache: %d texts, %d tokens, %.2f GiB in %.0f s",
        len(texts),
        offsets[-1],
        size / 2**30,
        time.perf_counter() - start,
    )


class CachedPairs(torch.utils.data.Dataset):
    """Training pairs whose sources are read from an :class:`EncoderStateCache`: rows ``{"row", "target_ids"}``."""

    def __init__(self, pairs: Any, cache: EncoderStateCache) -> None:
        self.rows = cache.rows(list(pairs["source"]))
        self.targets = [list(t) for t in pairs["target_ids"]]
        self.lengths = np.diff(cache.offsets)[self.rows]
        """Each row's source length in tokens (what the collator pads to)."""

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"row": int(self.rows[i]), "target_ids": self.targets[i]}


@dataclass
class CachedStatesCollator:
    """Batches :class:`CachedPairs` rows: the cached states padded with zeros (masked out), labels padded with
    ``label_pad_id``. Returns ``{"attention_mask", "labels", "encoder_outputs": (states,)}``, what
    ``model(**batch)`` of any Hugging Face encoder-decoder takes in place of ``input_ids``."""

    cache: EncoderStateCache
    label_pad_id: int = -100

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        spans = [self.cache.states_of(r["row"]) for r in rows]
        width = max(len(s) for s in spans)
        states = np.zeros((len(rows), width, self.cache.states.shape[1]), dtype=np.float32)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, s in enumerate(spans):
            states[i, : len(s)] = s
            mask[i, : len(s)] = 1
        labels = pad_labels([r["target_ids"] for r in rows], self.label_pad_id)
        return {"attention_mask": mask, "labels": labels, "encoder_outputs": (torch.from_numpy(states),)}


class TrainingInputs(NamedTuple):
    """What :func:`genret.training.train` takes: ``train(model, dataset, collate_fn, config, lengths=lengths)``."""

    dataset: Any
    collate_fn: Any
    lengths: np.ndarray
    """Each row's source length in tokens, for batches of similar length."""


def training_inputs(
    model: Any,
    hf_tokenizer: Any,
    pairs: Any,
    *,
    freeze: bool,
    max_source_length: int,
    cache_dir: str | Path,
    max_gb: float = 16.0,
    progress: bool = True,
) -> TrainingInputs:
    """The pairs and a tokenizing collator, or with ``freeze`` the encoder frozen and the pairs read from its
    state cache in ``cache_dir``; with each row's source length."""
    from genret.dsi_pairs import Seq2SeqCollator

    if not freeze:
        enc = hf_tokenizer(list(pairs["source"]), truncation=True, max_length=max_source_length, padding=False)
        lengths = np.fromiter((len(ids) for ids in enc["input_ids"]), dtype=np.int64, count=len(pairs))
        return TrainingInputs(pairs, Seq2SeqCollator(hf_tokenizer, max_source_length), lengths)
    frozen = freeze_encoder(model)
    cache = EncoderStateCache.build(
        model,
        hf_tokenizer,
        pairs["source"],
        cache_dir,
        max_length=max_source_length,
        max_bytes=int(max_gb * 2**30),
        progress=progress,
    )
    logger.info(
        "frozen encoder: %d parameters frozen, %d trained; cache of %d texts, %.2f GiB",
        frozen,
        trainable_parameters(model),
        len(cache),
        cache.nbytes / 2**30,
    )
    dataset = CachedPairs(pairs, cache)
    return TrainingInputs(dataset, CachedStatesCollator(cache), dataset.lengths)
