"""TREC run files and evaluation against answers worked out by hand."""

from __future__ import annotations

import math
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genret.evaluation import (
    DEFAULT_MEASURES,
    RetrievalEvaluator,
    Run,
    evaluate,
    evaluate_per_query,
    format_metrics,
    read_trec_run,
    write_trec_run,
)

# ----------------------------------------------------------------------------- TREC files

ids = st.text(alphabet=string.ascii_letters + string.digits + "-_.:#/", min_size=1, max_size=6)
scores = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, 1.0, 1.0000001, 2.5, -0.0]),  # ties, and ties after rounding
)
runs = st.dictionaries(ids, st.dictionaries(ids, scores, min_size=1, max_size=8), max_size=5)


def rounded(run: Run) -> Run:
    return {qid: {d: float(f"{s:.6f}") for d, s in docs.items()} for qid, docs in run.items()}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(run=runs)
def test_trec_round_trip(tmp_path: Path, run: Run) -> None:
    path = tmp_path / "run.trec"
    write_trec_run(run, path)
    text = path.read_text()
    assert read_trec_run(path) == rounded(run)
    # Writing what was read gives the same bytes: the file is its own fixed point.
    write_trec_run(read_trec_run(path), path)
    assert path.read_text() == text
    # Ranks are 1..n per query, in score-descending, docid-ascending order of the written scores.
    by_query: dict[str, list[tuple[str, int, float]]] = {}
    for line in text.splitlines():
        qid, q0, docid, rank, score, tag = line.split()
        assert (q0, tag) == ("Q0", "genret")
        by_query.setdefault(qid, []).append((docid, int(rank), float(score)))
    for rows in by_query.values():
        assert [r for _, r, _ in rows] == list(range(1, len(rows) + 1))
        assert rows == sorted(rows, key=lambda row: (-row[2], row[0]))


def test_ranks_and_ties_are_deterministic(tmp_path: Path) -> None:
    a = {"q1": {"d3": 1.0, "d1": 1.0, "d2": 2.0, "d10": 1.0}}
    b = {"q1": {"d10": 1.0, "d2": 2.0, "d1": 1.0, "d3": 1.0}}  # same run, other insertion order
    write_trec_run(a, tmp_path / "a.trec", tag="bm25")
    write_trec_run(b, tmp_path / "b.trec", tag="bm25")
    assert (
        (tmp_path / "a.trec").read_text()
        == (tmp_path / "b.trec").read_text()
        == ("q1 Q0 d2 1 2.000000 bm25\nq1 Q0 d1 2 1.000000 bm25\nq1 Q0 d10 3 1.000000 bm25\nq1 Q0 d3 4 1.000000 bm25\n")
    )


def test_gzip_round_trip(tmp_path: Path) -> None:
    run = {"q1": {"a": 0.5, "b": 0.25}, "q2": {"c": 3.0}}
    write_trec_run(run, tmp_path / "run.trec.gz")
    assert read_trec_run(tmp_path / "run.trec.gz") == run


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("q1 Q0 d2 2 0.5", "expected 6 fields"),
        ("q1 Q0 d2 two 0.5 tag", "rank 'two' is not an integer"),
        ("q1 Q0 d2 2 high tag", "score 'high' is not a number"),
        ("q1 Q0 d1 2 0.5 tag", "appears twice"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, bad_line: str, message: str) -> None:
    path = tmp_path / "bad.trec"
    path.write_text("q1 Q0 d1 1 1.0 tag\n\n" + bad_line + "\n")
    with pytest.raises(ValueError, match=message) as err:
        read_trec_run(path)
    assert f"{path}:3" in str(err.value)


@pytest.mark.parametrize("run", [{"q 1": {"d": 1.0}}, {"q": {"d 1": 1.0}}, {"q": {"d": math.nan}}])
def test_unwritable_runs_are_refused(tmp_path: Path, run: Run) -> None:
    with pytest.raises(ValueError):
        write_trec_run(run, tmp_path / "run.trec")


# ----------------------------------------------------------------------------- evaluate


def test_single_relevant_document_at_rank_two() -> None:
    metrics = evaluate({"q": {"x": 3.0, "rel": 2.0, "y": 1.0}}, {"q": {"rel": 1}})
    assert list(metrics) == list(DEFAULT_MEASURES)
    assert metrics["nDCG@10"] == pytest.approx(1 / math.log2(3))
    assert metrics["R@1"] == 0.0
    assert metrics["R@10"] == metrics["R@100"] == 1.0
    assert metrics["RR@10"] == pytest.approx(0.5)


def test_graded_relevance_uses_the_qrels_levels() -> None:
    qrels = {"q": {"d1": 2, "d2": 1, "d3": 0}}
    run = {"q": {"d2": 3.0, "d1": 2.0, "d3": 1.0}}
    metrics = evaluate(run, qrels, ["nDCG@10", "R@1", "P@3", "R(rel=2)@1"])
    dcg = 1 / math.log2(2) + 2 / math.log2(3)  # trec_eval: linear gains
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    assert metrics["nDCG@10"] == pytest.approx(dcg / ideal)
    assert metrics["R@1"] == pytest.approx(0.5)  # d2 (level 1) counts as relevant
    assert metrics["P@3"] == pytest.approx(2 / 3)  # d3 (level 0) does not
    assert metrics["R(rel=2)@1"] == 0.0


@pytest.mark.parametrize(
    "run",
    [
        {"q1": {"d1": 1.0}},  # q2 missing
        {"q1": {"d1": 1.0}, "q2": {}},  # q2 answered with nothing
        {"q1": {"d1": 1.0}, "q3": {"d2": 1.0}},  # plus a query nobody judged
    ],
)
def test_missing_queries_count_as_zero(run: Run) -> None:
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    metrics = evaluate(run, qrels, [*DEFAULT_MEASURES, "AP", "Judged@10"])
    for name in (*DEFAULT_MEASURES, "AP"):
        assert metrics[name] == pytest.approx(0.5), name
    per_query = evaluate_per_query(run, qrels, ["nDCG@10"])
    assert per_query == {"q1": {"nDCG@10": 1.0}, "q2": {"nDCG@10": 0.0}}


def test_empty_run_scores_zero() -> None:
    assert evaluate({}, {"q1": {"d1": 1}}) == dict.fromkeys(DEFAULT_MEASURES, 0.0)


def test_per_query_agrees_with_aggregate_mean() -> None:
    qrels = {f"q{i}": {f"d{i}": 1, f"d{i + 1}": 2} for i in range(8)}
    run = {f"q{i}": {f"d{j}": float(20 - abs(i - j) - 0.1 * j) for j in range(12)} for i in range(0, 8, 2)}
    aggregate = evaluate(run, qrels)
    per_query = evaluate_per_query(run, qrels)
    assert set(per_query) == set(qrels)
    for name in DEFAULT_MEASURES:
        mean = sum(values[name] for values in per_query.values()) / len(qrels)
        assert aggregate[name] == pytest.approx(mean)
    assert 0 < aggregate["nDCG@10"] < 0.5  # half the queries are missing


def test_measure_names_are_kept_as_given_and_bad_names_refused() -> None:
    metrics = evaluate({"q": {"a": 1.0}}, {"q": {"a": 1}}, ["RR@10", "P@1", "nDCG@10"])
    assert list(metrics) == ["RR@10", "P@1", "nDCG@10"]
    with pytest.raises(ValueError, match="unknown measure 'nope@3'"):
        evaluate({}, {"q": {"a": 1}}, ["nope@3"])
    with pytest.raises(ValueError, match="no queries"):
        evaluate({"q": {"a": 1.0}}, {})


def test_format_metrics_aligns_columns() -> None:
    table = format_metrics({"nDCG@10": 0.66512, "R@1": 0.5, "RR@10": 1.0})
    lines = table.splitlines()
    assert lines[0].split() == ["measure", "value"]
    assert "nDCG@10  0.6651" in table and "R@1      0.5000" in table
    assert len({line.index(line.split()[-1]) for line in lines[2:]}) == 1  # values start in one column


# ----------------------------------------------------------------------------- evaluator


class FakeRetriever:
    """Returns a fixed ranking and records what it was asked."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.calls: list[tuple[dict[str, str], int]] = []

    def search(self, queries: dict[str, str], k: int = 100) -> Run:
        self.calls.append((dict(queries), k))
        return {qid: dict(list(self.run.get(qid, {}).items())[:k]) for qid in queries}

    def save_pretrained(self, path: str) -> None:  # pragma: no cover - protocol filler
        raise NotImplementedError

    @classmethod
    def from_pretrained(cls, path: str) -> FakeRetriever:  # pragma: no cover - protocol filler
        raise NotImplementedError


def test_evaluator_searches_judged_queries_and_reports_all_metrics() -> None:
    queries = {"q1": "one", "q2": "two", "unjudged": "three"}
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    retriever = FakeRetriever({"q1": {"a": 2.0, "b": 1.0}, "q2": {"a": 2.0, "b": 1.0}})
    evaluator = RetrievalEvaluator(queries, qrels, k=1)
    metrics = evaluator(retriever)
    assert retriever.calls == [({"q1": "one", "q2": "two"}, 1)]
    assert evaluator.primary_metric == "nDCG@10" and evaluator.greater_is_better
    assert set(metrics) == set(DEFAULT_MEASURES)
    assert metrics[evaluator.primary_metric] == pytest.approx(0.5)  # q2's b was cut by k=1
    assert evaluator.run == {"q1": {"a": 2.0}, "q2": {"a": 2.0}}


def test_evaluator_refuses_dangling_qrels_and_unknown_primary_metric() -> None:
    with pytest.raises(ValueError, match="no text"):
        RetrievalEvaluator({"q1": "x"}, {"q1": {"a": 1}, "q9": {"a": 1}})
    with pytest.raises(ValueError, match="primary_metric"):
        RetrievalEvaluator({"q1": "x"}, {"q1": {"a": 1}}, measures=["R@10"])
