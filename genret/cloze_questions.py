"""Cloze questions made from a corpus alone: a sentence with one span taken out, the span its answer.

1-Pager learns to answer from the few thousand gold questions a collection may have; every sentence of every
passage can add one more (Lewis et al. 2019, "Unsupervised Question Answering by Cloze Translation": cloze
questions teach a reader where answers lie). For each passage, up to ``per_doc`` sentences are drawn (seeded);
in each, one answer-like span is taken out, and a question word takes its place:

- a year (1000-2099) -> ``"when"``; another number (digits, commas, points) -> ``"how many"``;
- a run of capitalised words not at the sentence's start (an entity) -> ``"what"``.

The question is the sentence with the span replaced; the answer is the span with its character offset in the
passage's text, so it lines up with the passage's tokens as gold answers do (``indexing.answers.Answers``).

    queries, qrels, answers = cloze_questions(corpus, per_doc=8, seed=0)
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from indexing.answers import Answers
from indexing.columns import column

SENTENCE = re.compile(r"[^.!?]+(?:[.!?]+(?=\s|$)|$)")
YEAR = re.compile(r"\b(?:1\d{3}|20\d{2})\b")
NUMBER = re.compile(r"\b\d[\d,.]*\d\b|\b\d\b")
ENTITY = re.compile(r"\b[A-Z][\w'-]*(?:\s+(?:of\s+|the\s+|de\s+)?[A-Z][\w'-]*)*")
MIN_SENTENCE_WORDS = 6


def answer_spans(sentence: str) -> list[tuple[int, int, str]]:
    """Candidate answers of one sentence: ``(start, end, question word)``, character offsets into it; entities
    that open the sentence are left out (its first word is capitalised anyway)."""
    spans: list[tuple[int, int, str]] = []
    taken: set[int] = set()
    for pattern, word in ((YEAR, "when"), (NUMBER, "how many"), (ENTITY, "what")):
        for m in pattern.finditer(sentence):
            start, end = m.span()
            if word == "what" and not sentence[:start].strip():
                continue
            if taken.isdisjoint(range(start, end)):
                spans.append((start, end, word))
                taken.update(range(start, end))
    return sorted(spans)


def cloze_questions(
    corpus: Any, per_doc: int, seed: int = 0
) -> tuple[dict[str, str], dict[str, dict[str, int]], dict[str, Answers]]:
    """Up to ``per_doc`` cloze questions per passage (ids ``cloze-{row}-{j}``): the questions, their judgments
    (each relevant to its own passage) and answers (text and offset in the passage's ``text``). Sentences under
    ``MIN_SENTENCE_WORDS`` words or without a candidate answer are passed over; deterministic for ``seed``."""
    if per_doc < 1:
        raise ValueError(f"per_doc must be >= 1, got {per_doc}")
    doc_ids = [str(d) for d in column(corpus, "_id")]
    texts = [str(t or "") for t in column(corpus, "text")]
    rng = np.random.default_rng(seed)
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    answers: dict[str, Answers] = {}
    for row, text in enumerate(texts):
        candidates = []
        for m in SENTENCE.finditer(text):
            sentence = m.group(0)
            if len(sentence.split()) < MIN_SENTENCE_WORDS:
                continue
            spans = answer_spans(sentence)
            if spans:
                candidates.append((m.start(), sentence, spans))
        if not candidates:
            continue
        picked = rng.permutation(len(candidates))[:per_doc]
        for j, c in enumerate(picked.tolist()):
            offset, sentence, spans = candidates[c]
            start, end, word = spans[int(rng.integers(len(spans)))]
            question = " ".join(f"{sentence[:start]} {word} {sentence[end:]}".split())
            qid = f"cloze-{row}-{j}"
            queries[qid] = question
            qrels[qid] = {doc_ids[row]: 1}
            answers[qid] = Answers([sentence[start:end]], [offset + start])
    return queries, qrels, answers
