"""The benchmark scripts run, and their built-in checks hold, at toy sizes (never their timings)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))

    def load(name: str):
        sys.modules.pop(name, None)
        return importlib.import_module(name)

    return load


def test_ngram_decoding_genret_returns_the_seal_anchors_beams(bench, tmp_path) -> None:
    """genret's hybrid n-gram constraint gives the beams of SEAL's per-beam full enumeration, and every
    n-gram either returns occurs in the corpus."""
    report = bench("ngram_decoding").main(
        [
            "--tokens",
            "200k",
            "--model",
            "tiny",
            "--batch",
            "3",
            "--beams",
            "4",
            "--reps",
            "1",
            "--anchor-reps",
            "1",
            "--warmup",
            "0",
            "--json",
            str(tmp_path / "out.json"),
        ]
    )
    (result,) = report["settings"]
    assert result["checks"]["same_beams_as_anchor"] and result["checks"]["queries"]["identical"] == 3
    assert result["checks"]["all_genret_ngrams_occur"] and result["checks"]["all_anchor_ngrams_occur"]
    assert (tmp_path / "out.json").is_file()


def test_constrained_decoding_checks_hold_for_a_tiny_setting(bench, tmp_path) -> None:
    """The trie settings' checks (same beams as GENRE's dict trie, valid ids, equal replay outputs) and the
    JSON keys the issue names."""
    report = bench("constrained_decoding").main(
        [
            "--model",
            "tiny",
            "--ids",
            "2000",
            "--batch",
            "2",
            "--beams",
            "4",
            "--reps",
            "1",
            "--replay-reps",
            "1",
            "--json",
            str(tmp_path / "out.json"),
        ]
    )
    (result,) = report["settings"]
    assert all(result["checks"].values()), result["checks"]
    for key in ("ratio_vs_unconstrained", "anchor_speedup", "constraint_only_speedup"):
        assert result[key] > 0


def test_ngram_index_benchmark_runs_both_backends_and_their_steps_agree(bench, tmp_path) -> None:
    """Both backends are built, timed and allow the same tokens on the step (the script raises if not);
    the sa follower table is reported."""
    report = bench("ngram_index").main(
        [
            "--tokens",
            "30000",
            "--reps",
            "1",
            "--target-ms",
            "0.5",
            "--workdir",
            str(tmp_path / "work"),
            "--json",
            str(tmp_path / "out.json"),
        ]
    )
    by_backend = {r["backend"]: r for r in report["results"]}
    assert set(by_backend) == {"sa", "fm"}
    assert by_backend["sa"]["followers"]["rows"] >= 0 and "followers" not in by_backend["fm"]
    for result in by_backend.values():
        assert result["build"]["n_tokens"] == 30000
        assert "step_allowed_model" in result["latency"]
    assert (tmp_path / "out.json").is_file()


def test_seal_scoring_benchmark_finds_the_reference_rankings(bench, tmp_path) -> None:
    """The numba scoring and its pure-Python reference give the same rankings on the no-model check's
    n-grams (the script raises if not); both are timed and the ratio reported."""
    fixture = Path(__file__).resolve().parent / "fixtures" / "tiny_beir"
    report = bench("seal_scoring").main(
        ["--data", str(fixture), "--queries", "5", "--reps", "1", "--json", str(tmp_path / "out.json")]
    )
    assert report["checks"]["identical_rankings"] and report["checks"]["queries"] == 5
    assert set(report["results"]) == {"reference", "new", "new_first_stage_only"}
    assert report["ratio_reference_over_new"] > 0 and 0 <= report["ndcg10"]["new"] <= 1
    assert (tmp_path / "out.json").is_file()


def test_teacher_quality_judges_every_teacher_on_train_queries_only(bench, tmp_path) -> None:
    module = bench("teacher_quality")
    report = module.main(["--data", "minicorpus", "--split", "train", "--json", str(tmp_path / "t.json")])
    assert set(report["teachers"]) == {"bm25", "dense", "bm25+dense"} and report["queries"] == 200
    assert all(0.0 < t["nDCG@10"] <= 1.0 for t in report["teachers"].values())
    with pytest.raises(SystemExit, match="never on the test queries"):
        module.main(["--data", "minicorpus", "--split", "test"])


def test_merge_beir_keeps_every_document_and_only_the_first_collections_judgments(bench, tmp_path) -> None:
    from indexing.corpus import load_beir

    tiny = Path(__file__).resolve().parent / "fixtures" / "tiny_beir"
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        folder.symlink_to(tiny, target_is_directory=True)
    counts = bench("merge_beir").main([str(first), str(second), "--out", str(tmp_path / "merged")])
    source = load_beir(tiny, split="test")
    merged = load_beir(tmp_path / "merged", split="test")
    assert counts == {"first": len(source.corpus), "second": len(source.corpus)}
    assert len(merged.corpus) == 2 * len(source.corpus)
    rows = {row["_id"]: row for row in merged.corpus}
    for row in source.corpus:
        for prefix in ("first", "second"):
            assert rows[f"{prefix}:{row['_id']}"]["text"] == row["text"]
    assert merged.queries == source.queries
    assert merged.qrels == {q: {f"first:{d}": g for d, g in rel.items()} for q, rel in source.qrels.items()}
    with pytest.raises(FileExistsError):
        bench("merge_beir").main([str(first), "--out", str(tmp_path / "merged")])


def test_onepager_decode_knobs_scores_each_copy_bonus_on_held_out_questions(bench, tmp_path) -> None:
    """Each row is the saved model decoded with that bonus: bonus 0 gives the retriever's own figures."""
    import dataclasses
    import json

    from genret.evaluation import evaluate
    from genret.pipeline import run_recipe
    from genret.recipe import load_recipe
    from genret.retrievers.onepager import OnePagerRetriever
    from tests.genret.retrievers.test_onepager import QA
    from tests.genret.systems.test_onepager_system import RECIPE, write_qa_folder

    data = write_qa_folder(tmp_path / "qa")
    recipe = tmp_path / "onepager.yaml"
    recipe.write_text(RECIPE.replace("DATA", str(data)))
    run_recipe(load_recipe(recipe, [f"output_dir={tmp_path / 'out'}"]), progress=False, evaluate_after=False)
    folder = str(tmp_path / "out" / "retriever")
    out = tmp_path / "knobs.json"
    args = ["--retriever", folder, "--data", str(data), "--heldout", "6", "--copy-bonus", "0", "6", "--closed-book"]
    assert bench("onepager_decode_knobs").main([*args, "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["copy_bonus"] for r in rows] == [0.0, 6.0] and all(0 <= r["F1"] <= 1 for r in rows)
    saved = OnePagerRetriever.from_pretrained(folder)
    config = dataclasses.replace(saved.config, copy_bonus=0.0)
    plain = OnePagerRetriever(saved.model, saved.tokenizer, saved.index, config, passages=saved.passages)
    run = plain.search({q: v[0] for q, v in QA.items()}, k=10, progress=False)
    expected = evaluate(run, {q: {v[1]: 1} for q, v in QA.items()}, ("nDCG@10", "R@1", "R@10"))
    assert {m: rows[0][m] for m in expected} == pytest.approx(expected)
