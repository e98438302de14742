"""Runs and qrels as plain dicts, and TREC run files: the leaf every other module takes them from.

A run is ``{qid: {docid: score}}`` and qrels are ``{qid: {docid: relevance}}``: the plain dicts
that ir-measures, pytrec_eval and BEIR take. Qrels files are read by :func:`indexing.qrels.load_qrels`;
evaluation lives in :mod:`genret.evaluation`. This module imports nothing from the project.
"""

from __future__ import annotations

import gzip
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]

__all__ = ["Qrels", "Run", "read_trec_run", "write_trec_run"]


def _open_text(path: str | os.PathLike, mode: str) -> IO[str]:
    if str(path).endswith(".gz"):
        return gzip.open(path, mode + "t", encoding="utf-8")
    return open(path, mode, encoding="utf-8")


def _check_token(value: str, what: str) -> None:
    if not value or any(ch.isspace() for ch in value):
        raise ValueError(f"{what} {value!r} cannot be written to a TREC run (empty or contains whitespace)")


def _ranked(docs: Mapping[str, float]) -> list[tuple[str, str]]:
    """``(docid, formatted score)`` in rank order: score descending as written (6 decimals), ties by docid.

    Sorting on the written score keeps a file self-consistent: reading it back and ranking again
    gives the same order, even where two scores differ only past the sixth decimal.
    """
    rows = []
    for docid, score in docs.items():
        score = float(score)
        if math.isnan(score):
            raise ValueError(f"document {docid!r} has a NaN score")
        text = f"{score:.6f}"
        rows.append((-float(text), docid, text))
    rows.sort()
    return [(docid, text) for _, docid, text in rows]


def write_trec_run(run: Mapping[str, Mapping[str, float]], path: str | os.PathLike, tag: str = "genret") -> Path:
    """Write ``qid Q0 docid rank score tag`` lines (ranks from 1, score descending, ties by docid).

    Queries are written in sorted order; a query with no documents writes no line (TREC files
    cannot express it). A ``.gz`` path is gzip-compressed.
    """
    _check_token(tag, "tag")
    path = Path(path)
    with _open_text(path, "w") as out:
        for qid in sorted(run):
            _check_token(qid, "query id")
            for rank, (docid, score) in enumerate(_ranked(run[qid]), start=1):
                _check_token(docid, "document id")
                out.write(f"{qid} Q0 {docid} {rank} {score} {tag}\n")
    return path


def read_trec_run(path: str | os.PathLike) -> Run:
    """Read a TREC run file (``qid Q0 docid rank score tag``) into ``{qid: {docid: score}}``.

    Scores decide the order, as in trec_eval; the rank column is checked to be an integer only.
    A malformed line or a repeated (qid, docid) pair raises ``ValueError`` naming ``file:line``.
    """
    run: Run = {}
    with _open_text(path, "r") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            fields = line.split()
            if len(fields) != 6:
                raise ValueError(
                    f"{where}: expected 6 fields 'qid Q0 docid rank score tag', got {len(fields)}: {line.rstrip()!r}"
                )
            qid, _, docid, rank, score, _ = fields
            try:
                int(rank)
            except ValueError:
                raise ValueError(f"{where}: rank {rank!r} is not an integer") from None
            try:
                value = float(score)
            except ValueError:
                raise ValueError(f"{where}: score {score!r} is not a number") from None
            if math.isnan(value):
                raise ValueError(f"{where}: score is NaN")
            docs = run.setdefault(qid, {})
            if docid in docs:
                raise ValueError(f"{where}: document {docid!r} appears twice for query {qid!r}")
            docs[docid] = value
    return run
