"""Cloze questions: each is its sentence with the answer span replaced by a question word, the answer sits at its
offset in the passage, entities that open a sentence are never the answer; deterministic, capped per passage."""

from __future__ import annotations

import pytest

from genret.cloze_questions import answer_spans, cloze_questions

CORPUS = {
    "_id": ["a", "b", "c"],
    "text": [
        "Warsaw became the capital of Poland in 1596. The city lies on the Vistula river in the east. It has "
        "1,790,658 inhabitants within its city limits.",
        "Short one. Too short.",
        "Oxygen was discovered by Carl Wilhelm Scheele in Uppsala before 1773 by some accounts.",
    ],
}


def test_answer_spans_by_kind() -> None:
    sentence = "Warsaw became the capital of Poland in 1596 with 3 hills."
    spans = [(sentence[s:e], word) for s, e, word in answer_spans(sentence)]
    assert spans == [("Poland", "what"), ("1596", "when"), ("3", "how many")]  # "Warsaw" opens the sentence


def test_every_question_is_its_sentence_with_the_answer_replaced() -> None:
    queries, qrels, answers = cloze_questions(CORPUS, per_doc=5, seed=3)
    texts = dict(zip(CORPUS["_id"], CORPUS["text"], strict=True))
    assert {next(iter(r)) for r in qrels.values()} == {"a", "c"}  # "b" has no sentence of six words
    assert sum(next(iter(r)) == "a" for r in qrels.values()) == 3  # one per usable sentence, at most per_doc
    for qid, question in queries.items():
        text = texts[next(iter(qrels[qid]))]
        answer, start = answers[qid].texts[0], answers[qid].starts[0]
        assert text[start : start + len(answer)] == answer
        word = {"1596": "when", "1773": "when", "1,790,658": "how many"}.get(answer, "what")
        sentence_start = text.rfind(". ", 0, start) + 2 if ". " in text[:start] else 0
        sentence_end = text.find(".", start + len(answer))
        expected = " ".join(
            f"{text[sentence_start:start]} {word} {text[start + len(answer) : sentence_end + 1]}".split()
        )
        assert question == expected
    assert cloze_questions(CORPUS, per_doc=5, seed=3) == (queries, qrels, answers)
    assert len(cloze_questions(CORPUS, per_doc=1, seed=3)[0]) == 2
    with pytest.raises(ValueError, match="per_doc"):
        cloze_questions(CORPUS, per_doc=0)
