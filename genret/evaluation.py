"""ir-measures evaluation of runs against qrels, and the evaluator that searches a fixed query set.

Runs and qrels are the plain dicts of :mod:`indexing.trec` (re-exported here with its TREC run
file reader and writer). Every query in the qrels counts: one the run misses
(or answers with nothing) scores the measure's default, 0, so a retriever cannot look better by
dropping hard queries. Queries in the run but not in the qrels are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import ir_measures

from indexing.trec import Qrels, Run, read_trec_run, write_trec_run

if TYPE_CHECKING:
    from genret.retrievers.base import Retriever

DEFAULT_MEASURES: tuple[str, ...] = ("nDCG@10", "R@1", "R@10", "R@100", "RR@10")

MeasureLike = Any  # a measure name such as "nDCG@10" or an ir_measures Measure object

__all__ = [
    "DEFAULT_MEASURES",
    "Qrels",
    "RetrievalEvaluator",
    "Run",
    "evaluate",
    "evaluate_per_query",
    "format_metrics",
    "read_trec_run",
    "write_trec_run",
]


# --------------------------------------------------------------------------- measures


def parse_measures(measures: Iterable[MeasureLike]) -> list[tuple[str, Any]]:
    """``(name as given, Measure)`` pairs; a bad name raises ``ValueError`` saying which."""
    if isinstance(measures, str):
        measures = [measures]
    parsed = []
    for measure in measures:
        if isinstance(measure, str):
            try:
                parsed.append((measure, ir_measures.parse_measure(measure)))
            except (NameError, ValueError, TypeError, SyntaxError) as err:
                raise ValueError(
                    f"unknown measure {measure!r} (ir-measures names such as 'nDCG@10', "
                    f"'R@100', 'RR@10', 'AP', 'P@5'): {err}"
                ) from None
        else:
            parsed.append((str(measure), measure))
    if not parsed:
        raise ValueError("no measures given")
    return parsed


def _per_query(
    run: Mapping[str, Mapping[str, float]], qrels: Mapping[str, Mapping[str, int]], parsed: list[tuple[str, Any]]
) -> dict[str, dict[str, float]]:
    # Only non-empty entries for judged queries go to ir-measures: some providers divide by the
    # number of retrieved documents, and queries without judgments are not evaluated anyway.
    clean_run = {qid: {d: float(s) for d, s in docs.items()} for qid, docs in run.items() if qid in qrels and docs}
    clean_qrels = {qid: {d: int(r) for d, r in docs.items()} for qid, docs in qrels.items()}
    unique = list(dict.fromkeys(m for _, m in parsed))
    values: dict[str, dict[Any, float]] = {qid: {} for qid in clean_qrels}
    if clean_run and clean_qrels:
        for metric in ir_measures.iter_calc(unique, clean_qrels, clean_run):
            if metric.query_id in values:
                values[metric.query_id][metric.measure] = float(metric.value)
    # Queries the run misses (or answers with nothing) count with the measure's default (0),
    # whatever the installed ir-measures version does with them.
    return {
        qid: {name: got.get(measure, float(measure.DEFAULT)) for name, measure in parsed} for qid, got in values.items()
    }


def evaluate_per_query(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    measures: Iterable[MeasureLike] = DEFAULT_MEASURES,
) -> dict[str, dict[str, float]]:
    """``{qid: {measure name: value}}`` for every query in ``qrels`` (missing from the run: 0)."""
    return _per_query(run, qrels, parse_measures(measures))


def evaluate(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    measures: Iterable[MeasureLike] = DEFAULT_MEASURES,
) -> dict[str, float]:
    """Aggregate ir-measures values over every query in ``qrels``; keys are the measure names as given.

    Relevance levels are the qrels' own: graded gains for nDCG, ``relevance >= 1`` counts as
    relevant for binary measures (R, RR, P, AP). A judged query the run misses scores 0.
    """
    parsed = parse_measures(measures)
    return _aggregate(_per_query(run, qrels, parsed), parsed)


def _aggregate(per_query: dict[str, dict[str, float]], parsed: list[tuple[str, Any]]) -> dict[str, float]:
    if not per_query:
        raise ValueError("the qrels hold no queries; nothing to evaluate")
    result = {}
    for name, measure in parsed:
        aggregator = measure.aggregator()
        for values in per_query.values():
            aggregator.add(values[name])
        result[name] = float(aggregator.result())
    return result


def format_metrics(metrics: Mapping[str, float], digits: int = 4) -> str:
    """A small aligned two-column table, one measure per line."""
    if not metrics:
        return "(no metrics)"
    width = max(len("measure"), *(len(name) for name in metrics))
    lines = [f"{'measure':<{width}}  value", f"{'-' * width}  {'-' * (digits + 2)}"]
    lines += [f"{name:<{width}}  {value:.{digits}f}" for name, value in metrics.items()]
    return "\n".join(lines)


# --------------------------------------------------------------------------- evaluator


class RetrievalEvaluator:
    """Search a fixed query set with a retriever and evaluate the run (sentence-transformers style).

    >>> evaluator = RetrievalEvaluator(data.queries, data.qrels)          # doctest: +SKIP
    >>> metrics = evaluator(retriever)                                    # doctest: +SKIP
    >>> metrics[evaluator.primary_metric]                                 # doctest: +SKIP

    Only judged queries are searched. Every judged query must have a text: a dangling qrels entry
    is a data error and is reported rather than silently scored 0. The last run is kept in
    ``self.run`` (e.g. to write it with :func:`write_trec_run`).
    """

    greater_is_better = True

    def __init__(
        self,
        queries: Mapping[str, str],
        qrels: Mapping[str, Mapping[str, int]],
        measures: Sequence[MeasureLike] = DEFAULT_MEASURES,
        k: int = 100,
        primary_metric: str = "nDCG@10",
    ) -> None:
        parsed = parse_measures(measures)
        names = [name for name, _ in parsed]
        if primary_metric not in names:
            raise ValueError(f"primary_metric {primary_metric!r} is not among the measures {names}")
        missing = sorted(qid for qid in qrels if qid not in queries)
        if missing:
            raise ValueError(f"{len(missing)} judged queries have no text, e.g. {missing[:5]}")
        if not qrels:
            raise ValueError("the qrels hold no queries; nothing to evaluate")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.queries = {qid: queries[qid] for qid in qrels}
        self.qrels = {qid: dict(docs) for qid, docs in qrels.items()}
        self.measures = tuple(names)
        self._parsed = parsed
        self.k = k
        self.primary_metric = primary_metric
        self.run: Run | None = None

    def __call__(self, retriever: Retriever) -> dict[str, float]:
        """Search the judged queries (top ``k``) and return every measure, ``primary_metric`` included."""
        self.run = retriever.search(self.queries, k=self.k)
        return _aggregate(_per_query(self.run, self.qrels, self._parsed), self._parsed)

    def __repr__(self) -> str:
        return (
            f"RetrievalEvaluator({len(self.queries)} queries, measures={list(self.measures)}, "
            f"k={self.k}, primary_metric={self.primary_metric!r})"
        )
