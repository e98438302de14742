"""SEAL retrieval: a seq2seq model generates n-grams of the corpus; the n-grams rank documents.

``SealRetriever.search(queries, k)`` per batch of queries:

1. **Decode** with beam search through ``model.generate``, constrained by
   :class:`~genret.constraints.ngram.NgramConstraint` to n-grams that occur in the corpus, once
   for the body view and, when the index holds titles (``title_markers``), once more with the
   decoder prompt ending in the title marker (the title view: n-grams that start a title).
2. **Keep every prefix** (SEAL's keep-history beam search, without forking ``generate``): a
   :class:`NgramRecorder` logits processor sees each step's running beams and records every
   prefix; the returned sequences are added. All of them are candidate n-grams.
   With ``query_ngrams = N`` the query's own n-grams of 1 to N tokens that occur in the corpus are
   candidates too (body view): a copy path. Beam search keeps only the model's few likeliest
   n-grams at each step, and a small decoder rarely puts a rare query term among them; scored by
   the model like the others, such an n-gram weighs what the model thinks of it, and with
   ``copy_logprob = c`` at least ``e^c`` (a floor: the model can raise a query n-gram, not bury it).
   On 100 scifact train claims held out of training (nDCG@10): the model's n-grams alone 0.254,
   with the copied ones 0.443, with the floor at -2 ... -6 0.609 - 0.620, the query's n-grams
   alone at -1 (the no-model check of :mod:`genret.retrievers.seal_check`) 0.595.
3. **Rescore**: the log-probability of each distinct n-gram under the model, by one
   teacher-forced decoder pass over all of them (encoder run once per query); SEAL rescored its
   keys the same way.
4. **Rank documents** with SEAL's weights, first stage and intersective rescoring
   (:mod:`genret.retrievers.seal_scoring`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList
from transformers.modeling_outputs import BaseModelOutput

from genret.config import check_numbers
from genret.constraints import ConstrainedLogitsProcessor
from genret.constraints.ngram import NgramConstraint
from genret.retrievers.base import (
    check_k,
    load_generative,
    resolve_device,
    save_generative,
    search_in_batches,
    special_ids,
)
from genret.retrievers.seal_check import occurring_ngrams
from genret.retrievers.seal_scoring import SealScoring, score_documents
from indexing.ngrams import NgramIndex
from indexing.trec import Run


@dataclass
class SealSearchConfig:
    """How a SEAL retriever decodes and scores (SEAL's defaults where it has one)."""

    num_beams: int = 15
    """Beams per query and view."""
    max_length: int = 10
    """Longest n-gram decoded (tokens, after the title marker in the title view)."""
    batch_size: int = 20
    """Queries per generate call."""
    max_source_length: int = 64
    """Query tokens kept (the rest is truncated)."""
    decode_titles: bool = True
    """Also decode the title view when the index has title markers."""
    enumerate_width: int = 1000
    """N-grams occurring at most this often have their next tokens enumerated; wider ones check the
    model's best candidates (NgramConstraint's hybrid policy)."""
    keep_top: int = 0
    """Allowed tokens kept per wide row; 0 means 2 * num_beams (the beams of the full mask)."""
    constraint_threads: int = 0
    """CPU threads for the constraint's top-k over wide rows (NgramConstraint.threads); 0 = 2 when the
    process may use two cores or more, else 1. The model waits while the constraint works, so a
    second core is usually idle; set 1 on a CPU shared with busy jobs (there the split costs time)."""
    rescore_batch: int = 256
    """N-grams per teacher-forced rescoring pass."""
    query_ngrams: int = 0
    """Also score the query's own corpus n-grams of 1 to this many tokens (the copy path of step 2);
    0 = only what beam search found (SEAL's behaviour)."""
    copy_logprob: float | None = None
    """With ``query_ngrams``: each of the query's own n-grams counts at least this likely (log-probability),
    whatever the model says of it: the copy path as a floor under the model (-1 is what SEAL's no-model check
    gives every query n-gram); None: the model's log-probability alone."""
    scoring: SealScoring = field(default_factory=SealScoring)

    def __post_init__(self) -> None:
        check_numbers(
            self,
            positive=("num_beams", "max_length", "batch_size", "max_source_length", "rescore_batch"),
            non_negative=("enumerate_width", "keep_top", "constraint_threads", "query_ngrams"),
        )


def _default_threads() -> int:
    """2 when this process may run on two cores or more, else 1 (``SealSearchConfig.constraint_threads``)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 2 if cores >= 2 else 1


class NgramRecorder(LogitsProcessor):
    """Records every prefix of every running beam, per batch item; leaves the scores alone.

    ``prompt_len`` tokens of each row (decoder start, forced prefix) are not part of the n-grams.
    """

    def __init__(self, num_beams: int, prompt_len: int) -> None:
        self.num_beams = num_beams
        self.prompt_len = prompt_len
        self.ngrams: dict[int, set[tuple[int, ...]]] = {}

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[1] > self.prompt_len:
            rows = input_ids[:, self.prompt_len :].tolist()
            for r, seq in enumerate(rows):
                self.ngrams.setdefault(r // self.num_beams, set()).add(tuple(seq))
        return scores


class SealRetriever:
    """A model trained to generate corpus n-grams + the corpus's :class:`NgramIndex`."""

    KIND = "seal-retriever"
    """The manifest kind of a saved folder (``genret.systems`` finds the system by it)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        index: NgramIndex,
        config: SealSearchConfig | None = None,
        device: str | None = None,
    ) -> None:
        self.model = model.to(resolve_device(device)).eval()
        self.tokenizer = tokenizer
        self.index = index
        self.config = config or SealSearchConfig()
        self.eos_token_id, self.pad_token_id, self.decoder_start_token_id = special_ids(model)
        keep = self.config.keep_top or 2 * self.config.num_beams
        markers = index.config.get("title_markers")
        self.views: dict[str, list[int]] = {"body": []}
        if markers and self.config.decode_titles:
            self.views["title"] = [int(markers[0])]
        self.constraints = {
            view: NgramConstraint(
                index,
                self.eos_token_id,
                self.pad_token_id,
                self.config.enumerate_width,
                keep,
                prefix=prefix,
                threads=self.config.constraint_threads or _default_threads(),
            )
            for view, prefix in self.views.items()
        }

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # --------------------------------------------------------------- decoding

    def _encode(self, texts: list[str]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The queries' tokens and encoder states: computed once per batch, for both views and the rescoring."""
        enc = dict(
            self.tokenizer(
                texts, truncation=True, max_length=self.config.max_source_length, padding=True, return_tensors="pt"
            ).to(self.device)
        )
        return enc, self.model.get_encoder()(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])[0]

    def _decode(self, enc: dict[str, torch.Tensor], hidden: torch.Tensor, view: str) -> list[set[tuple[int, ...]]]:
        """Every n-gram the beams of each query held, in ``view`` (prefix included); ``hidden``: the
        queries' encoder states, computed once for every view and the rescoring."""
        prefix = self.views[view]
        beams = self.config.num_beams
        n = enc["input_ids"].shape[0]
        prompt = torch.tensor([[self.decoder_start_token_id, *prefix]], device=self.device).repeat(n, 1)
        recorder = NgramRecorder(beams, prompt.shape[1])
        processor = ConstrainedLogitsProcessor(self.constraints[view], num_beams=beams, inplace=beams > 1)
        out = self.model.generate(
            encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
            attention_mask=enc["attention_mask"],
            decoder_input_ids=prompt,
            logits_processor=LogitsProcessorList([processor, recorder]),
            num_beams=beams,
            num_return_sequences=beams,
            do_sample=False,
            length_penalty=0.0,
            early_stopping="never",
            max_new_tokens=self.config.max_length,
            return_dict_in_generate=True,
        )
        found = [set(recorder.ngrams.get(i, ())) for i in range(n)]
        for row, seq in enumerate(out.sequences[:, prompt.shape[1] :].tolist()):
            found[row // beams].add(tuple(seq))
        stop = {self.eos_token_id, self.pad_token_id}
        result = []
        for ngrams in found:
            clean = set()
            for g in ngrams:
                end = next((j for j, t in enumerate(g) if t in stop), len(g))
                if end:
                    clean.add(tuple(prefix) + tuple(g[:end]))
            result.append(clean)
        return result

    def _query_ngrams(self, enc: dict[str, torch.Tensor]) -> list[list[tuple[int, ...]]]:
        """Each query's own n-grams of 1 to ``query_ngrams`` tokens (its truncated source, special
        tokens left out) that occur in the index: the copy path's candidates."""
        special = set(self.tokenizer.all_special_ids)
        found = []
        for ids, mask in zip(enc["input_ids"].tolist(), enc["attention_mask"].tolist(), strict=True):
            tokens = [t for t, m in zip(ids, mask, strict=True) if m and t not in special]
            found.append(occurring_ngrams(self.index, tokens, self.config.query_ngrams))
        return found

    def _logprobs(
        self,
        enc: dict[str, torch.Tensor],
        hidden: torch.Tensor,
        owners: list[int],
        ngrams: list[tuple[int, ...]],
        prefix_len: list[int],
    ) -> np.ndarray:
        """``log P(ngram | query)`` of each n-gram (its forced prefix given, not scored), teacher-forced."""
        out = np.zeros(len(ngrams), dtype=np.float64)
        size = self.config.rescore_batch
        for start in range(0, len(ngrams), size):
            chunk = ngrams[start : start + size]
            rows = torch.tensor(owners[start : start + size], device=self.device)
            width = max(len(g) for g in chunk)
            seqs = torch.full((len(chunk), width + 1), self.pad_token_id, dtype=torch.long)
            scored = torch.zeros(len(chunk), width, dtype=torch.bool)
            for i, g in enumerate(chunk):
                seqs[i, 0] = self.decoder_start_token_id
                seqs[i, 1 : 1 + len(g)] = torch.tensor(g)
                scored[i, prefix_len[start + i] : len(g)] = True
            seqs, scored = seqs.to(self.device), scored.to(self.device)
            encoded = BaseModelOutput(last_hidden_state=hidden[rows])
            logits = self.model(
                encoder_outputs=encoded, attention_mask=enc["attention_mask"][rows], decoder_input_ids=seqs[:, :-1]
            ).logits.float()
            token_lp = logits.log_softmax(-1).gather(-1, seqs[:, 1:, None]).squeeze(-1)
            out[start : start + len(chunk)] = torch.where(scored, token_lp, 0.0).sum(1).cpu().numpy()
        return out

    @torch.inference_mode()
    def search_texts(self, texts: list[str], k: int = 10) -> list[list[tuple[int, float]]]:
        """Top-k (document number, SEAL score) for each text, best first."""
        enc, hidden = self._encode(texts)
        per_query: list[dict[tuple[int, ...], int]] = [{} for _ in texts]
        for view, prefix in self.views.items():
            for q, ngrams in enumerate(self._decode(enc, hidden, view)):
                for g in ngrams:
                    per_query[q].setdefault(g, len(prefix))
        copied: list[set[tuple[int, ...]]] = [set() for _ in texts]
        if self.config.query_ngrams:
            for q, ngrams in enumerate(self._query_ngrams(enc)):
                copied[q].update(ngrams)
                for g in ngrams:
                    per_query[q].setdefault(g, 0)
        owners = [q for q, found in enumerate(per_query) for _ in found]
        ngrams = [g for found in per_query for g in found]
        prefix_len = [p for found in per_query for p in found.values()]
        logprobs = self._logprobs(enc, hidden, owners, ngrams, prefix_len) if ngrams else np.zeros(0)
        results, start = [], 0
        for q, found in enumerate(per_query):
            keys = list(found)
            lp = logprobs[start : start + len(keys)]
            start += len(keys)
            if self.config.copy_logprob is not None and copied[q]:
                floor = np.array([g in copied[q] for g in keys])
                lp = np.where(floor, np.maximum(lp, self.config.copy_logprob), lp)
            results.append(score_documents(keys, lp, self.index, self.config.scoring)[:k])
        return results

    @property
    def doc_ids(self) -> list[str]:
        """The ids of the documents this retriever indexed, in index order."""
        return list(self.index.doc_ids)

    def search(self, queries: dict[str, str], k: int = 10, progress: bool = True) -> Run:
        """``{qid: {doc_id: score}}`` for the top ``k`` documents of every query (fewer if fewer matched)."""
        check_k(k)
        return search_in_batches(self.search_texts, self.index.doc_ids, queries, k, self.config.batch_size, progress)

    # ------------------------------------------------------------- save / load

    def save_pretrained(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Model (safetensors), tokenizer, n-gram index and search config as one verified folder."""
        return save_generative(self, path, overwrite)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | None = None) -> SealRetriever:
        """Load a saved retriever after verifying its manifest and every checksum (index memory-mapped)."""
        return load_generative(cls, path, NgramIndex, SealSearchConfig, device=device)
