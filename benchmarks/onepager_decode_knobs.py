"""1-Pager's decoding knobs on held-out TRAIN questions: passage nDCG@10 / R@1 / R@10 and answer EM / F1 per value.

The settings of ``recipes/onepager-squad.yaml``'s search were chosen with this, on a model trained with
``data.heldout_queries=500`` (the last 500 train questions withheld), never on the test questions:

    genret train onepager-squad data.heldout_queries=500 output_dir=runs/op-heldout
    python benchmarks/onepager_decode_knobs.py --retriever runs/op-heldout/retriever \\
        --data ../shared/data/squad-dev --heldout 500 --copy-bonus 0 2 4 6 8 --closed-book --json knobs.json

Each value decodes the same saved model (``search.copy_bonus`` set, the rest as saved); ``--closed-book`` adds the
closed-book answer F1 of the same model, for the ratio the recipe reports.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from genret.evaluation import evaluate
from genret.retrievers.onepager import OnePagerRetriever, answer_scores
from indexing.answers import load_answers
from indexing.corpus import load_queries
from indexing.qrels import load_qrels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retriever", required=True, help="a saved 1-Pager retriever folder")
    parser.add_argument("--data", required=True, help="the BEIR folder (queries.jsonl, qrels/, answers.jsonl)")
    parser.add_argument("--split", default="train", help="qrels split the held-out questions come from")
    parser.add_argument("--heldout", type=int, default=500, help="the last N questions of the split")
    parser.add_argument("--copy-bonus", type=float, nargs="+", default=[0.0, 6.0])
    parser.add_argument("--closed-book", action="store_true", help="also the closed-book answer F1")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)

    qrels_all = load_qrels(args.data, args.split)
    held = list(qrels_all)[-args.heldout :]
    texts = load_queries(args.data)
    queries = {q: texts[q] for q in held}
    qrels = {q: qrels_all[q] for q in held}
    answers = load_answers(args.data)
    gold = {q: answers[q].texts for q in held if q in answers}
    saved = OnePagerRetriever.from_pretrained(args.retriever)

    rows = []
    for bonus in args.copy_bonus:
        config = dataclasses.replace(saved.config, copy_bonus=bonus)
        retriever = OnePagerRetriever(saved.model, saved.tokenizer, saved.index, config, passages=saved.passages)
        start = time.perf_counter()
        run = retriever.search(queries, k=10, progress=False)
        row = {"copy_bonus": bonus, **evaluate(run, qrels, ("nDCG@10", "R@1", "R@10"))}
        scores, found = answer_scores(retriever, queries, gold, progress=False)
        row.update(scores)
        row["answered"] = sum(a.doc is not None for a in found.values()) / max(len(found), 1)
        if args.closed_book:
            row["closed_book_F1"] = answer_scores(retriever, queries, gold, closed_book=True, progress=False)[0]["F1"]
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    if args.json:
        report = {"retriever": args.retriever, "data": args.data, "heldout": len(held), "rows": rows}
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
