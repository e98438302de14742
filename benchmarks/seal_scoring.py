"""Benchmark: SEAL's scoring (``genret.retrievers.seal_scoring``, numba kernels) against its pure-Python reference.

    OMP_NUM_THREADS=1 python benchmarks/seal_scoring.py                  # scifact, its 300 test queries
    OMP_NUM_THREADS=1 python benchmarks/seal_scoring.py --json benchmarks/results/seal_scoring_cpu.json
    python benchmarks/seal_scoring.py --data tests/fixtures/tiny_beir --reps 1    # a smoke run

Inputs: the no-model check's n-grams (``genret.retrievers.seal_check.check_ngrams``): for each test
query of ``--data`` (a BEIR folder), every distinct n-gram of 1 to ``--max-n`` MiniLM tokens of the
query that occurs in the corpus, each with the log-probability ``--logprob``. Index:
``NgramIndex.build(corpus, load_tokenizer("minilm"), backend, title_markers=(1, 2))``, as the
seal-scifact recipe builds it (``--no-markers``: without title markers).

Timed: ``score_documents`` with SEAL's defaults (``SealScoring()``: first stage over the n-grams
occurring at most 1500 times, then intersective rescoring of the best 1500 documents), once per
query, all queries in a row, by the reference (``benchmarks/seal_scoring_reference.py``: the
pure-Python code the kernels replaced) and by the library, in the same process and on the same
index; ``--reps`` repetitions interleaved, the order of the two swapped every repetition, after
one untimed call of each (numba kernels compiled or loaded from the cache). Also timed: the
library with ``rescore=False`` (the first stage alone). Per case, medians over the repetitions of
wall time per query (``perf_counter``) and of the thread's CPU time per query (``thread_time``:
what the work cost when the shared machine descheduled the process), with min / max;
``ratio_reference_over_new`` = the ratio of the wall medians (``cpu_ratio``: of the CPU medians).

Checks (the script raises after writing the JSON if one fails): for every query the two give the
same documents in the same order and ``np.allclose`` scores (the largest absolute difference is
reported); both runs' nDCG@10 (``genret.evaluation.evaluate``, top 100) is reported.
Machine: CPU, cores and load average (before and after) go to the JSON; numba runs on the calling
thread. Nothing of a corpus reaches the JSON, only numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ngram_build import machine_info  # noqa: E402
from seal_scoring_reference import score_documents as reference_score_documents  # noqa: E402

from genret.evaluation import evaluate  # noqa: E402
from genret.retrievers.seal_check import check_ngrams  # noqa: E402
from genret.retrievers.seal_scoring import SealScoring, score_documents  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "data" / "scifact"


def timed(
    fn: Any, inputs: list[tuple[str, list[tuple[int, ...]], np.ndarray]], index: Any, config: SealScoring
) -> tuple[float, float, dict[str, list[tuple[int, float]]]]:
    """(wall s, thread CPU s, {qid: ranking}) of scoring every query once."""
    out = {}
    wall, cpu = time.perf_counter(), time.thread_time()
    for qid, ngrams, logprobs in inputs:
        out[qid] = fn(ngrams, logprobs, index, config)
    return time.perf_counter() - wall, time.thread_time() - cpu, out


def summary(walls: list[float], cpus: list[float], n: int) -> dict[str, Any]:
    ms = [1e3 * w / n for w in walls]
    cpu = [1e3 * c / n for c in cpus]
    return {
        "median_ms_per_query": statistics.median(ms),
        "min_ms_per_query": min(ms),
        "max_ms_per_query": max(ms),
        "cpu_median_ms_per_query": statistics.median(cpu),
        "samples_ms_per_query": ms,
    }


def compare(new: dict[str, list[tuple[int, float]]], ref: dict[str, list[tuple[int, float]]]) -> dict[str, Any]:
    """Same documents in the same order, and close scores, for every query."""
    same_order = close = 0
    max_diff = 0.0
    for qid, expected in ref.items():
        got = new[qid]
        if [d for d, _ in got] == [d for d, _ in expected]:
            same_order += 1
            a, b = np.array([s for _, s in got]), np.array([s for _, s in expected])
            close += bool(np.allclose(a, b))
            max_diff = max(max_diff, float(np.abs(a - b).max(initial=0.0)))
    return {
        "queries": len(ref),
        "same_rankings": same_order,
        "close_scores": close,
        "max_abs_score_diff": max_diff,
        "identical_rankings": same_order == close == len(ref),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(SCIFACT), help="BEIR folder (default ../shared/data/scifact)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--queries", type=int, default=None, help="only the first N queries (default: all)")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per case (interleaved)")
    parser.add_argument("--max-n", type=int, default=4, help="longest query n-gram, in tokens")
    parser.add_argument("--logprob", type=float, default=-1.0, help="the one log-probability of every n-gram")
    parser.add_argument("--backend", default="sa", choices=["sa", "fm"])
    parser.add_argument("--no-markers", action="store_true", help="index without title markers")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--note", default=f"shared machine ({os.cpu_count()} cores, other jobs running)")
    args = parser.parse_args(argv)

    from indexing.corpus import load_beir
    from indexing.ngrams import NgramIndex
    from indexing.tokenizer import load_tokenizer

    def log(msg: str) -> None:
        print(msg, flush=True)

    load_before = list(os.getloadavg())
    data = load_beir(args.data, split=args.split)
    queries = dict(list(data.queries.items())[: args.queries])
    tokenizer = load_tokenizer("minilm")
    markers = None if args.no_markers else (1, 2)
    t = time.perf_counter()
    index = NgramIndex.build(data.corpus, tokenizer, backend=args.backend, title_markers=markers, progress=False)
    build_s = time.perf_counter() - t
    found = check_ngrams(index, tokenizer, queries, args.max_n)
    inputs = [(qid, g, np.full(len(g), args.logprob)) for qid, g in found.items()]
    log(
        f"{Path(args.data).name}: {index.n_docs} documents, {index.n_tokens:,} tokens (index built in "
        f"{build_s:.1f} s), {len(inputs)} queries, {np.mean([len(g) for g in found.values()]):.1f} n-grams per query"
    )

    config = SealScoring()
    cases = {
        "reference": (reference_score_documents, config),
        "new": (score_documents, config),
        "new_first_stage_only": (score_documents, SealScoring(rescore=False)),
    }
    small = inputs[:1]
    for fn, cfg in cases.values():  # untimed: numba compilation or cache load
        timed(fn, small, index, cfg)
    walls: dict[str, list[float]] = {name: [] for name in cases}
    cpus: dict[str, list[float]] = {name: [] for name in cases}
    outputs: dict[str, dict[str, list[tuple[int, float]]]] = {}
    names = list(cases)
    for rep in range(args.reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            fn, cfg = cases[name]
            wall, cpu, out = timed(fn, inputs, index, cfg)
            walls[name].append(wall)
            cpus[name].append(cpu)
            outputs.setdefault(name, out)
        log(
            f"  rep {rep + 1}/{args.reps}: "
            + ", ".join(f"{name} {1e3 * walls[name][-1] / len(inputs):.2f} ms/query" for name in names)
        )
    n = len(inputs)
    results = {name: summary(walls[name], cpus[name], n) for name in cases}
    checks = compare(outputs["new"], outputs["reference"])
    rescored = [len(r) for r in outputs["new"].values()]
    ndcg = {}
    for name in ("reference", "new"):
        run = {qid: {index.doc_ids[d]: s for d, s in ranked[:100]} for qid, ranked in outputs[name].items()}
        ndcg[name] = evaluate(run, data.qrels, ("nDCG@10",))["nDCG@10"]
    ratio = results["reference"]["median_ms_per_query"] / results["new"]["median_ms_per_query"]
    cpu_ratio = results["reference"]["cpu_median_ms_per_query"] / results["new"]["cpu_median_ms_per_query"]
    machine = machine_info(args.note)
    machine["load_average_1_5_15_before"] = load_before
    report = {
        "benchmark": "seal_scoring",
        "machine": machine,
        "settings": {k: v for k, v in vars(args).items() if k != "json"}
        | {
            "scoring": vars(config),
            "title_markers": list(markers) if markers else None,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        },
        "corpus": {
            "name": Path(args.data).name,
            "documents": index.n_docs,
            "tokens": index.n_tokens,
            "queries": n,
            "ngrams_per_query_mean": float(np.mean([len(g) for g in found.values()])),
            "index_build_s": build_s,
        },
        "results": results,
        "ratio_reference_over_new": ratio,
        "cpu_ratio_reference_over_new": cpu_ratio,
        "documents_rescored_per_query_mean": float(np.mean(rescored)) if rescored else 0.0,
        "ndcg10": ndcg,
        "checks": checks,
    }
    log(
        f"reference {results['reference']['median_ms_per_query']:.2f} ms/query, "
        f"new {results['new']['median_ms_per_query']:.2f} ms/query "
        f"(first stage alone {results['new_first_stage_only']['median_ms_per_query']:.2f}), "
        f"ratio {ratio:.1f}x wall, {cpu_ratio:.1f}x CPU; "
        f"{report['documents_rescored_per_query_mean']:.0f} documents rescored per query"
    )
    log(
        f"identical rankings: {checks['identical_rankings']} ({checks['same_rankings']}/{checks['queries']} queries, "
        f"max |score difference| {checks['max_abs_score_diff']:.3g}); nDCG@10 reference {ndcg['reference']:.4f}, "
        f"new {ndcg['new']:.4f}; load average {machine['load_average_1_5_15']}"
    )
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1) + "\n")
        log(f"wrote {path}")
    if not checks["identical_rankings"]:
        raise RuntimeError(f"the library's rankings differ from the reference's: {checks}")
    return report


if __name__ == "__main__":
    main()
