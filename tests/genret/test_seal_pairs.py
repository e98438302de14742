"""SEAL training pairs: every target is an n-gram the index holds; spans follow the query; counts per task."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from genret.seal_pairs import build_seal_pairs, overlap_spans
from indexing.corpus import load_beir
from indexing.ngrams import NgramIndex
from indexing.tokenizer import load_tokenizer

TINY = Path(__file__).resolve().parents[1] / "fixtures" / "tiny_beir"
MARKERS = (1, 2)


@pytest.fixture(scope="module")
def data():
    return load_beir(TINY, split="test")


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("minilm")


def test_overlap_spans_prefer_windows_that_share_tokens_with_the_query() -> None:
    doc = [5, 6, 7, 8, 9, 10, 11, 12]
    rng = np.random.default_rng(0)
    spans = overlap_spans(doc, {9, 10, 11}, 3, 50, temperature=0.01, rng=rng)
    assert all(s == [9, 10, 11] for s in spans)
    spans = overlap_spans(doc, {9, 10, 11}, 3, 400, temperature=1.0, rng=rng)
    seen = Counter(tuple(s) for s in spans)
    assert seen[(9, 10, 11)] > seen[(8, 9, 10)] > seen[(6, 7, 8)]  # 3 > 2 > 0 tokens shared
    assert all(tuple(s) in {tuple(doc[i : i + 3]) for i in range(6)} for s in spans)
    assert overlap_spans([4, 5], {4}, 10, 3, 1.0, rng) == [[4, 5]] * 3  # a short document is one window
    assert overlap_spans([], {4}, 10, 3, 1.0, rng) == []


def test_long_titles_are_cut_to_title_tokens_and_stay_ngrams_of_the_index(data, tokenizer) -> None:
    pairs = build_seal_pairs(
        data.corpus,
        tokenizer,
        queries=data.queries,
        qrels=data.qrels,
        title_markers=MARKERS,
        spans_per_query=1,
        titles_per_query=1,
        title_tokens=2,
        progress=False,
    )
    index = NgramIndex.build(data.corpus, tokenizer, title_markers=MARKERS, progress=False)
    cut = kept = 0
    for target, task, doc in zip(pairs["target_ids"], pairs["task"], pairs["doc"], strict=True):
        if task != "retrieval_title":
            continue
        title = tokenizer.encode(data.corpus[doc]["title"])
        whole = len(title) <= 2
        assert target[:-1] == ([MARKERS[0], *title, MARKERS[1]] if whole else [MARKERS[0], *title[:2]])
        cut, kept = cut + (not whole), kept + whole
        assert index.count(index.find([target[:-1]]))[0] > 0
    assert cut and kept  # tiny_beir has titles of both kinds
    with pytest.raises(ValueError, match="title_tokens"):
        build_seal_pairs(data.corpus, tokenizer, unsupervised_per_doc=1, title_tokens=0, progress=False)


def test_supervised_pairs_are_ngrams_of_the_index(data, tokenizer) -> None:
    pairs = build_seal_pairs(
        data.corpus,
        tokenizer,
        queries=data.queries,
        qrels=data.qrels,
        title_markers=MARKERS,
        spans_per_query=4,
        titles_per_query=2,
        progress=False,
    )
    titled = {d for d, title in zip(data.corpus["_id"], data.corpus["title"], strict=True) if title}
    judged = [d for rel in data.qrels.values() for d, r in rel.items() if r > 0]
    assert len(titled) < len(data.corpus)  # two tiny_beir documents have no title: no title pairs for them
    tasks = Counter(pairs["task"])
    assert tasks == {"retrieval": 4 * len(judged), "retrieval_title": 2 * len([d for d in judged if d in titled])}
    index = NgramIndex.build(data.corpus, tokenizer, title_markers=MARKERS, progress=False)
    targets = [ids[:-1] for ids in pairs["target_ids"]]
    assert all(ids[-1] == tokenizer.eos_token_id for ids in pairs["target_ids"])
    counts = index.count(index.find(targets))
    assert (counts > 0).all()  # every target occurs in the corpus
    doc_ids = list(data.corpus["_id"])
    for source, target, task, doc in zip(pairs["source"], targets, pairs["task"], pairs["doc"], strict=True):
        assert data.qrels[next(q for q, text in data.queries.items() if text == source)][doc_ids[doc]] > 0
        if task == "retrieval_title":
            assert target == [MARKERS[0], *tokenizer.encode(data.corpus[doc]["title"]), MARKERS[1]]
        else:
            located = {int(d) for d in index.locate(index.find([target]), 100)[0][0]}
            assert doc in located and len(target) <= 10


def test_unsupervised_pairs_train_a_corpus_without_queries(data, tokenizer) -> None:
    pairs = build_seal_pairs(data.corpus, tokenizer, unsupervised_per_doc=3, span_tokens=6, progress=False)
    n = len(data.corpus)
    assert Counter(pairs["task"]) == {"unsupervised": 3 * n}  # no markers: spans only, no titles
    again = build_seal_pairs(data.corpus, tokenizer, unsupervised_per_doc=3, span_tokens=6, progress=False)
    assert pairs["source"] == again["source"] and pairs["target_ids"] == again["target_ids"]
    titled = build_seal_pairs(
        data.corpus,
        tokenizer,
        unsupervised_per_doc=2,
        title_markers=MARKERS,
        task_weights={"unsupervised": 0.5},
        progress=False,
    )
    with_title = sum(1 for title in data.corpus["title"] if title)
    assert len(titled) == round(0.5 * 2 * (n + with_title))
    for source, ids, doc in zip(pairs["source"], pairs["target_ids"], pairs["doc"], strict=True):
        text = tokenizer.encode(data.corpus[doc]["text"])
        assert any(text[i : i + len(ids) - 1] == ids[:-1] for i in range(len(text)))
        assert source.strip()


def test_errors(data, tokenizer) -> None:
    with pytest.raises(ValueError, match="no training pairs"):
        build_seal_pairs(data.corpus, tokenizer, progress=False)
    with pytest.raises(ValueError, match="go together"):
        build_seal_pairs(data.corpus, tokenizer, queries=data.queries, progress=False)
    with pytest.raises(ValueError, match="unknown task"):
        build_seal_pairs(data.corpus, tokenizer, unsupervised_per_doc=1, task_weights={"indexing": 1}, progress=False)
    with pytest.raises(ValueError, match="unknown queries or documents"):
        build_seal_pairs(data.corpus, tokenizer, queries=data.queries, qrels={"q1": {"nope": 1}}, progress=False)


def test_pseudo_query_pairs_are_spans_of_their_judged_passages(data, tokenizer) -> None:
    """The pseudo_query task: spans_per_pseudo_query overlap-sampled spans of every passage a pseudo-query is judged
    relevant to, each an n-gram of that passage; no title pairs; the training queries' tasks as before."""
    doc_ids = list(data.corpus["_id"])
    pq = {f"p{i}": " ".join(data.corpus[i]["text"].split()[:3]) for i in range(4)}
    pq_rel = {f"p{i}": {doc_ids[i]: 1, doc_ids[(i + 1) % len(doc_ids)]: 1} for i in range(4)}
    pairs = build_seal_pairs(
        data.corpus,
        tokenizer,
        queries=data.queries,
        qrels=data.qrels,
        title_markers=MARKERS,
        spans_per_query=1,
        titles_per_query=1,
        pseudo_queries=pq,
        pseudo_qrels=pq_rel,
        spans_per_pseudo_query=3,
        progress=False,
    )
    judged = [d for rel in data.qrels.values() for d, r in rel.items() if r > 0]
    tasks = Counter(pairs["task"])
    assert tasks["pseudo_query"] == 3 * 2 * 4 and tasks["retrieval"] == len(judged)
    index = NgramIndex.build(data.corpus, tokenizer, title_markers=MARKERS, progress=False)
    for source, ids, task, doc in zip(pairs["source"], pairs["target_ids"], pairs["task"], pairs["doc"], strict=True):
        if task != "pseudo_query":
            continue
        qid = next(q for q, text in pq.items() if text == source)
        assert doc_ids[doc] in pq_rel[qid]
        located = {int(d) for d in index.locate(index.find([ids[:-1]]), 100)[0][0]}
        assert doc in located
    with pytest.raises(ValueError, match="go together"):
        build_seal_pairs(data.corpus, tokenizer, pseudo_queries=pq, progress=False)
