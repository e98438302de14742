"""1-Pager: one decoding pass writes a keyword path that narrows the corpus, then an answer inside the passage left.

``OnePagerRetriever`` decodes with beam search through ``model.generate``, constrained by
:class:`~genret.constraints.onepager.OnePagerConstraint`; each beam's evidence is the passages that hold its whole
path (and answer). Two readings of the same beams:

- ``search(queries, k) -> Run``: passages ranked by the best beam that reaches them (its log-probability);
- ``answer(queries) -> {qid: Answer}``: the best beam that finished an answer: the answer as the evidence passage's
  own characters (so it is a substring of the passage), the passage's id, the keywords of its path.

``closed_book=True`` decodes the same model with the answer free of the passage (the closed-book baseline). The
retriever keeps the passages' texts (``passages.json`` in its folder) to give answers in the passage's own casing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessorList

from genret.config import check_numbers
from genret.constraints import ConstrainedLogitsProcessor
from genret.constraints.onepager import OnePagerConstraint
from genret.copy_bonus import CopyBonus
from genret.retrievers.base import check_k, load_saved, resolve_device, save_generative, search_in_batches, special_ids
from indexing.ngrams import NgramIndex
from indexing.trec import Run

PASSAGES_FILE = "passages.json"
MEMO_SIZE = 200_000
"""Texts whose decoded beams a retriever keeps."""


@dataclass
class OnePagerSearchConfig:
    """How a 1-Pager retriever decodes (the markers must be the ones it was trained with)."""

    num_beams: int = 10
    max_length: int = 32
    """Tokens decoded at most: keywords, separators, the answer marker and the answer."""
    batch_size: int = 16
    max_source_length: int = 64
    sep_token_id: int = 3
    """Closes a keyword (MiniLM's ``[unused2]``)."""
    answer_token_id: int = 4
    """Starts the answer (MiniLM's ``[unused3]``)."""
    max_candidates: int = 1
    """The answer may start once at most this many passages hold every keyword."""
    answers: bool = True
    """False: retrieval only (the path ends with EOS, no answer)."""
    enumerate_width: int = 1000
    keep_top: int = 0
    """Allowed tokens kept per wide row while the path is over the whole corpus; 0 means 2 * num_beams."""
    copy_bonus: float = 6.0
    """Added to the scores of the question's own tokens while the path is written (:mod:`genret.copy_bonus`); 0 =
    off. 6 was chosen on 500 held-out squad-dev train questions (recipes/onepager-squad.yaml)."""

    def __post_init__(self) -> None:
        check_numbers(
            self,
            positive=("num_beams", "max_length", "batch_size", "max_source_length", "max_candidates"),
            non_negative=("enumerate_width", "keep_top", "sep_token_id", "answer_token_id"),
        )


@dataclass
class Answer:
    """One question's answer: its text (characters of the evidence passage), the passage, the path, its score."""

    text: str
    doc_id: str | None
    path: list[str]
    score: float
    doc: int | None = None
    """The evidence passage's number in the index."""
    keyword_ids: list[list[int]] | None = None
    """The path's keywords as token ids (``path`` decoded)."""

    def as_dict(self) -> dict[str, Any]:
        return {"answer": self.text, "evidence": self.doc_id, "path": self.path, "score": self.score}


@dataclass
class Beam:
    """A decoded sequence read back: keywords, answer tokens (None: no answer), evidence passages, score."""

    keywords: list[list[int]]
    answer: list[int] | None
    evidence: np.ndarray
    score: float


class OnePagerRetriever:
    """A model trained on 1-Pager targets + the corpus's :class:`NgramIndex` + the passages' texts."""

    KIND = "onepager-retriever"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        index: NgramIndex,
        config: OnePagerSearchConfig | None = None,
        device: str | None = None,
        passages: list[str] | None = None,
    ) -> None:
        self.model = model.to(resolve_device(device)).eval()
        self.tokenizer = tokenizer
        self.index = index
        self.config = config or OnePagerSearchConfig()
        if passages is not None and len(passages) != index.n_docs:
            raise ValueError(f"{len(passages)} passage texts for an index of {index.n_docs} documents")
        self.passages = passages
        self.eos_token_id, self.pad_token_id, self.decoder_start_token_id = special_ids(model)
        self.constraints = {
            free: OnePagerConstraint(
                index,
                self.config.sep_token_id,
                self.config.answer_token_id,
                self.eos_token_id,
                self.pad_token_id,
                max_candidates=self.config.max_candidates,
                answers=self.config.answers,
                enumerate_width=self.config.enumerate_width,
                keep_top=self.config.keep_top or 2 * self.config.num_beams,
                free_answers=free,
            )
            for free in (False, True)
        }
        self._memo: dict[tuple[str, bool], list[Beam]] = {}
        self._skip_ids: list[int] | None = None  # the tokens CopyBonus leaves alone, read when first needed

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def doc_ids(self) -> list[str]:
        return list(self.index.doc_ids)

    # --------------------------------------------------------------- decoding

    def decode(self, texts: list[str], closed_book: bool = False) -> list[list[Beam]]:
        """Every beam of each text, best first, read back into keywords, answer and evidence. Decoded beams are
        kept (up to ``MEMO_SIZE`` texts), so ``search`` then ``answer`` on the same questions decode them once."""
        todo = list(dict.fromkeys(t for t in texts if (t, closed_book) not in self._memo))
        if todo:
            if len(self._memo) + len(todo) > MEMO_SIZE:
                self._memo.clear()
            for text, group in zip(todo, self._decode(todo, closed_book), strict=True):
                self._memo[(text, closed_book)] = group
        return [self._memo[(t, closed_book)] for t in texts]

    @torch.inference_mode()
    def _decode(self, texts: list[str], closed_book: bool) -> list[list[Beam]]:
        beams = self.config.num_beams
        enc = self.tokenizer(
            texts, truncation=True, max_length=self.config.max_source_length, padding=True, return_tensors="pt"
        ).to(self.device)
        constraint = self.constraints[closed_book]
        processors = LogitsProcessorList([ConstrainedLogitsProcessor(constraint, num_beams=beams, inplace=beams > 1)])
        if self.config.copy_bonus:
            if self._skip_ids is None:
                self._skip_ids = CopyBonus.skip_ids(self.tokenizer)
            ans, bonus = self.config.answer_token_id, self.config.copy_bonus
            processors.insert(0, CopyBonus(enc["input_ids"], beams, bonus, self._skip_ids, stop_token_id=ans))
        out = self.model.generate(
            input_ids=enc["input_ids"],
            attention_mask=enc["attention_mask"],
            decoder_input_ids=torch.full((len(texts), 1), self.decoder_start_token_id, device=self.device),
            logits_processor=processors,
            num_beams=beams,
            num_return_sequences=beams,
            do_sample=False,
            length_penalty=0.0,
            early_stopping=True,  # done once num_beams sequences finished: answers end well before max_length
            max_new_tokens=self.config.max_length,
            output_scores=True,
            return_dict_in_generate=True,
        )
        sequences = out.sequences[:, 1:].tolist()
        scores = out.sequences_scores.float().cpu().numpy()
        evidence = constraint.evidence(sequences)
        read = [self._read(seq, ev, float(s)) for seq, ev, s in zip(sequences, evidence, scores, strict=True)]
        per_text = [read[i * beams : (i + 1) * beams] for i in range(len(texts))]
        return [sorted(group, key=lambda b: -b.score) for group in per_text]

    def _read(self, seq: list[int], evidence: np.ndarray, score: float) -> Beam:
        sep, ans, eos = self.config.sep_token_id, self.config.answer_token_id, self.eos_token_id
        keywords: list[list[int]] = []
        current: list[int] = []
        answer: list[int] | None = None
        for token in seq:
            if answer is not None:
                if token == eos:
                    return Beam(keywords, answer, evidence, score)
                answer.append(token)
            elif token == sep:
                keywords.append(current)
                current = []
            elif token == ans:
                answer = []
            elif token == eos:
                break
            else:
                current.append(token)
        return Beam(keywords, None, evidence, score)  # no finished answer

    # --------------------------------------------------------------- readings

    def search_texts(self, texts: list[str], k: int = 10) -> list[list[tuple[int, float]]]:
        """Top-k (passage number, score) per text: each passage scored by the best beam that reaches it."""
        results = []
        for group in self.decode(texts):
            ranked: dict[int, float] = {}
            for beam in group:
                for doc in beam.evidence.tolist():
                    ranked.setdefault(doc, beam.score)
            results.append(list(ranked.items())[:k])
        return results

    def search(self, queries: dict[str, str], k: int = 10, progress: bool = True) -> Run:
        """``{qid: {doc_id: score}}``: the passages the beams of each query reach (at most ``k``)."""
        check_k(k)
        return search_in_batches(self.search_texts, self.index.doc_ids, queries, k, self.config.batch_size, progress)

    def answer_texts(self, texts: list[str], closed_book: bool = False) -> list[Answer]:
        """The answer of the best beam that finished one (empty, with no evidence, when none did)."""
        answers = []
        for group in self.decode(texts, closed_book=closed_book):
            best = next((b for b in group if b.answer and len(b.evidence)), None)
            if best is None:
                answers.append(Answer("", None, [], float("-inf")))
                continue
            doc = int(best.evidence[0])
            path = [self.tokenizer.decode(k) for k in best.keywords]
            text = self.answer_text(best.answer, doc)
            answers.append(Answer(text, self.index.doc_ids[doc], path, best.score, doc, best.keywords))
        return answers

    def answer(self, queries: dict[str, str], closed_book: bool = False, progress: bool = True) -> dict[str, Answer]:
        """``{qid: Answer}`` for every question (see :meth:`answer_texts`), in batches."""
        from tqdm.auto import tqdm

        qids = list(queries)
        out: dict[str, Answer] = {}
        size = self.config.batch_size
        for start in tqdm(range(0, len(qids), size), desc="answer", unit="batch", disable=not progress):
            batch = qids[start : start + size]
            out.update(zip(batch, self.answer_texts([queries[q] for q in batch], closed_book), strict=True))
        return out

    def answer_text(self, answer: list[int], doc: int) -> str:
        """The answer as passage ``doc``'s own characters where its tokens occur there (first occurrence), else
        the tokenizer's decoding (a closed-book answer the passage does not hold, or no passage texts kept)."""
        if self.passages is not None:
            tokens = self.index.doc_tokens(doc).tolist()
            m = len(answer)
            at = next((s for s in range(len(tokens) - m + 1) if tokens[s : s + m] == answer), None)
            if at is not None and m:
                text = self.passages[doc]
                offsets = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
                if len(offsets) == len(tokens):
                    return text[offsets[at][0] : offsets[at + m - 1][1]]
        return self.tokenizer.decode(answer)

    # ------------------------------------------------------------- save / load

    def save_pretrained(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Model, tokenizer, n-gram index, search config and the passages' texts as one verified folder."""
        passages = self.passages

        def write_passages(folder: Path) -> None:
            if passages is not None:
                (folder / PASSAGES_FILE).write_text(json.dumps(passages, ensure_ascii=False))

        return save_generative(self, path, overwrite, extra=write_passages)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | None = None) -> OnePagerRetriever:
        """Load a saved retriever after verifying its manifest and every checksum (index memory-mapped)."""
        folder = Path(path)
        model, tokenizer, index, search = load_saved(folder, cls.KIND, NgramIndex, OnePagerSearchConfig)
        texts = folder / PASSAGES_FILE
        passages = json.loads(texts.read_text()) if texts.is_file() else None
        return cls(model, tokenizer, index, search, device=device, passages=passages)


def answer_scores(
    retriever: OnePagerRetriever,
    queries: Mapping[str, str],
    gold: Mapping[str, Sequence[str]],
    closed_book: bool = False,
    progress: bool = True,
) -> tuple[dict[str, float], dict[str, Answer]]:
    """EM / F1 (:func:`genret.answer_metrics.evaluate_answers`) of the retriever's answers to the questions of
    ``queries`` that have gold answer texts in ``gold``, and those answers."""
    from genret.answer_metrics import evaluate_answers

    judged = {q: gold[q] for q in queries if q in gold}
    found = retriever.answer({q: queries[q] for q in judged}, closed_book=closed_book, progress=progress)
    return evaluate_answers({q: a.text for q, a in found.items()}, judged), found


def evidence_checks(retriever: OnePagerRetriever, answers: dict[str, Answer]) -> dict[str, Any]:
    """Over every answered question: the fraction whose answer is a substring of its evidence passage's text, and
    whose every keyword occurs in the passage's tokens (both hold by construction; this checks it), and the
    fraction of questions answered at all."""
    answered = [a for a in answers.values() if a.doc is not None]
    inside = keywords = 0
    for a in answered:
        passage = retriever.passages[a.doc] if retriever.passages is not None else None
        inside += passage is not None and a.text in passage
        tokens = retriever.index.doc_tokens(a.doc).tolist()
        keywords += all(_holds(tokens, k) for k in a.keyword_ids or [])
    n = len(answered)
    return {
        "answered": n / len(answers) if answers else 0.0,
        "answer_in_evidence": inside / n if n else None,
        "keywords_in_evidence": keywords / n if n else None,
    }


def _holds(tokens: list[int], gram: list[int]) -> bool:
    m = len(gram)
    return any(tokens[s : s + m] == gram for s in range(len(tokens) - m + 1))
