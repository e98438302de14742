"""Reading corpus and query records from any source into validated columns: JSON lines, TSV / CSV, parquet,
a ``datasets.Dataset`` or a hub dataset. Every refusal names the file, the line (1-based; a row index for tables)
and the field; :mod:`indexing.corpus` turns the columns into a corpus or a query dict.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from indexing.builtin import looks_like_path, resolve
from indexing.qrels import CorpusError, examples, text_lines, warn

Source = str | os.PathLike[str] | datasets.Dataset | datasets.DatasetDict

_ID_KEYS = {"corpus": ("_id", "id", "docid"), "queries": ("_id", "id", "qid")}
EXTRAS = ("url", "image")  # optional corpus fields that are kept; any other field is dropped
_KEPT = frozenset({*_ID_KEYS["corpus"], *_ID_KEYS["queries"], "title", "text", *EXTRAS})  # fields read
_LINE_FORMATS = {".jsonl": "json", ".json": "json", ".tsv": "\t", ".csv": ","}
_MISSING = object()


@dataclass
class Parsed:
    """Validated columns before duplicates are handled: lists (from lines) or arrow arrays."""

    where: str
    columns: dict[str, Any]
    features: datasets.Features | None = None  # of the source table, for the kept extra columns
    lines: list[int] | None = None  # line of each row; None: positions are 0-based row indices


def _type_name(value: object) -> str:
    names = {type(None): "null", dict: "object", list: "list", bool: "bool", int: "int", float: "float"}
    return names.get(type(value), type(value).__name__)


def _field_error(loc: str, field: str, value: object) -> CorpusError:
    detail = "missing" if value is _MISSING else f"expected a string, got {_type_name(value)}"
    return CorpusError(f"{loc}: field {field!r}: {detail}")


def id_problem(value: str) -> str | None:
    """Why ``value`` cannot be a document or query id, or None: ids are written to whitespace-separated TREC run
    files, so whitespace and control / format characters are refused (at load, not after training)."""
    if value.isprintable() and " " not in value:  # the fast path: C-level, true for almost every id
        return None
    for i, ch in enumerate(value):
        if ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp", "Zs"):
            name = unicodedata.name(ch, "") or f"U+{ord(ch):04X}"
            return (
                f"contains {name.lower() if ch.isascii() else name} ({ch!r}) at position {i}; ids are "
                f"written to TREC run files, which whitespace and control characters would break"
            )
    return None


def _record_id(record: dict[str, Any], keys: tuple[str, ...], loc: str) -> str:
    """The record's id from the first of ``keys`` present; ints are accepted and made strings."""
    key = next((k for k in keys if k in record), None)
    if key is None:
        raise _field_error(loc, "_id", _MISSING)
    value = record[key]
    if type(value) is int:
        return str(value)
    if type(value) is not str:
        raise _field_error(loc, key, value)
    if not value:
        raise CorpusError(f"{loc}: field {key!r}: empty")
    problem = id_problem(value)
    if problem:
        raise CorpusError(f"{loc}: field {key!r}: {value!r} {problem}")
    return value


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json object_pairs_hook: a key given twice in one object is an error (json.loads keeps the last)."""
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _DuplicateKey(twice)
    return record


def _json_records(path: Path, progress: bool) -> Iterator[tuple[int, dict[str, Any]]]:
    for lineno, line in text_lines(path, progress=progress):
        if not line or line.isspace():
            continue
        hint = (
            "; this looks like a JSON array, expected JSON lines (one object per line)"
            if lineno == 1 and line.lstrip().startswith("[")
            else ""
        )
        try:
            record = json.loads(line, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as err:
            detail = f"invalid JSON: {err.msg} at column {err.colno}{hint}"
            raise CorpusError(f"{path}:{lineno}: {detail}") from None
        except _DuplicateKey as err:
            raise CorpusError(f"{path}:{lineno}: field {err.args[0]!r}: given twice in one record") from None
        except RecursionError:
            raise CorpusError(f"{path}:{lineno}: JSON nested too deeply to be a record") from None
        if type(record) is not dict:
            raise CorpusError(f"{path}:{lineno}: expected a JSON object, got {_type_name(record)}{hint}")
        if "\\u" in line:  # only a \u escape can smuggle a lone surrogate, which no text encoding can hold
            for key, value in record.items():
                if key in _KEPT and isinstance(value, str) and not _encodable(value):
                    raise CorpusError(
                        f"{path}:{lineno}: field {key!r}: holds a lone surrogate escape (\\ud800 to "
                        f"\\udfff without its pair), which is not text"
                    )
        yield lineno, record


def _tsv_rows(path: Path, progress: bool) -> Iterator[tuple[int, list[str]]]:
    """Plain tab-separated text: every non-blank line is one record, fields split on tabs, quotes kept as text."""
    for lineno, line in text_lines(path, progress=progress):
        line = line.rstrip("\n").removesuffix("\r")
        if line.strip():
            yield lineno, line.split("\t")


def _csv_rows(path: Path, progress: bool) -> Iterator[tuple[int, list[str]]]:
    """RFC 4180 CSV, parsed strictly: a quoted field may span lines, but one that never closes, or text after a
    closing quote, is an error naming the line where its record began (never a silently merged row)."""
    limit = csv.field_size_limit()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # documents can be longer than the 128 KiB default
    try:
        reader = csv.reader((line for _, line in text_lines(path, progress=progress)), strict=True)
        previous = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                hint = "; a quoted field opened here never closes" if "end of data" in str(err) else ""
                raise CorpusError(f"{path}:{previous + 1}: {err}{hint}") from None
            if row:  # blank lines come as []
                yield previous + 1, row
            previous = reader.line_num
    finally:
        csv.field_size_limit(limit)


def _csv_records(path: Path, delimiter: str, kind: str, progress: bool) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a tsv/csv file with a header, as records keyed ``_id``, ``text``, ... (line = first line)."""
    numbered = _tsv_rows(path, progress) if delimiter == "\t" else _csv_rows(path, progress)
    header_line, header = next(numbered, (1, None))
    if header is None:
        return
    header = [name.strip() for name in header]
    twice = sorted({name for name in header if header.count(name) > 1})
    if twice:
        raise CorpusError(f"{path}:{header_line}: the header names {', '.join(map(repr, twice))} more than once")
    keys = _ID_KEYS[kind]
    id_col = next((header.index(k) for k in keys if k in header), None)
    if id_col is None or "text" not in header:
        field, wanted = ("_id", " or ".join(map(repr, keys))) if id_col is None else ("text", "'text'")
        raise CorpusError(
            f"{path}:{header_line}: field {field!r}: the header has no {wanted} column (columns: {', '.join(header)})"
        )
    wanted_cols = ("title", *EXTRAS) if kind == "corpus" else ()
    cols = {"_id": id_col, "text": header.index("text")}
    cols.update({k: header.index(k) for k in wanted_cols if k in header})
    for lineno, row in numbered:
        if len(row) != len(header):
            raise CorpusError(f"{path}:{lineno}: expected {len(header)} fields as in the header, got {len(row)}")
        yield lineno, {key: row[i] for key, i in cols.items()}


def _collect(records: Iterator[tuple[int, dict[str, Any]]], where: str, kind: str) -> Parsed:
    """Validate records one by one into column lists (the hot loop of loading a large corpus)."""
    corpus = kind == "corpus"
    keys = _ID_KEYS[kind]
    ids: list[str] = []
    titles: list[str] = []
    texts: list[str] = []
    lines: list[int] = []
    extras: dict[str, dict[int, str]] = {k: {} for k in EXTRAS} if corpus else {}  # row -> value, sparse
    for lineno, record in records:
        doc_id = record.get("_id")
        if type(doc_id) is not str or not doc_id or id_problem(doc_id):
            doc_id = _record_id(record, keys, f"{where}:{lineno}")  # the slow path, which says what is wrong
        text = record.get("text", _MISSING)
        if type(text) is not str:
            raise _field_error(f"{where}:{lineno}", "text", text)
        if corpus:
            title = record.get("title", "")
            if type(title) is not str:
                raise _field_error(f"{where}:{lineno}", "title", title)
            titles.append(title)
            for key, column in extras.items():
                if key in record:
                    value = record[key]
                    if type(value) is not str and value is not None:
                        raise _field_error(f"{where}:{lineno}", key, value)
                    column[len(ids)] = value
        ids.append(doc_id)
        texts.append(text)
        lines.append(lineno)
    columns: dict[str, Any] = {"_id": ids, "text": texts}
    if corpus:
        columns = {"_id": ids, "title": titles, "text": texts}
    for key, values in extras.items():
        if any(value is not None for value in values.values()):
            column: list[str | None] = [None] * len(ids)
            for row, value in values.items():
                column[row] = value
            columns[key] = column
    return Parsed(where, columns, lines=lines)


def _arrow_type_name(kind: pa.DataType) -> str:
    checks = [
        (pa.types.is_null, "null"),
        (pa.types.is_integer, "int"),
        (pa.types.is_floating, "float"),
        (pa.types.is_boolean, "bool"),
        (pa.types.is_struct, "object"),
        (pa.types.is_list, "list"),
        (pa.types.is_large_list, "list"),
        (pa.types.is_fixed_size_list, "list"),
    ]
    return next((name for check, name in checks if check(kind)), str(kind))


def _string_column(column: pa.ChunkedArray, where: str, field: str, ints: bool = False) -> pa.ChunkedArray:
    """``column`` as non-null strings (ints too when ``ints``); else CorpusError at the first bad row."""
    empty_null = pa.types.is_null(column.type) and len(column) == 0  # e.g. Dataset.from_dict({"_id": []})
    if empty_null or pa.types.is_large_string(column.type) or (ints and pa.types.is_integer(column.type)):
        column = column.cast(pa.string())
    elif not pa.types.is_string(column.type):
        row = max(pc.index(pc.is_valid(column), True).as_py(), 0)
        raise CorpusError(f"{where} row {row}: field {field!r}: expected a string, got {_arrow_type_name(column.type)}")
    if column.null_count:
        row = pc.index(pc.is_null(column), True).as_py()
        raise CorpusError(f"{where} row {row}: field {field!r}: expected a string, got null")
    return column


def _read_table(table: pa.Table, features: datasets.Features, where: str, kind: str) -> Parsed:
    """Validate a table's columns at once (parquet, an in-memory Dataset, a hub dataset)."""
    names = table.column_names
    keys = _ID_KEYS[kind]
    id_key = next((k for k in keys if k in names), None)
    for field, present in (("_id", id_key is not None), ("text", "text" in names)):
        if not present:
            wanted = " or ".join(map(repr, keys)) if field == "_id" else "'text'"
            raise CorpusError(f"{where}: field {field!r}: no {wanted} column (columns: {', '.join(names)})")
    ids = _string_column(table[id_key], where, id_key, ints=True)
    empty = pc.index(pc.equal(ids, ""), True).as_py()
    if empty >= 0:
        raise CorpusError(f"{where} row {empty}: field {id_key!r}: empty")
    suspect = pc.or_(pc.invert(pc.utf8_is_printable(ids)), pc.match_substring(ids, " "))
    for row in pc.indices_nonzero(suspect).to_pylist():  # usually none; then the exact check names the first
        value = ids[row].as_py()
        problem = id_problem(value)
        if problem:
            raise CorpusError(f"{where} row {row}: field {id_key!r}: {value!r} {problem}")
    columns = {"_id": ids}
    if kind == "corpus":
        columns["title"] = (
            _string_column(table["title"], where, "title")
            if "title" in names
            else pa.chunked_array([pa.array([""] * len(table), pa.string())])
        )
    columns["text"] = _string_column(table["text"], where, "text")
    if kind == "corpus":
        columns.update({k: table[k] for k in EXTRAS if k in names})
    return Parsed(where, columns, features=features)


def arrow_table(dataset: datasets.Dataset) -> pa.Table:
    """A Dataset's rows as an arrow table (honouring select/shuffle indices; images stay undecoded)."""
    return dataset.with_format("arrow")[:]


def _pick_split(loaded: datasets.Dataset | datasets.DatasetDict, kind: str, name: str) -> datasets.Dataset:
    if isinstance(loaded, datasets.Dataset):
        return loaded
    if kind in loaded:
        return loaded[kind]
    if len(loaded) == 1:
        return next(iter(loaded.values()))
    raise CorpusError(
        f"{name}: several splits ({', '.join(loaded)}) and none is called {kind!r}; "
        f"pass the one to use as a datasets.Dataset"
    )


def _from_hub(name: str, kind: str) -> datasets.Dataset:
    """A dataset from the Hugging Face hub; BEIR datasets there have "corpus"/"queries" configs."""
    try:
        try:
            loaded = datasets.load_dataset(name, kind)
        except ValueError:  # no such config: a dataset without BEIR's layout
            loaded = datasets.load_dataset(name)
    except Exception as err:
        raise FileNotFoundError(
            f"{name!r} was not found locally, and loading it from the Hugging Face hub "
            f"failed ({type(err).__name__}: {err})"
        ) from err
    return _pick_split(loaded, kind, name)


def hub_qrels(name: str, split: str) -> dict[str, dict[str, int]]:
    """BEIR qrels on the hub (``BeIR/scifact-qrels``: columns query-id, corpus-id, score), one split."""
    try:
        rows = datasets.load_dataset(f"{name}-qrels", split=split)
    except Exception as err:
        raise FileNotFoundError(
            f"{name!r} is not a local BEIR folder, and its qrels {name}-qrels[{split}] could "
            f"not be loaded from the Hugging Face hub ({type(err).__name__}: {err})"
        ) from err
    qrels: dict[str, dict[str, int]] = {}
    for row in rows:
        qrels.setdefault(str(row["query-id"]), {})[str(row["corpus-id"])] = int(row["score"])
    return qrels


def looks_like_data_path(source: str | os.PathLike[str]) -> bool:
    suffix = Path(os.fspath(source).removesuffix(".gz")).suffix.lower()
    return looks_like_path(source) or suffix in (*_LINE_FORMATS, ".parquet")


def parse(source: Source, kind: str, progress: bool) -> Parsed:
    """Read ``source`` (see :func:`load_corpus`) into validated columns."""
    if isinstance(source, datasets.DatasetDict):
        source = _pick_split(source, kind, "DatasetDict")
    if isinstance(source, datasets.Dataset):
        return _read_table(arrow_table(source), source.features, "Dataset", kind)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"expected a file, a BEIR folder, a Hugging Face dataset name or a datasets.Dataset, "
            f"got {type(source).__name__}"
        )
    source = resolve(source)
    path = Path(source)
    if path.is_dir():
        if not (path / f"{kind}.jsonl").is_file():
            raise FileNotFoundError(
                f"{path} has no {kind}.jsonl (a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/)"
            )
        path = path / f"{kind}.jsonl"
    if path.is_file():
        ext = (Path(path.stem) if path.suffix == ".gz" else path).suffix.lower()
        if ext == ".parquet":
            try:
                table = pq.read_table(path)
            except (pa.ArrowException, OSError) as err:
                raise CorpusError(f"{path}: not a readable parquet file ({err})") from None
            return _read_table(table, datasets.Features.from_arrow_schema(table.schema), str(path), kind)
        if ext not in _LINE_FORMATS:
            raise CorpusError(f"{path}: unsupported file type {ext!r} (expected .jsonl, .json, .tsv, .csv or .parquet)")
        fmt = _LINE_FORMATS[ext]
        records = _json_records(path, progress) if fmt == "json" else _csv_records(path, fmt, kind, progress)
        return _collect(records, str(path), kind)
    if looks_like_data_path(source):
        raise FileNotFoundError(f"no such file or folder: {path}")
    name = os.fspath(source)
    dataset = _from_hub(name, kind)
    return _read_table(arrow_table(dataset), dataset.features, name, kind)


def dedupe(parsed: Parsed, on_duplicate: str) -> list[int] | None:
    """Rows to keep (first of each id), or None when ids are unique; raises or warns as asked."""
    ids = parsed.columns["_id"]
    if isinstance(ids, list):
        if len(set(ids)) == len(ids):
            return None
    else:
        if pc.count_distinct(ids).as_py() == len(ids):
            return None
        ids = ids.to_pylist()
    first: dict[str, int] = {}
    repeated: dict[str, list[int]] = {}
    for row, doc_id in enumerate(ids):
        seen = first.setdefault(doc_id, row)
        if seen != row:
            repeated.setdefault(doc_id, [seen]).append(row)
    unit, at = ("lines", parsed.lines) if parsed.lines is not None else ("rows", range(len(ids)))
    described = (
        f"{doc_id!r} ({unit} {examples((str(at[r]) for r in rows), len(rows))})" for doc_id, rows in repeated.items()
    )
    extra = sum(len(rows) - 1 for rows in repeated.values())
    shown = examples(described, len(repeated))
    if on_duplicate == "error":
        raise CorpusError(
            f"{parsed.where}: {len(repeated)} duplicate _id values ({extra} extra rows): "
            f"{shown}; to keep the first of each pass on_duplicate='warn' (CLI: --on-duplicate warn; "
            f"recipes: data.on_duplicate=warn)"
        )
    warn(
        f"{parsed.where}: {len(repeated)} duplicate _id values; kept the first of each ({extra} rows dropped): {shown}",
        stacklevel=4,
    )
    dropped = {row for rows in repeated.values() for row in rows[1:]}
    return [row for row in range(len(ids)) if row not in dropped]
