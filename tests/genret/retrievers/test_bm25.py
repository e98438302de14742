"""BM25Retriever on a hand-made corpus and on scifact: ranking, k, empty queries, artifacts."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import datasets
import pytest

from genret.evaluation import RetrievalEvaluator, evaluate
from genret.retrievers import BM25Retriever, Retriever
from indexing.artifacts import ArtifactError, read_manifest, write_artifact

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
SCIFACT = DATA / "scifact"
HAS_STEMMER = importlib.util.find_spec("Stemmer") is not None

DOCS = [
    {"_id": "cat", "title": "Cats", "text": "The cat sat on the mat. Cats purr when they are happy."},
    {"_id": "dog", "title": "Dogs", "text": "The dog chased the cat around the garden."},
    {"_id": "zeb", "title": "Zebras", "text": "A zebra has stripes; the okapi is a rare relative of the giraffe."},
    {"_id": "car", "title": "Cars", "text": "A car has four wheels and an engine."},
    {"_id": "empty", "title": "", "text": ""},
    {"_id": "run", "title": "Running", "text": "She runs every morning; running keeps her fit."},
]


@pytest.fixture(scope="module")
def corpus() -> datasets.Dataset:
    return datasets.Dataset.from_list(DOCS)


@pytest.fixture(scope="module")
def retriever(corpus: datasets.Dataset) -> BM25Retriever:
    return BM25Retriever.index(corpus, show_progress=False)


def test_rare_term_ranks_its_document_first(retriever: BM25Retriever) -> None:
    run = retriever.search({"q1": "okapi", "q2": "the cat and the dog", "q3": "ENGINE wheels"}, k=3)
    assert list(run["q1"]) == ["zeb"]  # only document with the term; non-matching ones are left out
    assert max(run["q2"], key=run["q2"].get) in {"cat", "dog"} and set(run["q2"]) == {"cat", "dog"}
    assert max(run["q3"], key=run["q3"].get) == "car"
    assert isinstance(retriever, Retriever) and len(retriever) == len(DOCS)


def test_title_field_is_indexed(corpus: datasets.Dataset) -> None:
    both = BM25Retriever.index(corpus, show_progress=False)
    text_only = BM25Retriever.index(corpus, fields=("text",), show_progress=False)
    assert "zeb" in both.search({"q": "zebras"})["q"]
    assert text_only.search({"q": "zebras"})["q"] == {}


def test_k_larger_than_corpus_and_k_cuts(retriever: BM25Retriever) -> None:
    run = retriever.search({"q": "cat dog zebra car running mat"}, k=1000)
    assert set(run["q"]) == {"cat", "dog", "zeb", "car", "run"}  # every matching doc; "empty" matches nothing
    top2 = retriever.search({"q": "cat dog zebra car running mat"}, k=2)["q"]
    assert len(top2) == 2 and set(top2) <= set(run["q"])
    assert min(top2.values()) >= max(v for d, v in run["q"].items() if d not in top2)
    with pytest.raises(ValueError, match="k must be"):
        retriever.search({"q": "cat"}, k=0)


def test_empty_and_unknown_queries_return_empty_results(retriever: BM25Retriever) -> None:
    run = retriever.search({"blank": "", "stop": "the of and", "oov": "xylophone", "ok": "cat"}, k=5)
    assert run["blank"] == run["stop"] == run["oov"] == {}
    assert "cat" in run["ok"]
    assert retriever.search({}, k=5) == {}
    assert retriever.search({"only": "   "}, k=5) == {"only": {}}


def test_list_of_dicts_corpus_gives_the_same_run(retriever: BM25Retriever) -> None:
    from_list = BM25Retriever.index(DOCS, show_progress=False)
    queries = {"a": "cat mat", "b": "rare okapi giraffe"}
    assert from_list.search(queries) == retriever.search(queries)


def test_bad_corpora_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate _id"):
        BM25Retriever.index([*DOCS, {"_id": "cat", "title": "again", "text": "cat"}], show_progress=False)
    with pytest.raises(ValueError, match="no column"):
        BM25Retriever.index(datasets.Dataset.from_list([{"_id": "a", "body": "x"}]), show_progress=False)
    with pytest.raises(ValueError, match="empty corpus"):
        BM25Retriever.index([], show_progress=False)
    with pytest.raises(ValueError, match="unknown BM25 method"):
        BM25Retriever.index(DOCS, method="bm99", show_progress=False)


def test_save_load_round_trip_gives_identical_runs(retriever: BM25Retriever, tmp_path: Path) -> None:
    folder = tmp_path / "bm25"
    retriever.save_pretrained(folder)
    manifest = read_manifest(folder, kind="bm25")
    assert manifest["config"]["k1"] == 1.5 and manifest["config"]["fields"] == ["title", "text"]
    assert manifest["counts"]["documents"] == len(DOCS)
    assert json.loads((folder / "doc_ids.json").read_text()) == [d["_id"] for d in DOCS]
    assert not [p for p in folder.iterdir() if p.suffix in {".pkl", ".pickle"}]
    loaded = BM25Retriever.from_pretrained(folder, show_progress=False)
    queries = {"a": "cat mat", "b": "rare okapi giraffe", "c": "", "d": "four wheels running"}
    assert loaded.search(queries, k=10) == retriever.search(queries, k=10)
    assert loaded.config == retriever.config
    with pytest.raises(FileExistsError):
        retriever.save_pretrained(folder)
    retriever.save_pretrained(folder, overwrite=True)


@pytest.mark.parametrize("name", ["data.csc.index.npy", "vocab.index.json", "doc_ids.json"])
def test_flipped_byte_is_refused(retriever: BM25Retriever, tmp_path: Path, name: str) -> None:
    folder = tmp_path / "bm25"
    retriever.save_pretrained(folder)
    path = folder / name
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        BM25Retriever.from_pretrained(folder)


def test_foreign_folder_is_refused(tmp_path: Path) -> None:
    write_artifact(tmp_path / "other", kind="docids", write_files=lambda tmp: (tmp / "x.json").write_text("[]"))
    with pytest.raises(ArtifactError, match="expected 'bm25'"):
        BM25Retriever.from_pretrained(tmp_path / "other")
    with pytest.raises(ArtifactError, match="not an artifact folder"):
        BM25Retriever.from_pretrained(tmp_path / "missing")


@pytest.mark.skipif(HAS_STEMMER, reason="PyStemmer is installed")
def test_stemmer_without_pystemmer_says_how_to_install() -> None:
    with pytest.raises(ImportError, match="pip install PyStemmer"):
        BM25Retriever.index(DOCS, stemmer="english", show_progress=False)


@pytest.mark.skipif(not HAS_STEMMER, reason="PyStemmer not installed")
def test_english_stemmer_matches_inflections(tmp_path: Path) -> None:
    stemmed = BM25Retriever.index(DOCS, stemmer="english", show_progress=False)
    plain = BM25Retriever.index(DOCS, show_progress=False)
    assert "run" in stemmed.search({"q": "run"})["q"]
    assert plain.search({"q": "run"})["q"] == {}
    stemmed.save_pretrained(tmp_path / "s")
    assert BM25Retriever.from_pretrained(tmp_path / "s").search({"q": "runner runs"}) == stemmed.search(
        {"q": "runner runs"}
    )


@pytest.mark.skipif(not SCIFACT.is_dir(), reason="../shared/data/scifact not present")
def test_scifact_ndcg_matches_published_bm25(tmp_path: Path) -> None:
    from indexing.corpus import load_beir

    data = load_beir(SCIFACT, split="test")
    assert (len(data.corpus), len(data.queries)) == (5183, 300)
    retriever = BM25Retriever.index(data.corpus, show_progress=False)
    evaluator = RetrievalEvaluator(data.queries, data.qrels, k=100)
    metrics = evaluator(retriever)
    assert 0.64 <= metrics[evaluator.primary_metric] <= 0.70  # BEIR BM25 0.665; bm25s unstemmed 0.662
    assert 0.80 <= metrics["R@100"] <= 0.95
    assert all(len(docs) <= 100 for docs in evaluator.run.values())
    retriever.save_pretrained(tmp_path / "scifact-bm25")
    loaded = BM25Retriever.from_pretrained(tmp_path / "scifact-bm25", show_progress=False)
    assert evaluate(loaded.search(data.queries, k=100), data.qrels) == metrics
