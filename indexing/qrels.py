"""Relevance judgments (qrels): loading BEIR / TREC files and checking them against a corpus.

This module also holds what the corpus loaders share with it: the two exception/warning
classes and the line reader that names the line of a decoding error. Import them from
``indexing.corpus``, which re-exports everything here.
"""

from __future__ import annotations

import gzip
import os
import warnings
import zlib
from collections.abc import Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from tqdm.auto import tqdm

from indexing.builtin import resolve
from indexing.trec import Qrels

__all__ = ["CorpusError", "DataWarning", "check_qrels", "load_qrels"]

_PROGRESS_MIN_BYTES = 16 << 20  # below this (roughly 10k documents) a progress bar is noise
_EXAMPLES = 5


class CorpusError(ValueError):
    """Bad input data; the message names the file, the line (1-based) or row, and the field."""


class DataWarning(UserWarning):
    """A data problem that was reported and tolerated because the caller chose ``"warn"``."""


def check_option(name: str, value: str, allowed: tuple[str, ...] = ("error", "warn")) -> None:
    """Raise ValueError unless ``value`` is one of ``allowed`` (for ``on_duplicate=`` and the like)."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def warn(message: str, stacklevel: int = 3) -> None:
    """Emit a DataWarning (by default attributed to the caller of the function calling this)."""
    warnings.warn(DataWarning(message), stacklevel=stacklevel)


def examples(items: Iterable[str], total: int) -> str:
    """The first few ``items`` joined, with ``...`` when ``total`` says there are more."""
    shown = list(items)[:_EXAMPLES]
    return ", ".join(shown) + (", ..." if total > len(shown) else "")


def _numbered(handle: BinaryIO, path: Path) -> Iterator[tuple[int, bytes]]:
    """``enumerate(handle, 1)``, with a damaged or truncated gzip stream turned into a CorpusError."""
    lineno = 0
    try:
        for lineno, raw in enumerate(handle, 1):
            yield lineno, raw
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
        raise CorpusError(
            f"{path}:{lineno + 1}: cannot be read as gzip ({err or type(err).__name__}); the file "
            f"is damaged or truncated"
        ) from None


def text_lines(path: Path, *, progress: bool = False, desc: str = "") -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` of a UTF-8 (optionally gzipped) file, line endings kept.

    Decoding line by line, rather than letting ``open`` decode, lets an invalid byte be
    reported with its line number. A leading byte-order mark is removed.
    """
    gz = path.suffix == ".gz"
    size = None if gz else os.path.getsize(path)
    handle: BinaryIO = gzip.open(path, "rb") if gz else open(path, "rb")
    bar = tqdm(
        total=size,
        unit="B",
        unit_scale=True,
        desc=desc or path.name,
        leave=False,
        disable=not progress or (size is not None and size < _PROGRESS_MIN_BYTES),
    )
    pending = 0
    with handle, bar:
        for lineno, raw in _numbered(handle, path):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise CorpusError(
                    f"{path}:{lineno}: not valid UTF-8 ({err.reason} at byte {err.start} of the line)"
                ) from None
            pending += len(raw)
            if pending > 1 << 20:
                bar.update(pending)
                pending = 0
            yield lineno, line
        bar.update(pending)


_QUERY_HEADERS = frozenset({"query-id", "query_id", "qid", "query"})
_DOC_HEADERS = frozenset({"corpus-id", "corpus_id", "doc-id", "doc_id", "docid", "pid"})
_MIN_GRADE, _MAX_GRADE = -(2**31), 2**31 - 1  # int32: what run files and numpy arrays of grades hold


def _relevance(value: str) -> int | None:
    """An integer grade from ``"2"`` or an integral float such as ``"1.0"``; None otherwise."""
    try:
        return int(value)
    except ValueError:
        pass
    try:
        grade = float(value)
    except ValueError:
        return None
    return int(grade) if grade.is_integer() else None


def qrels_path(source: str | os.PathLike[str], split: str) -> Path:
    """The qrels file for ``source``: the file itself, or ``folder/qrels/{split}.tsv`` of a BEIR folder."""
    path = Path(resolve(source))
    if path.is_dir():
        folder = path / "qrels"
        file = folder / f"{split}.tsv"
        if not file.is_file():
            splits = sorted(p.stem for p in folder.glob("*.tsv")) if folder.is_dir() else []
            raise FileNotFoundError(
                f"{path}: no qrels for split {split!r} (looked for {file}); "
                f"splits present: {', '.join(splits) or 'none'}"
            )
        return file
    if not path.is_file():
        raise FileNotFoundError(f"qrels file not found: {path}")
    return path


def load_qrels(source: str | os.PathLike[str], split: str = "test") -> Qrels:
    """Read relevance judgments as ``{query_id: {doc_id: relevance}}`` (queries in file order).

    ``source`` is a qrels file or a BEIR folder (then ``folder/qrels/{split}.tsv`` is read).
    Two formats, told apart by the first data line: BEIR tsv ``query-id corpus-id score``
    (header optional, recognised by its names: ``query-id``/``qid`` then ``corpus-id``/``doc-id``) and
    TREC ``query-id iteration doc-id relevance`` (4 columns). Columns are split on tabs when a line has
    any, else on whitespace. Grades are integers ("1.0" is
    accepted); the same pair judged twice with different grades is an error, judged twice
    with the same grade is reported in a DataWarning and kept once.
    """
    path = qrels_path(source, split)
    qrels: Qrels = {}
    first_line: dict[tuple[str, str], int] = {}
    names: tuple[str, ...] = ()
    repeats: list[str] = []
    for lineno, line in text_lines(path):
        if not line or line.isspace():
            continue
        fields = [f.strip() for f in line.split("\t")] if "\t" in line else line.split()
        if not names:
            if len(fields) == 3 and fields[0].lower() in _QUERY_HEADERS and fields[1].lower() in _DOC_HEADERS:
                names = ("query-id", "corpus-id", "score")  # a header line, told by its names
                continue
            if len(fields) not in (3, 4):
                raise CorpusError(
                    f"{path}:{lineno}: expected 3 columns (query-id, corpus-id, score) or 4 "
                    f"(TREC: query-id, iteration, doc-id, relevance), got {len(fields)}"
                )
            names = (
                ("query-id", "corpus-id", "score")
                if len(fields) == 3
                else ("query-id", "iteration", "doc-id", "relevance")
            )
        if len(fields) != len(names):
            raise CorpusError(
                f"{path}:{lineno}: expected {len(names)} columns ({', '.join(names)}) like "
                f"the lines above, got {len(fields)}"
            )
        qid, docid, grade = fields[0], fields[-2], fields[-1]
        for name, value in ((names[0], qid), (names[-2], docid)):
            if not value:
                raise CorpusError(f"{path}:{lineno}: field {name!r}: empty")
        rel = _relevance(grade)
        if rel is None or not _MIN_GRADE <= rel <= _MAX_GRADE:
            what = "an integer grade" if rel is None else f"a grade within [{_MIN_GRADE}, {_MAX_GRADE}]"
            raise CorpusError(f"{path}:{lineno}: field {names[-1]!r}: expected {what}, got {grade!r}")
        judged = qrels.setdefault(qid, {})
        old = judged.get(docid)
        if old is None:
            judged[docid] = rel
            first_line[qid, docid] = lineno
        elif old != rel:
            raise CorpusError(
                f"{path}:{lineno}: field {names[-1]!r}: query {qid!r}, document {docid!r} is "
                f"graded {rel} here but {old} on line {first_line[qid, docid]}"
            )
        else:
            repeats.append(f"{qid!r}/{docid!r} (lines {first_line[qid, docid]}, {lineno})")
    if not qrels:
        raise CorpusError(f"{path}: no judgments (the file is empty{' but for its header' if names else ''})")
    if repeats:
        warn(
            f"{path}: {len(repeats)} repeated judgments with the same grade, each kept once: "
            f"{examples(repeats, len(repeats))}"
        )
    return qrels


def check_qrels(
    qrels: Mapping[str, Mapping[str, int]],
    doc_ids: Iterable[str] | Any,
    query_ids: Iterable[str] | None,
    *,
    on_dangling: str = "warn",
    name: str = "qrels",
) -> dict[str, int]:
    """Count judgments that point outside the corpus or the queries, and report them.

    ``doc_ids`` is an iterable of document ids or a corpus Dataset (its ``_id`` column);
    ``query_ids`` an iterable of query ids (a queries dict works) or None to skip that check.
    Dangling judgments are never dropped: evaluation should count an unknown document as
    relevant but unretrievable. ``on_dangling="error"`` raises CorpusError, ``"warn"`` emits a
    DataWarning. Returns counts: ``queries``, ``judgments``, ``unknown_docs`` (judgments whose
    document is unknown), ``unknown_queries`` (judgments whose query is unknown).
    """
    check_option("on_dangling", on_dangling)
    if hasattr(doc_ids, "column_names"):  # a datasets.Dataset corpus
        doc_ids = doc_ids["_id"]
    if hasattr(doc_ids, "column_name"):  # a datasets Column: slicing is fast, iterating is not
        doc_ids = doc_ids[:]
    docs: Collection[str] = doc_ids if isinstance(doc_ids, (set, frozenset, dict)) else set(doc_ids)
    queries: Collection[str] | None = None
    if query_ids is not None:
        queries = query_ids if isinstance(query_ids, (set, frozenset, dict)) else set(query_ids)
    bad_docs = [f"{q!r}/{d!r}" for q, judged in qrels.items() for d in judged if d not in docs]
    bad_queries = [q for q in qrels if queries is not None and q not in queries]
    counts = {
        "queries": len(qrels),
        "judgments": sum(len(judged) for judged in qrels.values()),
        "unknown_docs": len(bad_docs),
        "unknown_queries": sum(len(qrels[q]) for q in bad_queries),
    }
    problems = []
    if bad_docs:
        problems.append(
            f"{len(bad_docs)} of {counts['judgments']} judgments name documents not in the "
            f"corpus (query/doc: {examples(bad_docs, len(bad_docs))})"
        )
    if bad_queries:
        problems.append(
            f"{counts['unknown_queries']} judgments belong to {len(bad_queries)} queries not "
            f"among the queries ({examples(map(repr, bad_queries), len(bad_queries))})"
        )
    if problems:
        message = f"{name}: " + "; ".join(problems)
        if on_dangling == "error":
            raise CorpusError(message)
        warn(message + "; kept (they count as relevant but unretrievable)")
    return counts
