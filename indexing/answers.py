"""Gold answers of questions (``answers.jsonl`` beside a BEIR folder's queries), for question answering.

One JSON object per line: ``{"_id": question id, "answers": [texts], "answer_starts": [character offsets]}``;
``answer_starts`` is optional (when given, one offset per answer, into the text of the question's judged
passage). Every refusal names the file, the line and the field.

    answers = load_answers("../shared/data/squad-dev")   # {qid: Answers(texts=[...], starts=[...])}
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from indexing.qrels import CorpusError
from indexing.records import _json_records

ANSWERS_FILE = "answers.jsonl"


@dataclass(frozen=True)
class Answers:
    """A question's gold answer texts and, where known, their character offsets in its passage."""

    texts: list[str]
    starts: list[int] | None = None


def load_answers(path: str | os.PathLike[str]) -> dict[str, Answers]:
    """``{question id: Answers}`` from ``answers.jsonl`` (or a folder holding it), in file order."""
    path = Path(path)
    if path.is_dir():
        path = path / ANSWERS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no answers file (expected JSON lines with _id, answers, answer_starts)")
    out: dict[str, Answers] = {}
    for lineno, record in _json_records(path, progress=False):
        loc = f"{path}:{lineno}"
        qid = record.get("_id")
        if not isinstance(qid, str) or not qid:
            raise CorpusError(f"{loc}: field '_id': expected a non-empty string, got {qid!r}")
        if qid in out:
            raise CorpusError(f"{loc}: field '_id': question {qid!r} given twice")
        texts = record.get("answers")
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
            raise CorpusError(f"{loc}: field 'answers': expected a non-empty list of non-empty strings")
        starts = record.get("answer_starts")
        if starts is not None and (
            not isinstance(starts, list)
            or len(starts) != len(texts)
            or not all(type(s) is int and s >= 0 for s in starts)
        ):
            raise CorpusError(f"{loc}: field 'answer_starts': expected one offset >= 0 per answer ({len(texts)})")
        out[qid] = Answers(list(texts), list(starts) if starts is not None else None)
    return out
