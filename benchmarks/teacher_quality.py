"""How good is each distillation teacher (``pairs.teacher``) on a collection's TRAIN queries?

The teachers label pseudo-queries at training time (``genret.distillation``); a student can only learn the ranking
its teacher gives, so the teacher is chosen on judged queries that are not the test set:

    python benchmarks/teacher_quality.py --data ../shared/data/scifact --split train \
        --json benchmarks/results/teacher_quality_scifact_train.json

prints nDCG@10 / R@10 of ``bm25``, ``dense`` and ``bm25+dense`` (reciprocal rank fusion) on the same queries.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from genret.distillation import TEACHERS, teacher_run
from genret.evaluation import evaluate
from genret.provenance import git_commit, machine_info
from indexing.corpus import load_beir


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="BEIR folder")
    parser.add_argument("--split", default="train", help="qrels split to judge the teachers on (never test)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    if args.split == "test":
        raise SystemExit("teachers are chosen on train (or dev) queries, never on the test queries")
    data = load_beir(args.data, split=args.split)
    results = {
        "data": args.data,
        "split": args.split,
        "queries": len(data.queries),
        "commit": git_commit(),
        "machine": machine_info(),
        "teachers": {},
    }
    for teacher in TEACHERS:
        start = time.perf_counter()
        run = teacher_run(teacher, data.corpus, data.queries, depth=10)
        metrics = evaluate(run, data.qrels, ("nDCG@10", "R@10"))
        results["teachers"][teacher] = {**metrics, "seconds": time.perf_counter() - start}
        print(f"{teacher:12s} nDCG@10 {metrics['nDCG@10']:.4f}  R@10 {metrics['R@10']:.4f}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
