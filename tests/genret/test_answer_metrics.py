"""Answer EM / F1 against hand-computed values and SQuAD's normalisation; answers.jsonl loading and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genret.answer_metrics import evaluate_answers, exact_match, normalize_answer, per_question, token_f1
from indexing.answers import load_answers
from indexing.qrels import CorpusError

SQUAD = Path(__file__).resolve().parents[3] / "shared" / "data" / "squad-dev"


def test_normalisation_is_squads() -> None:
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert normalize_answer("Theory") == "theory"  # articles only as whole words


def test_exact_match_and_f1_known_values() -> None:
    assert exact_match("the Broncos", "Broncos") == 1.0
    assert token_f1("Denver Broncos team", "Denver Broncos") == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert token_f1("Carolina", "Denver Broncos") == 0.0
    assert token_f1("the", "a") == 1.0  # both normalise to nothing
    assert token_f1("", "Denver") == 0.0


def test_max_over_gold_answers_and_missing_predictions_score_zero() -> None:
    gold = {"q1": ["Santa Clara, California", "Levi's Stadium"], "q2": ["1990"], "q3": ["x"]}
    scores = per_question({"q1": "Levi's Stadium", "q2": "in 1990 maybe"}, gold)
    assert scores["q1"] == {"EM": 1.0, "F1": 1.0}
    assert scores["q2"]["EM"] == 0.0 and scores["q2"]["F1"] == pytest.approx(2 * (1 / 3) / (1 / 3 + 1))
    assert scores["q3"] == {"EM": 0.0, "F1": 0.0}
    overall = evaluate_answers({"q1": "Levi's Stadium", "q2": "in 1990 maybe"}, gold)
    assert overall["questions"] == 3 and overall["EM"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="no gold answer"):
        per_question({}, {"q": []})


def test_load_answers_reads_and_refuses_with_line_and_field(tmp_path: Path) -> None:
    good = tmp_path / "answers.jsonl"
    good.write_text(json.dumps({"_id": "q1", "answers": ["a", "b"], "answer_starts": [0, 4]}) + "\n\n")
    answers = load_answers(tmp_path)
    assert answers["q1"].texts == ["a", "b"] and answers["q1"].starts == [0, 4]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"_id": "q1", "answers": ["a"]}) + "\n" + json.dumps({"_id": "q2", "answers": []}))
    with pytest.raises(CorpusError, match=r"bad.jsonl:2: field 'answers'"):
        load_answers(bad)
    bad.write_text(json.dumps({"_id": "q1", "answers": ["a"], "answer_starts": [1, 2]}))
    with pytest.raises(CorpusError, match=r"bad.jsonl:1: field 'answer_starts'"):
        load_answers(bad)
    with pytest.raises(FileNotFoundError, match="no answers file"):
        load_answers(tmp_path / "missing")


@pytest.mark.skipif(not SQUAD.is_dir(), reason="needs ../shared/data/squad-dev")
def test_squad_dev_answers_sit_at_their_offsets() -> None:
    from indexing.corpus import load_corpus, load_qrels

    answers = load_answers(SQUAD)
    assert len(answers) == 10570
    corpus = load_corpus(SQUAD, progress=False)
    texts = dict(zip(corpus["_id"], corpus["text"], strict=True))
    qrels = {**load_qrels(SQUAD, "train"), **load_qrels(SQUAD, "test")}
    for qid, gold in list(answers.items())[::50]:
        passage = texts[next(iter(qrels[qid]))]
        assert all(passage[s : s + len(t)] == t for t, s in zip(gold.texts, gold.starts, strict=True))
