"""DSI retrieval: a seq2seq model that generates docids under the docid trie, mapped back to documents.

``DsiRetriever.search(queries, k)`` runs batched beam search (beams >= k) through
``model.generate`` with one ``ConstrainedLogitsProcessor`` over a ``TrieConstraint``, so every
returned sequence is a real identifier by construction. Scores are the beams' summed token
log-probabilities (``length_penalty=0``). Under ``accelerate launch`` the queries are split across
processes and one Run is gathered.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessorList

from genret.config import check_numbers
from genret.constraints import ConstrainedLogitsProcessor, TrieConstraint
from genret.retrievers.base import check_k, load_generative, resolve_device, save_generative, search_in_batches
from indexing.docid_index import DocidIndex
from indexing.trec import Run


@dataclass
class SearchConfig:
    """How a DSI retriever searches."""

    num_beams: int = 10
    """Beams per query; raised to k when a search asks for more documents."""
    batch_size: int = 16
    """Queries per generate call."""
    max_source_length: int = 64
    """Query tokens kept (the rest is truncated)."""

    def __post_init__(self) -> None:
        check_numbers(self, positive=("num_beams", "batch_size", "max_source_length"))


class DsiRetriever:
    """A trained corpus-in-model index: model + tokenizer + docid index (identifiers and trie)."""

    KIND = "dsi-retriever"
    """The manifest kind of a saved folder (``genret.systems`` finds the system by it)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        index: DocidIndex,
        config: SearchConfig | None = None,
        device: str | None = None,
    ) -> None:
        self.model = model.to(resolve_device(device)).eval()
        self.tokenizer = tokenizer
        self.index = index
        self.config = config or SearchConfig()
        pad = model.generation_config.pad_token_id
        self.fill_token_id = int(pad if pad is not None else index.docids.eos_token_id)
        # one constraint for the retriever's life: it builds and caches the trie's device tensors once
        self.constraint = TrieConstraint(index.trie, self.fill_token_id)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def search_texts(self, texts: list[str], k: int = 10) -> list[list[tuple[int, float]]]:
        """Top-k (document row, score) for each text, best first; one generate call per batch."""
        trie = self.index.trie
        k = min(k, len(self.index))
        beams = max(self.config.num_beams, k)
        enc = self.tokenizer(
            texts, truncation=True, max_length=self.config.max_source_length, padding=True, return_tensors="pt"
        ).to(self.device)
        processor = ConstrainedLogitsProcessor(self.constraint, num_beams=beams, inplace=beams > 1)  # one per call
        greedy = beams == 1  # generate's greedy search: no sequences_scores, and beam-only flags are not valid
        # early_stopping="never" (exact for length_penalty=0): with True, generate stops once num_beams hypotheses
        # are finished, counting copies of the beams it starts at -1e9 when the trie leaves fewer candidates than
        # that; with k near the number of documents some ids were never reached and repeats scored -1e9 came back
        out = self.model.generate(
            input_ids=enc["input_ids"],
            attention_mask=enc["attention_mask"],
            logits_processor=LogitsProcessorList([processor]),
            num_beams=beams,
            num_return_sequences=k,
            do_sample=False,
            **({} if greedy else {"length_penalty": 0.0, "early_stopping": "never"}),
            max_new_tokens=trie.max_depth,
            output_scores=not greedy,
            output_logits=greedy,
            return_dict_in_generate=True,
        )
        if not greedy:
            scores = out.sequences_scores
        else:  # greedy: sum the chosen tokens' log-probabilities under the model (unmasked logits, as beam
            # search scores them), up to and including the first eos; the padding after it does not count
            steps = self.model.compute_transition_scores(out.sequences, out.logits, normalize_logits=True)
            chosen = out.sequences[:, -steps.shape[1] :]
            is_eos = (chosen == trie.eos_token_id).long()
            after_eos = (is_eos.cumsum(dim=1) - is_eos) > 0
            scores = torch.where(after_eos, 0.0, steps).sum(dim=1)
        seqs = out.sequences[:, 1:].cpu().numpy().astype(np.int64)
        docs = trie.lookup_batch(seqs)  # a row ends at its first eos; padding after it is ignored
        if (docs < 0).any():
            bad = seqs[np.flatnonzero(docs < 0)[0]].tolist()
            raise RuntimeError(f"constrained decoding produced a sequence that is not an identifier: {bad}")
        scores = scores.float().cpu().numpy().reshape(len(texts), k)
        docs = docs.reshape(len(texts), k)
        return [list(zip(d.tolist(), s.tolist(), strict=True)) for d, s in zip(docs, scores, strict=True)]

    @property
    def doc_ids(self) -> list[str]:
        """The ids of the documents this retriever indexed, in index order."""
        return list(self.index.doc_ids)

    def search(self, queries: dict[str, str], k: int = 10, progress: bool = True) -> Run:
        """``{qid: {doc_id: score}}`` for the top ``k`` documents of every query."""
        check_k(k)
        return search_in_batches(self.search_texts, self.index.doc_ids, queries, k, self.config.batch_size, progress)

    def save_pretrained(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Model (safetensors), tokenizer, identifiers, trie and search config as one verified folder."""
        return save_generative(self, path, overwrite)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | None = None) -> DsiRetriever:
        """Load a saved retriever after verifying its manifest and every checksum."""
        return load_generative(cls, path, DocidIndex, SearchConfig, device=device)
