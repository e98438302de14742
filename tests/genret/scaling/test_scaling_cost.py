"""The synthetic cost sweep: the generator, the cells' measurements against brute force, rows and resume."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from genret.config import ConfigError, load_config
from genret.scaling.cost import run_cost_config
from genret.scaling.cost_build import measure_build
from genret.scaling.cost_config import SCHEMES, CostSweepConfig, DecodeConfig
from genret.scaling.results import read_rows
from indexing.embeddings import token_tfidf_embeddings
from indexing.synthetic import as_dataset, document_lengths, zipf_documents, zipf_token_stream

COST_FIELDS = {
    "build_s",
    "index_bytes_disk",
    "index_bytes_memory",
    "peak_rss_bytes",
    "latency_p50_ms",
    "latency_p95_ms",
    "qps",
}


def small_config(out: Path, sizes: list[int], **changes: object) -> CostSweepConfig:
    decode = DecodeConfig(batch=2, beams=3, warmup=0, rounds=2, query_length=4, ngram_length=4)
    return dataclasses.replace(
        CostSweepConfig(name="test-cost", output_dir=str(out), sizes=sizes, isolate=False, decode=decode), **changes
    )


# ------------------------------------------------------------------------------------------ generator


def test_generator_is_deterministic_nested_and_in_range() -> None:
    tokens, offsets = zipf_documents(500, vocab=1000, min_length=5, max_length=9, seed=3)
    again = zipf_documents(500, vocab=1000, min_length=5, max_length=9, seed=3)
    assert np.array_equal(tokens, again[0]) and np.array_equal(offsets, again[1])
    other = zipf_documents(500, vocab=1000, min_length=5, max_length=9, seed=4)[0]
    assert not np.array_equal(tokens[: len(other)], other[: len(tokens)])
    lengths = np.diff(offsets)
    assert offsets[0] == 0 and len(offsets) == 501 and lengths.min() >= 5 and lengths.max() <= 9
    assert set(np.unique(lengths)) == set(range(5, 10))
    assert np.array_equal(lengths, document_lengths(500, 5, 9, 3))
    assert tokens.min() >= 2 and tokens.max() < 1000  # pad 0 and eos 1 never occur
    bigger, big_offsets = zipf_documents(2000, vocab=1000, min_length=5, max_length=9, seed=3)
    assert np.array_equal(big_offsets[:501], offsets) and np.array_equal(bigger[: offsets[-1]], tokens)


def test_generator_is_zipfian() -> None:
    tokens, _ = zipf_documents(20_000, vocab=5000, s=1.0, min_length=50, max_length=50, seed=0)
    freq = np.sort(np.bincount(tokens, minlength=5000)[2:])[::-1].astype(float)
    ranks = np.arange(1, 201)
    slope = np.polyfit(np.log(ranks), np.log(freq[:200]), 1)[0]
    assert -1.1 < slope < -0.9  # frequency ~ 1 / rank
    expected_top = 1 / np.sum(1 / np.arange(1, 4999))  # P(rank 1) under Zipf(1) over 4998 ids
    assert freq[0] / len(tokens) == pytest.approx(expected_top, rel=0.03)
    flat, _ = zipf_documents(20_000, vocab=5000, s=0.0, min_length=50, max_length=50, seed=0)
    counts = np.bincount(flat, minlength=5000)[2:]
    assert counts.max() / counts.mean() < 1.5  # s = 0: uniform


def test_token_stream_has_the_exact_length_and_documents_of_64_to_192() -> None:
    tokens, offsets = zipf_token_stream(100_003, vocab=32000, seed=1)
    assert len(tokens) == offsets[-1] == 100_003 and tokens.dtype == np.uint16
    assert np.diff(offsets)[:-1].min() >= 64 and np.diff(offsets).max() <= 192


def test_as_dataset_spells_token_ids_as_words() -> None:
    tokens, offsets = zipf_documents(3, vocab=50, min_length=4, max_length=4, seed=0)
    data = as_dataset(tokens, offsets, title_tokens=1)
    assert data.column_names == ["_id", "title", "text"] and data["_id"] == ["d0", "d1", "d2"]
    assert data[1]["title"] == f"w{tokens[4]}" and data[1]["text"].split() == [f"w{t}" for t in tokens[5:8]]


@pytest.mark.parametrize("docs", [400, 120])  # more documents than token ids, and fewer
def test_token_tfidf_matches_the_text_tfidf_encoder(docs: int) -> None:
    from indexing.columns import document_texts
    from indexing.embeddings import tfidf_embeddings

    tokens, offsets = zipf_documents(docs, vocab=300, min_length=10, max_length=30, seed=2)
    ours = token_tfidf_embeddings(tokens, offsets, 300, 16, 0)
    text = tfidf_embeddings(document_texts(as_dataset(tokens, offsets)), 16, 0)
    assert ours.shape == text.shape == (docs, 16)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(ours @ ours.T, text @ text.T, atol=1e-4)  # same space, up to signs of axes


# ------------------------------------------------------------------------------------------ cells vs brute force


@pytest.mark.parametrize("scheme", ["dsi-atomic", "dsi-naive", "dsi-semantic"])
def test_trie_cell_matches_brute_force(tmp_path: Path, scheme: str) -> None:
    config = small_config(tmp_path, [300], semantic=dataclasses.replace(CostSweepConfig().semantic, k=4, c=20))
    tokens, offsets = zipf_documents(300, min_length=8, max_length=12)
    build = measure_build(config, scheme, tokens, offsets)
    docids, trie = build["index"].docids, build["index"].trie
    seqs = [(*docids.tokens(i).tolist(), docids.eos_token_id) for i in range(300)]
    prefixes = {s[:j] for s in seqs for j in range(1, len(s) + 1)}
    assert build["trie_nodes"] == trie.n_nodes == len(prefixes) + 1  # + the root
    assert build["max_depth"] == max(len(s) for s in seqs)
    assert [trie.lookup(list(s[:-1])) for s in seqs] == list(range(300))
    assert build["index_bytes_memory"] == trie.nbytes() > 0 and build["build_s"] > 0
    assert build["new_tokens"] == {"dsi-atomic": 300, "dsi-naive": 0}.get(scheme, build["new_tokens"])


@pytest.mark.parametrize("backend", ["sa", "fm"])
def test_ngram_cell_matches_brute_force(tmp_path: Path, backend: str) -> None:
    config = small_config(tmp_path, [200])
    tokens, offsets = zipf_documents(200, vocab=60, min_length=5, max_length=15, seed=1)
    build = measure_build(config, f"ngram-{backend}", tokens, offsets)
    index = build["index"]
    assert index.n_docs == 200 and index.n_tokens == offsets[-1] == len(tokens)
    docs = [tokens[offsets[i] : offsets[i + 1]].tolist() for i in range(200)]
    for n in (1, 2, 3):
        counts = Counter(tuple(d[j : j + n]) for d in docs for j in range(len(d) - n + 1))
        grams = sorted(counts)[:: max(1, len(counts) // 50)]
        assert index.find([list(g) for g in grams]).counts.tolist() == [counts[g] for g in grams]
    assert index.find([[0], [1]]).counts.tolist() == [0, 0]
    assert build["index_bytes_memory"] == index.nbytes() > 0


# ------------------------------------------------------------------------------------------ the sweep


def test_sweep_writes_rows_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    run_cost_config(small_config(out, [50]), progress=False)
    first = read_rows(out)
    assert [(r["size"], r["system"]) for r in first] == [(50, s) for s in SCHEMES]
    folder = run_cost_config(small_config(out, [50, 200]), progress=False)  # resume: only size 200 is measured
    rows = read_rows(folder)
    assert rows[: len(first)] == first and [(r["size"], r["system"]) for r in rows[len(first) :]] == [
        (200, s) for s in SCHEMES
    ]
    for row in rows:
        assert set(row["cost"]) == COST_FIELDS and "quality" not in row
        assert all(v > 0 for v in row["cost"].values()), row["cell"]
        assert row["cost"]["latency_p50_ms"] <= row["cost"]["latency_p95_ms"]
        info = row["info"]
        assert info["corpus"]["documents"] == row["size"] and info["decode"]["valid_share"] == 1.0
        assert info["decode"]["rows"] == 6 and len(info["decode"]["batch_ms"]) == 2
    ngram = next(r for r in rows if r["cell"] == "size=200/system=ngram-sa")
    assert ngram["info"]["corpus"]["tokens"] == int(zipf_documents(200, min_length=48, max_length=80)[1][-1])
    assert (folder / "results.md").is_file() and (folder / "config.json").is_file()
    run_cost_config(small_config(out, [50, 200]), progress=False)  # all done: nothing appended
    assert read_rows(folder) == rows
    with pytest.raises(ConfigError, match="decode"):  # other settings would mix incomparable rows
        run_cost_config(small_config(out, [50], decode=DecodeConfig(batch=4)), progress=False)


def test_isolated_cell_runs_in_a_fresh_process(tmp_path: Path) -> None:
    config = small_config(tmp_path, [50], schemes=["ngram-sa"], isolate=True)
    row = read_rows(run_cost_config(config, progress=False))[0]
    assert row["info"]["peak_rss"] == "cell process (fresh)" and row["cost"]["peak_rss_bytes"] > 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: cost\nschemes: [dsi-atomic, bm25]", "schemes: unknown.*bm25"),
        ("kind: quality", "kind: a cost sweep"),
        ("kind: cost\nsizes: [0]", "sizes"),
        ("kind: cost\ndecode: {beam: 3}", "unknown key.*decode.beam"),
    ],
)
def test_bad_cost_recipes_are_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match=message):
        load_config(CostSweepConfig, path)
