"""Write one BEIR folder whose corpus is several collections together: a larger collection without training queries.

recipes/pseudo-beir.yaml must run on a collection of up to 12k documents within 90 minutes; the collections on this
machine hold 1-5k each. This merges them (ids prefixed by the collection's folder name, so they cannot collide) and
keeps the queries and test qrels of the first one only, so the merged folder has no training queries and its
judged documents compete with every other collection's:

    python benchmarks/merge_beir.py --out /tmp/merged ../shared/data/cranfield ../shared/data/scifact \
        ../shared/data/cisi ../shared/data/squad-dev
    genret run pseudo-beir data.path=/tmp/merged output_dir=runs/pseudo-merged

The merged folder is written outside the package: the collections' licences (scifact CC BY-NC, SQuAD CC BY-SA)
allow evaluation, not redistribution.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from indexing.corpus import load_beir


def merge(folders: list[Path], out: Path) -> dict[str, int]:
    """Write ``out/{corpus.jsonl,queries.jsonl,qrels/test.tsv}``; returns the documents taken from each folder."""
    out.mkdir(parents=True, exist_ok=False)
    (out / "qrels").mkdir()
    counts: dict[str, int] = {}
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as corpus:
        for i, folder in enumerate(folders):
            data = load_beir(folder, split="test")
            prefix = folder.name
            for row in data.corpus:
                record = {"_id": f"{prefix}:{row['_id']}", "title": row.get("title") or "", "text": row["text"]}
                corpus.write(json.dumps(record, ensure_ascii=False) + "\n")
            counts[prefix] = len(data.corpus)
            if i == 0:  # the first collection's queries and judgments, its document ids prefixed the same way
                with (out / "queries.jsonl").open("w", encoding="utf-8") as queries:
                    for qid, text in data.queries.items():
                        queries.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
                with (out / "qrels" / "test.tsv").open("w", encoding="utf-8") as qrels:
                    qrels.write("query-id\tcorpus-id\tscore\n")
                    for qid, rel in data.qrels.items():
                        for doc, grade in rel.items():
                            qrels.write(f"{qid}\t{prefix}:{doc}\t{grade}\n")
    return counts


def main(argv: list[str] | None = None) -> dict[str, int]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="BEIR folders; the first gives queries and qrels")
    parser.add_argument("--out", required=True, type=Path, help="folder to write (must not exist)")
    args = parser.parse_args(argv)
    counts = merge(args.folders, args.out)
    print(f"{sum(counts.values())} documents in {args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return counts


if __name__ == "__main__":
    main()
