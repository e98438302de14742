"""Generated bad inputs for every loader: each either loads exactly what a small reference parser reads from the
same bytes, or raises the project's own error type (CorpusError, ConfigError, ArtifactError), never another
exception. The reference parsers below restate the documented formats, independently of the loaders' code."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genret.config import ConfigError
from genret.recipe import load_recipe
from indexing.artifacts import ArtifactError, read_manifest, save_npy, write_artifact
from indexing.corpus import CorpusError, DataWarning, load_corpus, load_qrels, load_queries
from indexing.records import id_problem

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class Refused(Exception):
    """The reference parser refuses the input."""


def _valid_string(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, e.g. from a JSON "\ud800" escape
        return False
    return True


def _check_id(value: Any) -> str:
    if type(value) is int:
        value = str(value)
    if not _valid_string(value) or not value or id_problem(value):
        raise Refused
    return value


def reference_jsonl(text: str, kind: str) -> list[dict[str, str]]:
    """JSON lines: blank lines skipped; each other line one object, no key twice; ``_id`` a non-empty printable
    string or an int; ``text`` a string; (corpus) ``title`` a string or absent; no lone surrogate in a field
    that is read; other keys dropped; ids unique; at least one document."""
    rows, seen = [], set()
    for line in text.split("\n"):
        if not line or line.isspace():
            continue

        def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            if len({k for k, _ in pairs}) != len(pairs):
                raise Refused
            return dict(pairs)

        try:
            record = json.loads(line, object_pairs_hook=pairs_hook)
        except (json.JSONDecodeError, RecursionError):
            raise Refused from None
        if type(record) is not dict or "_id" not in record:
            raise Refused
        if any(isinstance(record.get(k), str) and not _valid_string(record[k]) for k in ("_id", "title", "text")):
            raise Refused  # a lone surrogate in a field that is read
        doc_id = _check_id(record["_id"])
        text_value = record.get("text")
        title = record.get("title", "")
        if not _valid_string(text_value) or (kind == "corpus" and not _valid_string(title)):
            raise Refused
        if doc_id in seen:
            raise Refused
        seen.add(doc_id)
        rows.append(
            {"_id": doc_id, "title": title, "text": text_value}
            if kind == "corpus"
            else {"_id": doc_id, "text": text_value}
        )
    if kind == "corpus" and not rows:
        raise Refused
    return rows


def reference_tsv(text: str) -> list[dict[str, str]]:
    """Plain TSV with the header ``_id title text``: one record per non-blank line, split on tabs."""
    lines = text.split("\n")
    rows, seen = [], set()
    for line in lines[1:]:
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise Refused
        doc_id = _check_id(fields[0])
        if doc_id in seen:
            raise Refused
        seen.add(doc_id)
        rows.append({"_id": doc_id, "title": fields[1], "text": fields[2]})
    if not rows:
        raise Refused
    return rows


def reference_qrels(text: str) -> dict[str, dict[str, int]]:
    """BEIR qrels, tab-separated ``query-id corpus-id score`` with an optional ``query-id corpus-id score``
    header; integer grades; the same pair twice must agree; at least one judgment."""
    qrels: dict[str, dict[str, int]] = {}
    first = True
    for line in text.split("\n"):
        if not line or line.isspace():
            continue
        fields = [f.strip() for f in line.split("\t")]
        if first and fields == ["query-id", "corpus-id", "score"]:
            first = False
            continue
        first = False
        if len(fields) != 3 or not fields[0] or not fields[1]:
            raise Refused
        try:
            grade = int(fields[2])
        except ValueError:
            raise Refused from None
        if not -(2**31) <= grade < 2**31 or qrels.get(fields[0], {}).get(fields[1], grade) != grade:
            raise Refused
        qrels.setdefault(fields[0], {})[fields[1]] = grade
    if not qrels:
        raise Refused
    return qrels


def outcome(load: Any, reference: Any) -> tuple[str, Any]:
    try:
        expected = ("ok", reference())
    except Refused:
        expected = ("refused", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        try:
            got = ("ok", load())
        except (CorpusError, ConfigError, ArtifactError):
            got = ("refused", None)
    return expected, got


# --- strategies ------------------------------------------------------------------------------------------------

scalars = st.one_of(
    st.text(max_size=8),
    st.integers(-3, 3),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
    st.lists(st.integers(0, 2), max_size=2),
    st.sampled_from(["a b", "x\u200by", "\ud800", "d1"]),
)
records = st.dictionaries(st.sampled_from(["_id", "title", "text", "meta"]), scalars, max_size=4)
good_records = st.builds(
    lambda i, t, x: {"_id": i, "title": t, "text": x},
    st.sampled_from(["d1", "d2", "d3", 7, "d 4"]),
    st.text(max_size=6),
    st.text(max_size=6),
)
raw_lines = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=12)
json_lines = st.one_of(
    good_records.map(json.dumps),
    good_records.map(json.dumps),
    records.map(json.dumps),
    raw_lines,
    st.sampled_from(
        [
            '{"_id": "a", "_id": "b", "text": "x"}',
            "[1, 2]",
            "",
            "   ",
            "{",
            "[" * 3000 + "]" * 3000,
            '"just a string"',
            '{"_id": "z", "text": "\\ud83d"}',
        ]
    ),
)
tsv_fields = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n\r"), max_size=6)
tsv_lines = st.one_of(
    st.lists(tsv_fields, min_size=3, max_size=3).map("\t".join),
    st.lists(tsv_fields, min_size=1, max_size=5).map("\t".join),
    st.sampled_from(['d9\tt\t"opens', 'd8\t"q"\tsays "hi"', "", " "]),
)
qrels_lines = st.one_of(
    st.builds(
        lambda q, d, g: f"{q}\t{d}\t{g}",
        st.sampled_from(["q1", "q2", ""]),
        st.sampled_from(["d1", "d2", ""]),
        st.sampled_from(["0", "1", "2", "x", "1.5", "-1", "99999999999"]),
    ),
    st.sampled_from(["query-id\tcorpus-id\tscore", "q1\td1", "q1\td1\t1\textra", "", "  "]),
)


# --- the loaders -----------------------------------------------------------------------------------------------


@FUZZ
@given(lines=st.lists(json_lines, max_size=6), kind=st.sampled_from(["corpus", "queries"]))
def test_jsonl_corpora_and_queries(tmp_path: Path, lines: list[str], kind: str) -> None:
    text = "\n".join(lines) + "\n"
    path = tmp_path / "c.jsonl"
    path.write_bytes(text.encode("utf-8"))
    if kind == "corpus":
        expected, got = outcome(
            lambda: load_corpus(path, progress=False).to_list(), lambda: reference_jsonl(text, "corpus")
        )
    else:
        expected, got = outcome(
            lambda: [{"_id": k, "text": v} for k, v in load_queries(path).items()],
            lambda: reference_jsonl(text, "queries"),
        )
    assert got == expected


@FUZZ
@given(lines=st.lists(tsv_lines, max_size=6))
def test_tsv_corpora(tmp_path: Path, lines: list[str]) -> None:
    text = "\n".join(["_id\ttitle\ttext", *lines]) + "\n"
    path = tmp_path / "c.tsv"
    path.write_bytes(text.encode("utf-8"))
    expected, got = outcome(lambda: load_corpus(path, progress=False).to_list(), lambda: reference_tsv(text))
    assert got == expected


@FUZZ
@given(lines=st.lists(qrels_lines, max_size=6))
def test_qrels(tmp_path: Path, lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    path = tmp_path / "qrels.tsv"
    path.write_text(text)
    expected, got = outcome(lambda: load_qrels(path), lambda: reference_qrels(text))
    assert got == expected


keys = st.sampled_from(["name", "data", "train", "lr", "epochs", "eval", "k", "path", "docids", "scheme", "bogus"])
yaml_values = st.recursive(
    st.one_of(st.integers(-2, 5), st.floats(allow_nan=True), st.text(max_size=5), st.booleans(), st.none()),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
    max_leaves=8,
)


@FUZZ
@given(
    document=st.dictionaries(keys, yaml_values, max_size=4),
    raw=st.sampled_from(["", "a: [1", "x: 1\nx: 2\n", "- 1\n", "\t:"]),
    override=st.sampled_from([[], ["train.lr=-1"], ["eval.k=0"], ["train.epochs=inf"], ["data="]]),
)
def test_recipes_load_or_raise_config_errors(tmp_path: Path, document: dict, raw: str, override: list[str]) -> None:
    import yaml

    for text in (yaml.safe_dump(document), raw):
        path = tmp_path / "r.yaml"
        path.write_text(text)
        try:
            load_recipe(path, override)
        except ConfigError:
            pass


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    def write(tmp: Path) -> None:
        save_npy(tmp, "a.npy", np.arange(5))
        (tmp / "b.json").write_text("{}")

    return write_artifact(tmp_path_factory.mktemp("art") / "art", "k", write, config={"n": 1}, counts={"docs": 5})


@FUZZ
@given(
    key=st.sampled_from(["files", "config", "counts", "kind", "format_version", "digest", "extra"]),
    value=yaml_values,
    entry=st.sampled_from(["a.npy", "../x", "/etc/passwd", "b.json", "c"]),
    redigest=st.booleans(),
)
def test_manifests_load_or_raise_artifact_errors(
    artifact: Path, tmp_path: Path, key: str, value: Any, entry: str, redigest: bool
) -> None:
    import shutil

    from indexing.artifacts import _digest

    folder = tmp_path / "copy"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(artifact, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    if key == "files" and isinstance(value, dict):
        manifest["files"][entry] = value
    else:
        manifest[key] = value
    if redigest:
        manifest["digest"] = _digest(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    try:
        read_manifest(folder)
    except ArtifactError:
        pass
