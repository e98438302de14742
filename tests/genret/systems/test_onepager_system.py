"""system: onepager through the shared loop: a QA folder (BEIR layout plus answers.jsonl) in, results.json with the
answers' EM / F1 (1-Pager and closed book) and the evidence checks out; the folder serves `genret answer`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genret.cli import main
from genret.pipeline import run_recipe
from genret.recipe import load_recipe
from genret.retrievers import load_retriever
from genret.retrievers.onepager import OnePagerRetriever
from tests.genret.retrievers.test_onepager import CORPUS, QA

RECIPE = """
name: tiny-onepager
output_dir: runs/never-used
system: onepager
data: {path: DATA, train_split: train, eval_split: test, memorization_docs: 6}
onepager:
  cloze_per_doc: 2
  search: {num_beams: 4, max_length: 24, batch_size: 8, max_source_length: 32, copy_bonus: 1.0}
model:
  name_or_path: bert
  dropout: 0.0
  decoder_layers: 1
  config: {hidden_size: 64, num_hidden_layers: 1, num_attention_heads: 4, intermediate_size: 128}
pairs: {max_source_length: 32}
train: {max_steps: 150, batch_size: 16, lr: 0.005, log_every: 50}
eval: {k: 3, measures: [nDCG@3, R@1], baselines: [bm25]}
"""


def write_qa_folder(folder: Path) -> Path:
    """The toy corpus and its questions in BEIR layout; every question is in both splits (a memorization check)."""
    (folder / "qrels").mkdir(parents=True)
    columns = zip(CORPUS["_id"], CORPUS["title"], CORPUS["text"], strict=True)
    docs = [{"_id": i, "title": t, "text": x} for i, t, x in columns]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": v[0]}) + "\n" for q, v in QA.items()))
    texts = dict(zip(CORPUS["_id"], CORPUS["text"], strict=True))
    answers = [{"_id": q, "answers": [v[2]], "answer_starts": [texts[v[1]].index(v[2])]} for q, v in QA.items()]
    (folder / "answers.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers))
    for split in ("train", "test"):
        rows = "".join(f"{q}\t{v[1]}\t1\n" for q, v in QA.items())
        (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    return folder


def test_onepager_recipe_reports_answers_and_checks_and_serves_genret_answer(tmp_path, capsys) -> None:
    data = write_qa_folder(tmp_path / "qa")
    path = tmp_path / "onepager.yaml"
    path.write_text(RECIPE.replace("DATA", str(data)))
    results = run_recipe(load_recipe(path, [f"output_dir={tmp_path / 'out'}"]), progress=False)
    assert results["system"] == "onepager" and results["answered_questions"] == len(QA)
    answers = results["metrics"]["answers"]
    assert set(answers) == {"onepager", "closed_book"} and set(answers["onepager"]) == {"EM", "F1"}
    assert answers["onepager"]["F1"] >= 0.5  # its own training questions
    assert results["checks"]["answer_in_evidence"] == 1.0 and results["checks"]["keywords_in_evidence"] == 1.0
    assert results["paths"]["incomplete_paths"] == 0 and results["paths"]["examples"]["cloze"] >= 4
    retriever = load_retriever(str(tmp_path / "out" / "retriever"))
    assert isinstance(retriever, OnePagerRetriever) and retriever.passages is not None
    capsys.readouterr()
    assert main(["answer", "--index", str(tmp_path / "out" / "retriever"), "Who discovered oxygen?"]) == 0
    out = capsys.readouterr().out
    assert "answer:" in out and "path:" in out and "evidence: p4" in out
    assert main(["answer", "--index", str(tmp_path / "out" / "retriever"), " "]) == 2
    capsys.readouterr()
    folder = str(tmp_path / "out" / "retriever")
    report = tmp_path / "metrics.json"
    assert main(["evaluate", "--index", folder, "--data", str(data), "--measures", "R@1", "--json", str(report)]) == 0
    assert "answers (6 questions)" in capsys.readouterr().out
    assert set(json.loads(report.read_text())["answers"]) == {"EM", "F1"}


def test_cloze_questions_without_answers_are_refused(tmp_path) -> None:
    path = tmp_path / "onepager.yaml"
    path.write_text(RECIPE.replace("DATA", str(tmp_path)).replace("copy_bonus: 1.0", "copy_bonus: 1.0, answers: false"))
    with pytest.raises(ValueError, match="cloze_per_doc needs onepager.search.answers"):
        load_recipe(path)
