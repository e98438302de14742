"""OnePagerRetriever: a tiny model trained on 1-Pager targets of a toy QA corpus answers its training questions
from the right passage; every answer is the passage's own text and every keyword occurs in it; the closed-book
reading decodes the same model without the passage; save / load keeps the answers."""

from __future__ import annotations

import pytest

from genret.dsi_pairs import Seq2SeqCollator
from genret.evaluation import evaluate
from genret.models import build_text_model
from genret.onepager_pairs import build_onepager_pairs
from genret.retrievers.onepager import OnePagerRetriever, OnePagerSearchConfig, evidence_checks
from genret.training import TrainConfig, train
from indexing.answers import Answers
from indexing.artifacts import ArtifactError
from indexing.columns import document_texts
from indexing.ngrams import NgramIndex
from indexing.tokenizer import load_tokenizer
from tests.genret.tiny_models import tiny_model_config

CORPUS = {
    "_id": [f"p{i}" for i in range(6)],
    "title": ["Broncos", "Panthers", "Amazon", "Rhine", "Oxygen", "Warsaw"],
    "text": [
        "The Denver Broncos won Super Bowl 50 in Santa Clara.",
        "The Carolina Panthers were coached by Ron Rivera.",
        "The Amazon rainforest spans nine nations of South America.",
        "The Rhine flows from the Swiss Alps to the North Sea.",
        "Oxygen was discovered by Carl Wilhelm Scheele in Uppsala.",
        "Warsaw is the capital of Poland and lies on the Vistula.",
    ],
}
QA = {
    "q0": ("Who won Super Bowl 50?", "p0", "Denver Broncos"),
    "q1": ("Who coached the Panthers?", "p1", "Ron Rivera"),
    "q2": ("How many nations does the Amazon span?", "p2", "nine"),
    "q3": ("Where does the Rhine end?", "p3", "North Sea"),
    "q4": ("Who discovered oxygen?", "p4", "Carl Wilhelm Scheele"),
    "q5": ("Which river flows through Warsaw?", "p5", "Vistula"),
}
SEP, ANS = 3, 4


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> OnePagerRetriever:
    tok = load_tokenizer("minilm")
    index = NgramIndex.build(CORPUS, tok, progress=False)
    texts = dict(zip(CORPUS["_id"], CORPUS["text"], strict=True))
    questions = {q: v[0] for q, v in QA.items()}
    qrels = {q: {v[1]: 1} for q, v in QA.items()}
    answers = {q: Answers([v[2]], [texts[v[1]].index(v[2])]) for q, v in QA.items()}
    pairs, stats = build_onepager_pairs(
        CORPUS, tok, index, (SEP, ANS), questions=questions, qrels=qrels, answers=answers, progress=False
    )
    assert stats.incomplete == 0 and stats.examples["answer"] == len(QA)
    pairs = pairs.select([i % len(pairs) for i in range(len(pairs) * 8)])  # enough rows for the steps
    model, hf_tokenizer = build_text_model(tiny_model_config("minilm-decoder"), tok, max_new_tokens=24)
    config = TrainConfig(
        output_dir=str(tmp_path_factory.mktemp("onepager-train")), max_steps=150, batch_size=16, lr=5e-3, log_every=50
    )
    result = train(model, pairs, Seq2SeqCollator(hf_tokenizer, 64), config, progress=False)
    assert result.loss < 0.5, result.history
    search = OnePagerSearchConfig(num_beams=4, batch_size=4, max_length=24)
    return OnePagerRetriever(result.model, hf_tokenizer, index, search, passages=document_texts(CORPUS))


def test_answers_come_from_the_right_passage_as_its_own_text(trained: OnePagerRetriever) -> None:
    questions = {q: v[0] for q, v in QA.items()}
    found = trained.answer(questions, progress=False)
    assert sum(found[q].doc_id == v[1] for q, v in QA.items()) >= 5
    assert sum(found[q].text == v[2] for q, v in QA.items()) >= 5  # the passage's own casing
    assert evidence_checks(trained, found) == {"answered": 1.0, "answer_in_evidence": 1.0, "keywords_in_evidence": 1.0}
    run = trained.search(questions, k=3, progress=False)
    assert evaluate(run, {q: {v[1]: 1} for q, v in QA.items()}, ("R@1",))["R@1"] >= 5 / 6


def test_closed_book_decodes_the_same_model_without_the_passage(trained: OnePagerRetriever) -> None:
    questions = {q: v[0] for q, v in QA.items()}
    closed = trained.answer(questions, closed_book=True, progress=False)
    assert all(a.text for a in closed.values())  # a free answer still ends with EOS


def test_save_and_load_keep_the_answers(trained: OnePagerRetriever, tmp_path) -> None:
    folder = trained.save_pretrained(tmp_path / "onepager")
    loaded = OnePagerRetriever.from_pretrained(folder, device="cpu")
    questions = {q: v[0] for q, v in QA.items()}
    before = trained.answer(questions, progress=False)
    after = loaded.answer(questions, progress=False)
    assert {q: a.as_dict() for q, a in before.items()} == {q: a.as_dict() for q, a in after.items()}
    (folder / "passages.json").write_text("[]")
    with pytest.raises(ArtifactError):
        OnePagerRetriever.from_pretrained(folder)


def test_a_copy_bonus_reorders_paths_but_the_constraint_still_holds(trained: OnePagerRetriever) -> None:
    import dataclasses

    config = dataclasses.replace(trained.config, copy_bonus=50.0)  # overwhelming: the question's words lead
    pushed = OnePagerRetriever(trained.model, trained.tokenizer, trained.index, config, passages=trained.passages)
    questions = {q: v[0] for q, v in QA.items()}
    found = pushed.answer(questions, progress=False)
    checks = evidence_checks(pushed, found)  # a bonus this large keeps beams writing question words: fewer answers
    assert checks["answered"] > 0 and checks["answer_in_evidence"] == checks["keywords_in_evidence"] == 1.0
    for q, answer in found.items():  # every keyword of an answered path is made of the question's tokens
        if answer.doc is None:
            continue
        asked = set(pushed.tokenizer(questions[q], add_special_tokens=False)["input_ids"])
        assert answer.keyword_ids and all(set(k) <= asked for k in answer.keyword_ids), (q, answer.path)
