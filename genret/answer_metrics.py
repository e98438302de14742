"""Exact match and token F1 of predicted answers, with SQuAD v1.1's answer normalisation.

The official SQuAD script (``evaluate-v1.1.py``) normalises both sides the same way: lower case, punctuation
removed, the articles *a*, *an*, *the* removed, whitespace collapsed. A prediction's EM is 1 when it equals some
gold answer after normalisation; its F1 is the bag-of-tokens F1 against each gold answer, the best one kept.
Every question with gold answers counts: one without a prediction scores 0 on both (nothing is dropped).

    evaluate_answers({"q1": "Denver Broncos"}, {"q1": ["Denver Broncos", "the Broncos"]})
    # {"EM": 1.0, "F1": 1.0, "questions": 1}
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence

__all__ = ["evaluate_answers", "exact_match", "normalize_answer", "per_question", "token_f1"]

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """F1 of the normalised tokens (as bags): 0 when either side is empty and they differ."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def per_question(predictions: Mapping[str, str], gold: Mapping[str, Sequence[str]]) -> dict[str, dict[str, float]]:
    """``{qid: {"EM": .., "F1": ..}}`` for every question of ``gold`` (max over its answers; missing -> 0)."""
    out = {}
    for qid, answers in gold.items():
        if not answers:
            raise ValueError(f"question {qid!r} has no gold answer")
        prediction = predictions.get(qid)
        if prediction is None:
            out[qid] = {"EM": 0.0, "F1": 0.0}
        else:
            out[qid] = {
                "EM": max(exact_match(prediction, a) for a in answers),
                "F1": max(token_f1(prediction, a) for a in answers),
            }
    return out


def evaluate_answers(predictions: Mapping[str, str], gold: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """Mean EM and F1 over every question of ``gold``, and how many there were."""
    scores = per_question(predictions, gold)
    n = len(scores)
    if not n:
        raise ValueError("no questions with gold answers to evaluate")
    return {
        "EM": sum(s["EM"] for s in scores.values()) / n,
        "F1": sum(s["F1"] for s in scores.values()) / n,
        "questions": n,
    }
