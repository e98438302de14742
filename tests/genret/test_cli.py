"""The genret command end to end on a real collection: index, inspect, reload, refuse damage, evaluate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from genret.cli import main
from indexing.docid_index import DocidIndex

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CRANFIELD = DATA / "cranfield"
needs_data = pytest.mark.skipif(not CRANFIELD.is_dir(), reason="../shared/data not present")

SCHEMES = {
    "atomic": [],
    "naive": ["--order", "shuffled", "--seed", "3"],
    "semantic": ["--encoder", "tfidf", "--k", "10", "--c", "100"],
    "title": [],
}


@pytest.fixture(scope="module")
def cranfield_indexes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("indexes")
    out = {}
    for scheme, extra in SCHEMES.items():
        out[scheme] = root / scheme
        assert main(["index", "--data", str(CRANFIELD), "--scheme", scheme, "--out", str(out[scheme]), *extra]) == 0
    return out


@needs_data
@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_index_is_unique_inspectable_and_reloads_in_a_fresh_process(
    cranfield_indexes: dict[str, Path], scheme: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = cranfield_indexes[scheme]
    assert main(["inspect", str(folder)]) == 0
    shown = capsys.readouterr().out
    assert "docid-index" in shown and "documents: 1400" in shown and "OK" in shown

    index = DocidIndex.load(folder)
    assert len(index) == 1400 and len(set(index.docids.identifiers)) == 1400
    seqs = {index.docids.tokens(i).tobytes() for i in range(len(index))}
    assert len(seqs) == 1400
    # Every identifier walks the trie to its own document.
    assert all(index.trie.lookup(index.docids.tokens(i).tolist()) == i for i in range(0, 1400, 7))

    code = (
        "import sys, json; from indexing.docid_index import DocidIndex\n"
        "ix = DocidIndex.load(sys.argv[1])\n"
        "print(json.dumps([ix.docids.identifiers[:5], [ix.trie.lookup(ix.docids.tokens(i).tolist()) "
        "for i in range(5)]]))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, check=True)
    identifiers, docs = json.loads(out.stdout)
    assert identifiers == index.docids.identifiers[:5] and docs == [0, 1, 2, 3, 4]


@needs_data
def test_flipping_one_byte_in_any_file_is_refused(
    cranfield_indexes: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    source = cranfield_indexes["semantic"]
    files = [p for p in sorted(source.rglob("*")) if p.is_file()]
    assert len(files) >= 5
    for i, path in enumerate(files):
        copy = tmp_path / f"copy{i}"
        shutil.copytree(source, copy)
        target = copy / path.relative_to(source)
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0x20
        target.write_bytes(bytes(data))
        assert main(["inspect", str(copy)]) == 3, path.name
        err = capsys.readouterr().err
        assert path.name in err or "manifest" in err
        with pytest.raises(ValueError):
            DocidIndex.load(copy)


@needs_data
def test_index_refuses_to_overwrite_without_flag(
    cranfield_indexes: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["index", "--data", str(CRANFIELD), "--scheme", "atomic", "--out", str(cranfield_indexes["atomic"])]) == 2
    )
    assert "--overwrite" in capsys.readouterr().err


def test_overwrite_never_deletes_a_folder_that_is_not_an_artifact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "mydata"
    data.mkdir()
    (data / "corpus.jsonl").write_text('{"_id": "1", "text": "a document"}\n')
    (data / "notes.txt").write_text("mine")
    for command in ("index", "ngrams"):
        extra = ["--scheme", "atomic"] if command == "index" else []
        assert main([command, "--data", str(data), *extra, "--out", str(data), "--overwrite"]) == 2
        assert "not a genret artifact folder" in capsys.readouterr().err
    assert sorted(p.name for p in data.iterdir()) == ["corpus.jsonl", "notes.txt"]
    assert main(["index", "--data", str(data), "--scheme", "atomic", "--out", str(data / "notes.txt" / "x")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_malformed_corpus_line_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "a", "title": "", "text": "one"}\n{"_id": "b", "text": "two"\n')
    assert main(["index", "--data", str(corpus), "--scheme", "atomic", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "corpus.jsonl:2" in err
    assert not (tmp_path / "out").exists()


def test_duplicate_ids_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"_id": i, "title": "", "text": f"doc {j}"}) + "\n" for j, i in enumerate(["a", "b", "a", "c"])
        )
    )
    assert main(["index", "--data", str(corpus), "--scheme", "naive", "--out", str(tmp_path / "x")]) == 2
    assert "duplicate" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="duplicate"):
        code = main(
            [
                "index",
                "--data",
                str(corpus),
                "--scheme",
                "naive",
                "--out",
                str(tmp_path / "y"),
                "--on-duplicate",
                "warn",
            ]
        )
    assert code == 0
    index = DocidIndex.load(tmp_path / "y")
    assert index.docids.doc_ids == ["a", "b", "c"]
    assert index.docids.identifiers == ["0", "1", "2"]


@needs_data
def test_evaluate_bm25_on_scifact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "bm25.trec"
    metrics = tmp_path / "metrics.json"
    assert (
        main(
            [
                "evaluate",
                "--retriever",
                "bm25",
                "--data",
                str(DATA / "scifact"),
                "--run",
                str(run),
                "--json",
                str(metrics),
            ]
        )
        == 0
    )
    values = json.loads(metrics.read_text())
    assert 0.64 <= values["nDCG@10"] <= 0.70
    assert "nDCG@10" in capsys.readouterr().out
    qids = {line.split()[0] for line in run.read_text().splitlines()}
    assert len(qids) == 300


@pytest.mark.parametrize("backend", ["sa", "fm"])
def test_ngrams_builds_a_verified_index_that_loads_and_counts(tmp_path, capsys, backend: str) -> None:
    from indexing.corpus import load_corpus
    from indexing.ngrams import NgramIndex
    from indexing.tokenizer import load_tokenizer

    out = tmp_path / "ng"
    assert (
        main(
            [
                "ngrams",
                "--data",
                "minicorpus",
                "--backend",
                backend,
                "--title-markers",
                "1",
                "2",
                "--shard-tokens",
                "5000",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert f"backend {backend}" in capsys.readouterr().out
    assert main(["inspect", str(out)]) == 0
    index = NgramIndex.load(out)
    corpus = load_corpus("minicorpus")
    assert index.n_docs == len(corpus) and len(index.shards) > 1 and index.doc_ids == list(corpus["_id"])
    tok = load_tokenizer("minilm")
    title = [1, *tok.encode(corpus[7]["title"]), 2]
    docs, starts = index.locate(index.find([title]), limit=5)[0]
    assert docs.tolist() == [7] and starts.tolist() == [0]
    assert main(["ngrams", "--data", "minicorpus", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_index_scheme_ngram_is_the_ngrams_command(tmp_path, capsys) -> None:
    """``genret index --scheme ngram --backend fm`` builds the same index as ``genret ngrams``; options of
    the other kind are refused, not ignored."""
    from indexing.ngrams import NgramIndex

    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["index", "--data", "minicorpus", "--scheme", "ngram", "--backend", "fm", "--out", str(a)]) == 0
    assert main(["ngrams", "--data", "minicorpus", "--backend", "fm", "--out", str(b)]) == 0
    x, y = NgramIndex.load(a), NgramIndex.load(b)
    assert x.backend == y.backend == "fm" and x.n_tokens == y.n_tokens and x.doc_ids == y.doc_ids
    assert [t.tolist() for t in x.next_tokens_csr(x.root(1))] == [t.tolist() for t in y.next_tokens_csr(y.root(1))]
    assert main(["index", "--data", "minicorpus", "--scheme", "ngram", "--k", "10", "--out", str(tmp_path / "c")]) == 2
    assert "--k do not apply" in capsys.readouterr().err
    assert (
        main(["index", "--data", "minicorpus", "--scheme", "atomic", "--backend", "sa", "--out", str(tmp_path / "d")])
        == 2
    )
    assert "--backend only apply" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "option", "why"),
    [
        (["search", "--index", "x", "q", "-k", "0"], "-k", "expected a positive integer, got '0'"),
        (["search", "--index", "x", "q", "-k", "-1"], "-k", "expected a positive integer, got '-1'"),
        (["evaluate", "--data", "minicorpus", "--k", "0"], "--k", "expected a positive integer"),
        (["evaluate", "--data", "minicorpus", "--measures", "bogus"], "--measures", "unknown measure 'bogus'"),
        (
            ["index", "--data", "minicorpus", "--scheme", "naive", "--seed", "-1", "--out", "o"],
            "--seed",
            "expected a non-negative integer, got '-1'",
        ),
        (
            ["ngrams", "--data", "minicorpus", "--shard-tokens", "-5", "--out", "o"],
            "--shard-tokens",
            "expected a positive integer",
        ),
        (
            ["ngrams", "--data", "minicorpus", "--shard-tokens", "0", "--out", "o"],
            "--shard-tokens",
            "expected a positive integer",
        ),
        (
            ["ngrams", "--data", "minicorpus", "--title-markers", "1", "x", "--out", "o"],
            "--title-markers",
            "expected an integer, got 'x'",
        ),
    ],
)
def test_bad_option_values_are_refused_before_any_work(
    argv: list[str], option: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert option in err and why in err


@pytest.mark.parametrize("markers", [["1", "1"], ["1", "999999"]])
def test_title_markers_must_be_two_token_ids_of_the_tokenizer(
    markers: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ngrams", "--data", "minicorpus", "--title-markers", *markers, "--out", str(tmp_path / "o")]) == 2
    assert "--title-markers: title markers must be two different token ids" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_every_retriever_refuses_a_k_that_is_not_a_positive_integer(k: object) -> None:
    from genret.retrievers.bm25 import BM25Retriever
    from indexing.corpus import load_corpus

    retriever = BM25Retriever.index(load_corpus("minicorpus"), show_progress=False)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        retriever.search({"q": "tidal energy"}, k=k)  # type: ignore[arg-type]


@pytest.mark.parametrize("query", ["", "   ", "\x07\x1b"])
def test_search_refuses_a_query_with_nothing_in_it_before_loading_anything(query: str, capsys) -> None:
    assert main(["search", "--index", "no-such-folder", "bees", query]) == 2
    assert "nothing to search in" in capsys.readouterr().err


def test_a_missing_tokenizer_folder_is_a_clear_error(tmp_path: Path, capsys) -> None:
    missing = str(tmp_path / "no" / "such" / "tokenizer")
    assert main(["ngrams", "--data", "minicorpus", "--tokenizer", missing, "--out", str(tmp_path / "o")]) == 2
    assert f"tokenizer folder not found: {missing}" in capsys.readouterr().err


def test_a_missing_encoder_folder_is_a_clear_error(tmp_path: Path, capsys) -> None:
    missing = str(tmp_path / "no" / "such" / "encoder")
    assert (
        main(
            [
                "index",
                "--data",
                "minicorpus",
                "--scheme",
                "semantic",
                "--encoder",
                missing,
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert f"encoder folder not found: {missing}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["index", "--data", "no/such/folder", "--scheme", "atomic", "--out", "{tmp}/a"], 2),
        (["ngrams", "--data", "no/such/folder", "--out", "{tmp}/b"], 2),
        (["evaluate", "--data", "no/such/folder"], 2),
        (["inspect", "{tmp}"], 3),  # a folder that is not an artifact: the check ran and failed
        (["run", "no/such/recipe.yaml"], 2),
        (["train", "quickstart", "train.lr=-1"], 2),
        (["search", "--index", "{tmp}", "bees"], 2),
        (["scale"], 2),
    ],
)
def test_every_command_exits_2_on_bad_input_and_3_on_a_failed_check(argv: list[str], code: int, tmp_path: Path) -> None:
    """The rule of `genret --help`: 0 done, 2 bad input (one line, no traceback), 3 a check that failed."""
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == code
