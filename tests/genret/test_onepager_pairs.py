"""1-Pager's path rule and targets: every target is a path the constraint accepts, ending at its own passage."""

from __future__ import annotations

import pytest
import torch

from genret.constraints.onepager import DEAD, OnePagerConstraint
from genret.onepager_pairs import PassageWords, build_onepager_pairs, keyword_path, question_words
from indexing.answers import Answers
from indexing.ngrams import NgramIndex
from indexing.tokenizer import load_tokenizer

SEP, ANS = 3, 4  # [unused2], [unused3] of the MiniLM vocabulary

CORPUS = {
    "_id": ["p0", "p1", "p2", "p3", "p4"],
    "title": ["Super Bowl", "Super Bowl", "Amazon", "Amazon", "Amazon"],
    "text": [
        "The Denver Broncos won Super Bowl 50 at Levi's Stadium in Santa Clara.",
        "The Carolina Panthers lost Super Bowl 50 after a record season.",
        "The Amazon rainforest covers much of the Amazon basin of South America.",
        "The rainforest is home to millions of species of insects and plants.",
        "The rainforest is home to millions of species of insects and plants.",  # a duplicate: never unique
    ],
}


def setup(max_candidates: int = 1):
    tokenizer = load_tokenizer("minilm")
    index = NgramIndex.build(CORPUS, tokenizer, progress=False)
    return tokenizer, index


def follow(constraint: OnePagerConstraint, target: list[int]) -> torch.Tensor:
    state = constraint.start(1)
    for token in target:
        state = constraint.advance(state, torch.tensor([token]))
        if token != constraint.eos_token_id:
            assert int(state[0, 0]) != DEAD, target
    return state


def test_paths_prefer_question_words_then_rare_words() -> None:
    tokenizer, index = setup()
    words = PassageWords([" ".join(p) for p in zip(CORPUS["title"], CORPUS["text"], strict=True)], tokenizer)
    asked = question_words(tokenizer, ["Where did the Denver team play?"])[0]
    ranked = words.ranked(0, asked)
    assert tokenizer.decode(list(ranked[0])) == "denver"  # the question's word comes first
    assert all(words.is_keyword(w) for w in ranked[:5]) and (tokenizer.encode("the")[0],) not in ranked
    path, complete = keyword_path(index, ranked, max_candidates=1, max_keywords=4)
    assert complete and [tokenizer.decode(list(w)) for w in path] == ["denver"]
    duplicate, complete = keyword_path(index, words.ranked(4, set()), max_candidates=1, max_keywords=4)
    assert not complete  # p3 and p4 hold the same text


def test_every_target_is_a_path_the_constraint_accepts_and_ends_at_its_passage() -> None:
    tokenizer, index = setup()
    questions = {"q0": "Who won Super Bowl 50?", "q1": "Where is the Amazon rainforest?", "q2": "Who lost?"}
    qrels = {"q0": {"p0": 1}, "q1": {"p2": 1}, "q2": {"p1": 1}}
    answers = {
        "q0": Answers(["Denver Broncos"], [4]),
        "q1": Answers(["South America"], [CORPUS["text"][2].index("South America")]),
        "q2": Answers(["Carolina Panthers"], None),  # no offset: found by its tokens
    }
    pairs, stats = build_onepager_pairs(
        CORPUS, tokenizer, index, (SEP, ANS), questions=questions, qrels=qrels, answers=answers, progress=False
    )
    constraint = OnePagerConstraint(index, SEP, ANS, tokenizer.eos_token_id, 0, max_candidates=1)
    assert stats.examples["answer"] == 3 and stats.unaligned_answers == 0
    assert stats.incomplete == 2  # the two duplicate passages' indexing paths
    for row in pairs:
        target = row["target_ids"]
        follow(constraint, target)
        evidence = constraint.evidence([target])[0].tolist()
        assert row["doc"] in evidence, row
        assert evidence == [row["doc"]] or (row["task"] == "indexing" and row["doc"] in (3, 4)), row  # duplicates
        if row["task"] == "answer":
            answer = target[target.index(ANS) + 1 : -1]
            assert tokenizer.decode(answer) in {"denver broncos", "south america", "carolina panthers"}
    assert {r["task"] for r in pairs} == {"answer", "indexing"}


def test_cloze_targets_answer_from_their_own_passage() -> None:
    from genret.cloze_questions import cloze_questions

    tokenizer, index = setup()
    cloze = cloze_questions(CORPUS, per_doc=2, seed=0)
    pairs, stats = build_onepager_pairs(
        CORPUS, tokenizer, index, (SEP, ANS), answers={}, cloze=cloze, index_passages=False, progress=False
    )
    constraint = OnePagerConstraint(index, SEP, ANS, tokenizer.eos_token_id, 0, max_candidates=1)
    complete = [q for q, rel in cloze[1].items() if next(iter(rel)) in ("p0", "p1", "p2")]  # p3 / p4: duplicates
    assert stats.examples["cloze"] == len(complete) >= 3
    for row in pairs:
        target = row["target_ids"]
        follow(constraint, target)
        assert constraint.evidence([target])[0].tolist() == [row["doc"]]
        answer = tokenizer.decode(target[target.index(ANS) + 1 : -1])
        gold = {a.texts[0].lower() for q, a in cloze[2].items() if cloze[1][q] == {CORPUS["_id"][row["doc"]]: 1}}
        assert answer in gold, (answer, gold)
    with pytest.raises(ValueError, match="cloze questions train answers"):
        build_onepager_pairs(CORPUS, tokenizer, index, (SEP, ANS), cloze=cloze, progress=False)
