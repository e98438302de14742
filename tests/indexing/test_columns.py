"""indexing.columns: the three corpus shapes (Dataset, dict of lists, list of records) read alike."""

from __future__ import annotations

import datasets
import pytest

from indexing.columns import column, column_names, document_texts

RECORDS = [
    {"_id": "a", "title": "Moon ", "text": "rocks"},
    {"_id": "b", "title": None, "text": " sea "},
    {"_id": "c", "text": "", "title": "  "},
]


def shapes() -> list:
    as_dict = {"_id": ["a", "b", "c"], "title": ["Moon ", None, "  "], "text": ["rocks", " sea ", ""]}
    return [RECORDS, as_dict, datasets.Dataset.from_dict(as_dict)]


@pytest.mark.parametrize("corpus", shapes(), ids=["records", "dict", "dataset"])
def test_every_shape_gives_the_same_columns_and_texts(corpus) -> None:
    assert set(column_names(corpus)) == {"_id", "title", "text"}
    assert column(corpus, "_id") == ["a", "b", "c"]
    assert document_texts(corpus) == ["Moon rocks", "sea", ""]  # blank and missing parts skipped, stripped
    assert document_texts(corpus, fields=("text",)) == ["rocks", "sea", ""]
    with pytest.raises(KeyError, match=r"no 'url' column \(columns: "):
        column(corpus, "url")


def test_records_missing_a_field_read_none_and_a_corpus_without_text_fields_is_refused() -> None:
    records = [{"_id": "a", "text": "x"}, {"_id": "b", "title": "T"}]
    assert column_names(records) == ["_id", "text", "title"]
    assert column(records, "title") == [None, "T"]
    assert document_texts(records) == ["x", "T"]
    with pytest.raises(KeyError, match="no column among"):
        document_texts([{"_id": "a"}])
