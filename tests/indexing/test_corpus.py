"""Tests for indexing.corpus / indexing.qrels: loading, validation, duplicates, qrels, real data."""

from __future__ import annotations

import csv
import gzip
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexing.corpus import (
    BeirData,
    CorpusError,
    DataWarning,
    check_qrels,
    corpus_stats,
    load_beir,
    load_corpus,
    load_qrels,
    load_queries,
)

TINY = Path(__file__).resolve().parents[1] / "fixtures" / "tiny_beir"
DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

# The same documents in every format: int-like ids, a missing title, quotes, commas, tabs,
# a newline and non-ASCII text, so that csv quoting and UTF-8 are exercised.
RECORDS = [
    {"_id": "1", "title": "Tides", "text": "Turbines under the sea.", "url": "https://example.org/1"},
    {"_id": "2", "title": "", "text": 'She said "bread", then left.', "url": "https://example.org/2"},
    {"_id": "b-3", "title": "Commas, tabs", "text": "a,b\tc", "url": "https://example.org/3"},
    {"_id": "4", "title": "Two lines", "text": "first line\nsecond line", "url": "https://example.org/4"},
    {"_id": "5", "title": "Café", "text": "naïve crème brûlée — ok", "url": "https://example.org/5"},
]


def write_jsonl(path: Path, lines: list[object | str]) -> Path:
    """Write one JSON value per line (strings are written verbatim, for malformed lines)."""
    text = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
    path.write_text(text, encoding="utf-8")
    return path


def plain(records: list[dict[str, str]]) -> list[dict[str, str]]:
    """The records with tabs and line breaks turned into spaces: what a plain TSV can hold."""
    table = str.maketrans({"\t": " ", "\n": " ", "\r": " "})
    return [{k: v.translate(table) for k, v in r.items()} for r in records]


def write_delimited(
    path: Path, records: list[dict[str, str]], delimiter: str, columns: list[str] | None = None
) -> Path:
    columns = columns or list(records[0])
    if delimiter == "\t":  # plain TSV: one record per line, no quoting
        lines = ["\t".join(columns)] + ["\t".join(r.get(c, "") for c in columns) for r in records]
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return path
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(columns)
        writer.writerows([[r.get(c, "") for c in columns] for r in records])
    return path


def rows(dataset: datasets.Dataset) -> list[dict[str, object]]:
    return dataset.to_list()


# --- round trips ---------------------------------------------------------------------------


def test_same_records_load_identically_from_every_format(tmp_path: Path) -> None:
    as_jsonl = [dict(r) for r in RECORDS]
    del as_jsonl[1]["title"]  # a missing title reads as ""
    as_jsonl[0]["_id"] = 1  # int ids are accepted and become strings
    as_jsonl[0]["metadata"] = {"year": 2020}  # other fields are dropped
    write_jsonl(tmp_path / "c.jsonl", as_jsonl)
    with gzip.open(tmp_path / "c.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(r) + "\n" for r in as_jsonl))
    write_delimited(tmp_path / "c.tsv", plain(RECORDS), "\t")
    write_delimited(tmp_path / "c.csv", RECORDS, ",")
    pq.write_table(pa.Table.from_pylist(RECORDS), tmp_path / "c.parquet")
    sources = [tmp_path / name for name in ("c.jsonl", "c.jsonl.gz", "c.tsv", "c.csv", "c.parquet")]
    sources.append(datasets.Dataset.from_list(RECORDS))

    loaded = [load_corpus(source) for source in sources]
    for source, corpus in zip(sources, loaded, strict=True):
        assert rows(corpus) == (plain(RECORDS) if str(source).endswith(".tsv") else RECORDS)
        assert corpus.column_names == ["_id", "title", "text", "url"]
        assert all(corpus.features[c] == datasets.Value("string") for c in corpus.column_names)


def test_in_memory_dataset_honours_select_and_int_ids() -> None:
    dataset = datasets.Dataset.from_dict({"id": [10, 11, 12], "text": ["a", "b", "c"], "extra": [1, 2, 3]})
    corpus = load_corpus(dataset.select([2, 0]))
    assert rows(corpus) == [{"_id": "12", "title": "", "text": "c"}, {"_id": "10", "title": "", "text": "a"}]


def test_csv_columns_id_and_docid_and_any_order(tmp_path: Path) -> None:
    records = [{"text": "hello", "docid": "x1"}, {"text": "world", "docid": "x2"}]
    corpus = load_corpus(write_delimited(tmp_path / "c.csv", records, ","))
    assert rows(corpus) == [{"_id": "x1", "title": "", "text": "hello"}, {"_id": "x2", "title": "", "text": "world"}]


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(docs=st.lists(st.tuples(texts, texts), min_size=1, max_size=6))
def test_arbitrary_text_round_trips_through_jsonl_tsv_csv(tmp_path: Path, docs: list[tuple[str, str]]) -> None:
    records = [{"_id": f"d{i}", "title": title, "text": text} for i, (title, text) in enumerate(docs)]
    write_jsonl(tmp_path / "p.jsonl", records)
    write_delimited(tmp_path / "p.tsv", plain(records), "\t")
    write_delimited(tmp_path / "p.csv", records, ",")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # empty documents are reported; fine here
        for name in ("p.jsonl", "p.tsv", "p.csv"):
            want = plain(records) if name.endswith(".tsv") else records
            assert rows(load_corpus(tmp_path / name)) == want


# --- validation errors name file, line and field ----------------------------------------------

GOOD = {"_id": "a", "title": "t", "text": "x"}


@pytest.mark.parametrize(
    ("bad_line", "expected"),
    [
        ({"title": "t", "text": "x"}, "field '_id': missing"),
        ({"_id": "", "text": "x"}, "field '_id': empty"),
        ({"_id": 1.5, "text": "x"}, "field '_id': expected a string, got float"),
        ({"_id": None, "text": "x"}, "field '_id': expected a string, got null"),
        ({"_id": "b", "title": "t"}, "field 'text': missing"),
        ({"_id": "b", "text": ["a", "list"]}, "field 'text': expected a string, got list"),
        ({"_id": "b", "text": None}, "field 'text': expected a string, got null"),
        ({"_id": "b", "title": 7, "text": "x"}, "field 'title': expected a string, got int"),
        ({"_id": "b", "title": None, "text": "x"}, "field 'title': expected a string, got null"),
        ({"_id": "b", "text": "x", "url": 3}, "field 'url': expected a string, got int"),
        ('{"_id": "b", "text": "x"', "invalid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('"just a string"', "expected a JSON object, got str"),
    ],
)
def test_jsonl_errors_name_file_line_and_field(tmp_path: Path, bad_line: object, expected: str) -> None:
    path = write_jsonl(tmp_path / "corpus.jsonl", [GOOD, "", bad_line, GOOD])  # line 2 blank, line 3 bad
    with pytest.raises(CorpusError) as info:
        load_corpus(path)
    assert f"corpus.jsonl:3: {expected}" in str(info.value)


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(b'{"_id": "a", "text": "ok"}\n{"_id": "b", "text": "caf\xe9"}\n')
    with pytest.raises(CorpusError, match=r"corpus\.jsonl:2: not valid UTF-8"):
        load_corpus(path)


def test_json_array_file_gets_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "corpus.json"
    path.write_text(json.dumps([GOOD, GOOD], indent=1))
    with pytest.raises(CorpusError, match=r"corpus\.json:1: .*JSON lines"):
        load_corpus(path)


def test_utf8_bom_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\n")
    assert rows(load_corpus(path)) == [GOOD]


@pytest.mark.parametrize(
    ("header", "row", "expected"),
    [
        (["_id", "title"], ["a", "t"], "c.tsv:1: field 'text': the header has no 'text' column"),
        (["key", "text"], ["a", "t"], "c.tsv:1: field '_id': the header has no '_id' or 'id' or 'docid' column"),
        (["_id", "text"], ["a", "t", "extra"], "c.tsv:3: expected 2 fields as in the header, got 3"),
        (["_id", "text"], ["", "t"], "c.tsv:3: field '_id': empty"),
    ],
)
def test_tsv_errors_name_file_line_and_field(tmp_path: Path, header: list[str], row: list[str], expected: str) -> None:
    path = tmp_path / "c.tsv"
    path.write_text("\t".join(header) + "\n" + "\t".join(["z", "ok"][: len(header)]) + "\n" + "\t".join(row) + "\n")
    with pytest.raises(CorpusError) as info:
        load_corpus(path)
    assert expected in str(info.value)


def test_a_tsv_is_one_record_per_line_and_keeps_quotes(tmp_path: Path) -> None:
    path = tmp_path / "stray.tsv"
    path.write_text(
        '_id\ttitle\ttext\n1\tt1\tfirst doc\n2\tt2\t"quoted start but no end\n3\tt3\tthird doc\n'
        '4\tt4\tsays "hi" twice\n5\tt5\t"fully quoted"\n'
    )
    corpus = load_corpus(path)
    assert corpus["_id"] == ["1", "2", "3", "4", "5"]
    assert corpus["text"] == ["first doc", '"quoted start but no end', "third doc", 'says "hi" twice', '"fully quoted"']


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ('_id,text\n1,first\n2,"opens and never closes\n3,third\n4,fourth\n', 3, "never closes"),
        ('_id,text\n1,first\n2,"closed" then text\n3,third\n', 3, "expected after"),
    ],
)
def test_a_csv_quote_that_does_not_close_is_refused_with_its_line(
    tmp_path: Path, text: str, line: int, what: str
) -> None:
    path = tmp_path / "c.csv"
    path.write_text(text)
    with pytest.raises(CorpusError, match=rf"c\.csv:{line}: .*{what}"):
        load_corpus(path)


@pytest.mark.parametrize("name", ["c.tsv", "c.csv"])
def test_a_header_naming_a_column_twice_is_refused(tmp_path: Path, name: str) -> None:
    sep = "\t" if name.endswith(".tsv") else ","
    path = tmp_path / name
    path.write_text(sep.join(["_id", "text", "text"]) + "\n" + sep.join(["a", "x", "y"]) + "\n")
    with pytest.raises(CorpusError, match=rf"{name}:1: the header names 'text' more than once"):
        load_corpus(path)


def test_csv_line_numbers_count_multiline_fields(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text('_id,text\na,"two\nlines"\n\nb,fine\nc,one,too many\n')
    with pytest.raises(CorpusError, match=r"c\.csv:6: expected 2 fields as in the header, got 3"):
        load_corpus(path)


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (
            {"_id": ["a", "b", "c"], "text": ["x", "y", None]},
            "Dataset row 2: field 'text': expected a string, got null",
        ),
        ({"_id": ["a", "b"], "text": [1, 2]}, "Dataset row 0: field 'text': expected a string, got int"),
        (
            {"_id": ["a", "b"], "title": [["l"], ["m"]], "text": ["x", "y"]},
            "Dataset row 0: field 'title': expected a string, got list",
        ),
        ({"_id": ["a", None], "text": ["x", "y"]}, "Dataset row 1: field '_id': expected a string, got null"),
        ({"_id": ["a", ""], "text": ["x", "y"]}, "Dataset row 1: field '_id': empty"),
        ({"_id": ["a"], "body": ["x"]}, "Dataset: field 'text': no 'text' column (columns: _id, body)"),
    ],
)
def test_dataset_errors_name_row_and_field(columns: dict[str, list[object]], expected: str) -> None:
    with pytest.raises(CorpusError) as info:
        load_corpus(datasets.Dataset.from_dict(columns))
    assert expected in str(info.value)


def test_parquet_errors_name_file_row_and_field(tmp_path: Path) -> None:
    path = tmp_path / "corpus.parquet"
    pq.write_table(pa.table({"_id": ["a", "b"], "text": ["x", None]}), path)
    expected = r"corpus\.parquet row 1: field 'text': expected a string, got null"
    with pytest.raises(CorpusError, match=expected):
        load_corpus(path)


def test_missing_and_unsupported_sources(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_corpus(tmp_path / "nope.jsonl")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_corpus("./not/here/corpus.tsv")
    with pytest.raises(FileNotFoundError, match="has no corpus.jsonl"):
        load_corpus(tmp_path)
    (tmp_path / "corpus.txt").write_text("hello\n")
    with pytest.raises(CorpusError, match="unsupported file type '.txt'"):
        load_corpus(tmp_path / "corpus.txt")
    with pytest.raises(TypeError):
        load_corpus(42)  # type: ignore[arg-type]


def test_invalid_option_values_raise_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="on_duplicate"):
        load_corpus(TINY, on_duplicate="drop")
    with pytest.raises(ValueError, match="on_duplicate"):
        load_queries(TINY, on_duplicate="ignore")
    with pytest.raises(ValueError, match="on_dangling"):
        check_qrels({}, [], [], on_dangling="drop")
    with pytest.raises(ValueError, match="on_dangling"):
        load_beir(TINY, on_dangling="skip")


# --- duplicates --------------------------------------------------------------------------------


def duplicated_corpus(tmp_path: Path) -> Path:
    lines = [
        {"_id": i, "text": t}
        for i, t in [("a", "a1"), ("b", "b1"), ("a", "a2"), ("c", "c1"), ("b", "b2"), ("a", "a3"), ("d", "d1")]
    ]
    return write_jsonl(tmp_path / "corpus.jsonl", lines)


def test_duplicate_ids_error_names_count_ids_and_lines(tmp_path: Path) -> None:
    with pytest.raises(CorpusError) as info:
        load_corpus(duplicated_corpus(tmp_path))
    message = str(info.value)
    assert "corpus.jsonl: 2 duplicate _id values (3 extra rows)" in message
    assert "'a' (lines 1, 3, 6)" in message and "'b' (lines 2, 5)" in message
    assert "on_duplicate='warn'" in message


def test_duplicate_ids_warn_keeps_first_and_reports(tmp_path: Path) -> None:
    with pytest.warns(
        DataWarning,
        match=r"2 duplicate _id values; kept the first of each \(3 rows dropped\)"
        r": 'a' \(lines 1, 3, 6\), 'b' \(lines 2, 5\)",
    ):
        corpus = load_corpus(duplicated_corpus(tmp_path), on_duplicate="warn")
    assert corpus["_id"][:] == ["a", "b", "c", "d"]
    assert corpus["text"][:] == ["a1", "b1", "c1", "d1"]


def test_duplicate_ids_in_a_dataset_are_reported_by_row() -> None:
    dataset = datasets.Dataset.from_dict({"_id": ["x", "y", "x"], "text": ["1", "2", "3"]})
    with pytest.raises(CorpusError, match=r"'x' \(rows 0, 2\)"):
        load_corpus(dataset)
    with pytest.warns(DataWarning, match="1 duplicate _id values"):
        assert load_corpus(dataset, on_duplicate="warn")["text"][:] == ["1", "2"]


def test_duplicate_query_ids(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "queries.jsonl", [{"_id": "q", "text": "one"}, {"_id": "q", "text": "two"}])
    with pytest.raises(CorpusError, match=r"queries\.jsonl: 1 duplicate _id values .*'q' \(lines 1, 2\)"):
        load_queries(path)
    with pytest.warns(DataWarning, match="kept the first"):
        assert load_queries(path, on_duplicate="warn") == {"q": "one"}


# --- empty documents, extra columns, stats ------------------------------------------------------


@pytest.mark.parametrize("bad", ["has space", "tab\there", "bell\x07", "nbsp\u00a0x", "zw\u200bj", "end\n"])
@pytest.mark.parametrize("fmt", ["jsonl", "tsv", "parquet", "queries"])
def test_ids_with_whitespace_or_control_characters_are_refused_at_load(tmp_path: Path, bad: str, fmt: str) -> None:
    good = {"_id": "ok", "title": "", "text": "fine"}
    record = {"_id": bad, "title": "", "text": "x"}
    if fmt == "tsv" and any(c in bad for c in "\t\n"):
        pytest.skip("a tab or line break inside a TSV field is a field or record boundary")
    path = tmp_path / f"c.{'jsonl' if fmt == 'queries' else fmt}"
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist([good, record]), path)
        where = "row 1"
    elif fmt == "tsv":
        write_delimited(path, [good, record], "\t")
        where = ":3"
    else:
        write_jsonl(path, [good, record])
        where = ":2"
    with pytest.raises(CorpusError) as info:
        load_queries(path) if fmt == "queries" else load_corpus(path)
    message = str(info.value)
    assert where in message and "field '_id'" in message and repr(bad) in message and "TREC" in message


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("c.jsonl", ""),
        ("c.jsonl", "\n  \n\n"),
        ("c.tsv", "_id\ttext\n"),
        ("c.tsv", "_id\ttext\n\n \n"),
        ("c.csv", "_id,text\n"),
        ("c.parquet", None),
    ],
)
def test_a_corpus_with_no_documents_is_refused(tmp_path: Path, name: str, content: str | None) -> None:
    path = tmp_path / name
    if content is None:
        pq.write_table(pa.table({"_id": pa.array([], pa.string()), "text": pa.array([], pa.string())}), path)
    else:
        path.write_text(content)
    with pytest.raises(CorpusError, match=rf"{name}: no documents"):
        load_corpus(path)
    with pytest.raises(CorpusError, match="no documents"):
        load_corpus(datasets.Dataset.from_dict({"_id": [], "text": []}))


def test_empty_documents_are_kept_counted_and_reported(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "corpus.jsonl",
        [
            GOOD,
            {"_id": "e1", "text": ""},
            {"_id": "e2", "title": " ", "text": "\n"},
            {"_id": "t", "title": "only a title", "text": ""},
            {"_id": "c", "title": "\u200b", "text": "\x07\x1b\u00a0"},
        ],
    )
    with pytest.warns(DataWarning, match=r"3 empty documents \(no title, no text\), kept: 'e1', 'e2', 'c'"):
        corpus = load_corpus(path)
    assert len(corpus) == 5
    stats = corpus_stats(corpus)
    assert stats["documents"] == 5 and stats["empty_documents"] == 3
    assert stats["with_title"] == 2 and stats["empty_text"] == 4


def test_control_only_queries_are_reported_as_empty(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "queries.jsonl", [{"_id": "a", "text": "bees"}, {"_id": "b", "text": "\x07\x08"}])
    with pytest.warns(DataWarning, match=r"1 empty queries .*'b'"):
        assert load_queries(path) == {"a": "bees", "b": "\x07\x08"}


def test_image_corpus_keeps_image_column_without_empty_warning(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "corpus.jsonl",
        [
            {"_id": "i1", "title": "", "text": "", "image": "images/1.jpg"},
            {"_id": "i2", "text": "", "image": None, "tags": ["x"]},
        ],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        corpus = load_corpus(path)
    assert corpus.column_names == ["_id", "title", "text", "image"]
    assert corpus["image"][:] == ["images/1.jpg", None]
    assert corpus_stats(corpus)["with_image"] == 1


def test_queries_from_jsonl_and_tsv_keep_file_order(tmp_path: Path) -> None:
    records = [{"qid": "z", "text": "last letter"}, {"qid": "a", "text": "first letter"}]
    queries = load_queries(write_delimited(tmp_path / "q.tsv", records, "\t"))
    assert queries == {"z": "last letter", "a": "first letter"}
    assert list(load_queries(TINY)) == [f"q{i}" for i in range(1, 9)]


# --- qrels -------------------------------------------------------------------------------------


def test_qrels_beir_with_and_without_header_and_float_grades(tmp_path: Path) -> None:
    expected = {"q1": {"d1": 1, "d2": 2}, "q2": {"d1": 0}}
    (tmp_path / "h.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t2.0\n\nq2\td1\t0\n")
    (tmp_path / "n.tsv").write_text("q1\td1\t1\nq1\td2\t2\nq2\td1\t0\n")
    assert load_qrels(tmp_path / "h.tsv") == expected
    assert load_qrels(tmp_path / "n.tsv") == expected


def test_qrels_trec_format(tmp_path: Path) -> None:
    (tmp_path / "qrels.txt").write_text("301 0 FBIS3-10082 1\n301 0 FBIS3-10169 0\n302  Q0  LA010189-0001  2\n")
    assert load_qrels(tmp_path / "qrels.txt") == {
        "301": {"FBIS3-10082": 1, "FBIS3-10169": 0},
        "302": {"LA010189-0001": 2},
    }


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("q1\td1\t1\nq1\td2\n", r"qrels\.tsv:2: expected 3 columns \(query-id, corpus-id, score\)"),
        ("q1\td1\t1\nq1\td2\t0.5\n", r"qrels\.tsv:2: field 'score': expected an integer grade, got '0\.5'"),
        (
            "q1\td1\t1\nq1\td1\t2\n",
            r"qrels\.tsv:2: field 'score': .*'q1', document 'd1' is graded 2 here but 1 on line 1",
        ),
        ("q1\t\t1\n", r"qrels\.tsv:1: field 'corpus-id': empty"),
        ("q1 0 d1 1\nq1 0 d2 x\n", r"qrels\.tsv:2: field 'relevance': expected an integer grade, got 'x'"),
        ("a b c d e\n", r"qrels\.tsv:1: expected 3 columns .* or 4"),
        # headerless, first grade not an integer: an error on line 1, not a header taken silently
        ("q1\td1\tx\nq1\td2\t1\n", r"qrels\.tsv:1: field 'score': expected an integer grade, got 'x'"),
        ("q1\td1\t99999999999999999999\n", r"qrels\.tsv:1: field 'score': expected a grade within"),
        ("", r"qrels\.tsv: no judgments \(the file is empty\)"),
        ("query-id\tcorpus-id\tscore\n\n", r"qrels\.tsv: no judgments \(the file is empty but for its header\)"),
    ],
)
def test_qrels_errors_name_file_line_and_field(tmp_path: Path, content: str, expected: str) -> None:
    (tmp_path / "qrels.tsv").write_text(content)
    with pytest.raises(CorpusError, match=expected):
        load_qrels(tmp_path / "qrels.tsv")


def test_qrels_repeated_same_grade_warns_and_keeps_one(tmp_path: Path) -> None:
    (tmp_path / "qrels.tsv").write_text("q1\td1\t1\nq1\td1\t1\n")
    with pytest.warns(DataWarning, match=r"1 repeated judgments .*'q1'/'d1' \(lines 1, 2\)"):
        assert load_qrels(tmp_path / "qrels.tsv") == {"q1": {"d1": 1}}


def test_missing_split_lists_the_splits_present() -> None:
    with pytest.raises(FileNotFoundError, match="no qrels for split 'dev'.*splits present: test, train"):
        load_qrels(TINY, "dev")


def test_check_qrels_counts_dangling_and_keeps_them() -> None:
    qrels = {"q1": {"d1": 1, "gone": 1}, "q9": {"d1": 1, "d2": 1}}
    with pytest.warns(
        DataWarning,
        match=r"1 of 4 judgments name documents not in the corpus.*'q1'/'gone'"
        r".*2 judgments belong to 1 queries not among the queries \('q9'\)",
    ):
        counts = check_qrels(qrels, ["d1", "d2"], {"q1": "text"})
    assert counts == {"queries": 2, "judgments": 4, "unknown_docs": 1, "unknown_queries": 2}
    assert qrels == {"q1": {"d1": 1, "gone": 1}, "q9": {"d1": 1, "d2": 1}}
    with pytest.raises(CorpusError, match="1 of 4 judgments"):
        check_qrels(qrels, ["d1", "d2"], ["q1"], on_dangling="error")
    corpus = datasets.Dataset.from_dict({"_id": ["d1", "d2", "gone"], "text": ["", "", ""]})
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        assert check_qrels(qrels, corpus, None)["unknown_docs"] == 0


# --- BEIR folders ------------------------------------------------------------------------------


def test_tiny_beir_fixture() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        test = load_beir(TINY)
        train = load_beir(TINY, "train")
    assert isinstance(test, BeirData) and len(test.corpus) == 20
    assert list(test.queries) == ["q1", "q3", "q4", "q5", "q7"]
    assert test.qrels["q1"] == {"d01": 2, "d15": 1}
    assert list(train.queries) == ["q2", "q6", "q8"]
    assert repr(test) == "BeirData(corpus=20 docs, queries=5, qrels=7)"
    assert corpus_stats(test.corpus)["with_title"] == 18


def test_beir_dangling_qrels_warn_or_error(tmp_path: Path) -> None:
    folder = shutil.copytree(TINY, tmp_path / "beir")
    with open(folder / "qrels" / "test.tsv", "a") as handle:
        handle.write("q1\tmissing-doc\t1\nq99\td01\t1\n")
    with pytest.warns(DataWarning, match=r"test\.tsv: 1 of 9 judgments name documents not in the corpus"):
        data = load_beir(folder)
    assert data.qrels["q1"]["missing-doc"] == 1 and "q99" in data.qrels  # kept, never dropped
    assert "q99" not in data.queries
    with pytest.raises(CorpusError, match="1 judgments belong to 1 queries not among the queries"):
        load_beir(folder, on_dangling="error")


def test_importing_corpus_does_not_import_torch() -> None:
    code = (
        "import sys, indexing.corpus, indexing.qrels\nassert 'torch' not in sys.modules and 'genret' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the shared real collections ------------------------------------------------------------------

REAL = {  # split: documents, judged queries, judgments, empty documents
    ("scifact", "test"): (5183, 300, 339, 0),
    ("scifact", "train"): (5183, 809, 919, 0),
    ("cranfield", "test"): (1400, 225, 1612, 2),
    ("cisi", "test"): (1460, 76, 3114, 0),
    ("flickr8k-1k", "test"): (1000, 5000, 5000, 1000),
}


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data not present")
@pytest.mark.parametrize(("name", "split"), list(REAL))
def test_real_collections_load_with_the_right_counts(name: str, split: str) -> None:
    documents, queries, judgments, empty = REAL[name, split]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        data = load_beir(DATA / name, split, on_dangling="error")  # no duplicates, no dangling qrels
    stats = corpus_stats(data.corpus)
    assert (stats["documents"], len(data.queries), stats["empty_documents"]) == (documents, queries, empty)
    assert sum(len(judged) for judged in data.qrels.values()) == judgments
    assert set(data.queries) == set(data.qrels)
    reported = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    if name == "cranfield":  # two documents of the original collection are empty
        where = DATA / name / "corpus.jsonl"
        assert reported == [f"{where}: 2 empty documents (no title, no text), kept: '471', '995'"]
    else:  # flickr8k-1k: empty text is normal for images and not reported
        assert reported == []
    if name == "flickr8k-1k":
        assert data.corpus.column_names == ["_id", "title", "text", "image"] and stats["with_image"] == 1000


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"_id": "a", "text": "x", "text": "y"}', r"c\.jsonl:2: field 'text': given twice in one record"),
        ('{"_id": "a", "_id": "b", "text": "y"}', r"c\.jsonl:2: field '_id': given twice in one record"),
        ("[" * 100000 + "]" * 100000, r"c\.jsonl:2: .*(nested too deeply|expected a JSON object)"),
    ],
)
def test_json_keys_given_twice_and_deep_nesting_are_refused(tmp_path: Path, line: str, expected: str) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [GOOD, line])
    with pytest.raises(CorpusError, match=expected):
        load_corpus(path)


def test_damaged_gzip_and_parquet_files_are_refused_with_their_names(tmp_path: Path) -> None:
    good = tmp_path / "c.jsonl.gz"
    with gzip.open(good, "wt", encoding="utf-8") as handle:
        handle.write("".join(json.dumps({"_id": f"d{i}", "text": "x" * 50}) + "\n" for i in range(200)))
    truncated = tmp_path / "t.jsonl.gz"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    not_gzip = tmp_path / "n.jsonl.gz"
    not_gzip.write_bytes(b"plain text, not gzip\n")
    for path in (truncated, not_gzip):
        with pytest.raises(CorpusError, match=rf"{path.name}:\d+: cannot be read as gzip"):
            load_corpus(path)
    parquet = tmp_path / "c.parquet"
    parquet.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(CorpusError, match="c.parquet: not a readable parquet file"):
        load_corpus(parquet)
