"""OnePagerConstraint against a brute-force reading of the path (every step of random walks, several rows in
different modes at once), and inside ``generate`` with random and adversarial models: every finished output's
keywords and answer occur in its evidence passage."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LogitsProcessorList

from genret.constraints import ConstrainedLogitsProcessor, Constraint
from genret.constraints.onepager import OnePagerConstraint
from indexing.ngrams import NgramIndex
from tests.genret.constraints.test_constraints import EOS, MODEL_VOCAB, PAD, encoder_inputs, t5
from tests.genret.constraints.test_ngram_constraint import corpus

SEP, ANS = 2, MODEL_VOCAB - 1  # corpus tokens are 3 .. vocab + 2


def holds(doc: list[int], gram: list[int]) -> bool:
    m = len(gram)
    return any(doc[s : s + m] == gram for s in range(len(doc) - m + 1))


def read(seq: list[int]) -> tuple[list[list[int]], list[int], str]:
    """``(closed keywords, current n-gram, mode)`` of a token sequence: mode keyword / answer / done."""
    keywords, current, mode = [], [], "keyword"
    for t in seq:
        if mode == "done":
            raise AssertionError("tokens after the end")
        if t == SEP:
            keywords.append(current)
            current = []
        elif t == ANS:
            mode, current = "answer", []
        elif t == EOS:
            mode = "done"
        else:
            current.append(t)
    return keywords, current, mode


def reference(docs: list[list[int]], seq: list[int], max_candidates: int, answers: bool, free: bool) -> set[int]:
    """What may follow ``seq`` (a path the rules allowed so far), read straight from the documents."""
    keywords, current, mode = read(seq)
    if mode == "done":
        return {PAD}
    candidates = [d for d in range(len(docs)) if all(holds(docs[d], k) for k in keywords)]
    m = len(current)
    allowed = {docs[d][s + m] for d in candidates for s in range(len(docs[d]) - m) if docs[d][s : s + m] == current}
    if mode == "answer" and free:  # closed book: any token of the corpus
        allowed = {t for doc in docs for t in doc}
    if mode == "keyword" and current and not all(holds(docs[d], current) for d in candidates):
        allowed.add(SEP)  # a keyword closes only where it narrows the candidates
    if mode == "keyword" and not current and len(candidates) <= max_candidates:
        allowed.add(ANS if answers else EOS)
    if mode == "answer" and current:
        allowed.add(EOS)
    return allowed or {PAD}


def allowed(row: torch.Tensor) -> set[int]:
    return set(torch.isfinite(row).nonzero().flatten().tolist())


@pytest.mark.parametrize("backend", ["sa", "fm"])
@pytest.mark.parametrize(
    ("max_candidates", "answers", "free"), [(1, True, False), (4, True, False), (3, False, False), (2, True, True)]
)
def test_every_step_allows_exactly_what_the_documents_allow(
    backend: str, max_candidates: int, answers: bool, free: bool
) -> None:
    docs = corpus(1, n_docs=25, vocab=10)
    index = NgramIndex.from_token_lists(docs, backend=backend, shard_tokens=150)
    constraint = OnePagerConstraint(
        index, SEP, ANS, EOS, PAD, max_candidates=max_candidates, answers=answers, free_answers=free
    )
    assert isinstance(constraint, Constraint)
    rng = np.random.default_rng(max_candidates)
    for _ in range(6):
        rows = 8
        state = constraint.start(rows)
        seqs: list[list[int]] = [[] for _ in range(rows)]
        for _step in range(14):
            scores = torch.zeros(rows, MODEL_VOCAB)
            masked = constraint.mask(state, scores)
            tokens = []
            for i in range(rows):
                expected = reference(docs, seqs[i], max_candidates, answers, free)
                assert allowed(masked[i]) == expected, seqs[i]
                options = sorted(expected)
                # mostly the marker when it is allowed, so that paths finish
                markers = [t for t in options if t in (SEP, ANS, EOS)]
                pick = markers[0] if markers and rng.random() < 0.35 else options[rng.integers(len(options))]
                tokens.append(pick)
            state = constraint.advance(state, torch.tensor(tokens))
            for i, t in enumerate(tokens):
                if t != PAD:
                    seqs[i].append(t)


def test_a_token_the_mask_refuses_kills_the_row() -> None:
    docs = corpus(2, n_docs=10)
    constraint = OnePagerConstraint(NgramIndex.from_token_lists(docs), SEP, ANS, EOS, PAD, max_candidates=2)
    state = constraint.start(4)
    absent = 3 + 30  # no document holds it
    state = constraint.advance(state, torch.tensor([absent, SEP, EOS, -1]))  # SEP closes nothing yet
    masked = constraint.mask(state, torch.zeros(4, MODEL_VOCAB))
    assert all(allowed(masked[i]) == {PAD} for i in range(4))


def test_marker_ids_that_occur_in_the_corpus_are_refused() -> None:
    index = NgramIndex.from_token_lists([[3, 4, SEP]])
    with pytest.raises(ValueError, match="also occur in the corpus"):
        OnePagerConstraint(index, SEP, ANS, EOS, PAD)
    with pytest.raises(ValueError, match="three different"):
        OnePagerConstraint(index, 5, 5, EOS, PAD)


@pytest.mark.parametrize("backend", ["sa", "fm"])
@pytest.mark.parametrize(
    "bias",
    [None, {SEP: 1.0, ANS: 3.0, EOS: 3.0}, {40: 9.0, 50: 9.0, EOS: 6.0}],  # random; markers pushed; absent tokens
    ids=["random", "markers", "absent"],
)
def test_generate_keeps_every_keyword_and_answer_inside_the_evidence(backend: str, bias: dict | None) -> None:
    docs = corpus(3, n_docs=40, vocab=14)
    index = NgramIndex.from_token_lists(docs, backend=backend)
    constraint = OnePagerConstraint(index, SEP, ANS, EOS, PAD, max_candidates=2)
    beams = 4
    processor = ConstrainedLogitsProcessor(constraint, num_beams=beams)
    model = t5(5, bias)
    if bias and ANS in bias:  # the markers dominate: scale the rest of the head down
        with torch.no_grad():
            model.lm_head.weight.mul_(0.001)
    with torch.no_grad():
        out = model.generate(
            **encoder_inputs(9, 3),
            max_new_tokens=18,
            num_beams=beams,
            num_return_sequences=beams,
            do_sample=False,
            length_penalty=0.0,
            logits_processor=LogitsProcessorList([processor]),
        )
    sequences = [row[1:] for row in out.tolist()]
    evidence = constraint.evidence(sequences)
    finished = 0
    for seq, docs_found in zip(sequences, evidence, strict=True):
        seq = seq[: seq.index(EOS) + 1] if EOS in seq else seq
        if PAD in seq:  # the row got stuck (a keyword every candidate holds, at their ends): no evidence claimed
            assert docs_found.tolist() == [], seq
            continue
        keywords, current, mode = read(seq)
        expected = [d for d in range(len(docs)) if all(holds(docs[d], k) for k in keywords) and holds(docs[d], current)]
        assert docs_found.tolist() == expected and expected, seq
        if mode == "done":
            finished += 1
            assert current and len(expected) <= 2  # a non-empty answer among at most max_candidates documents
    if bias and ANS in bias:  # a model that likes the markers finishes its answers
        assert finished, "no output finished its answer"
