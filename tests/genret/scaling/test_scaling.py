"""Scaling sweeps: nested subsets that keep the judged documents, merged collections, a real (tiny) sweep through
the CLI that resumes only its missing cells, the report drawn from results alone, and the cost measurements."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genret.cli import main
from genret.config import ConfigError
from genret.evaluation import evaluate
from genret.scaling.config import load_sweep, sweep_kind
from genret.scaling.measure import timed_search
from genret.scaling.report import write_report
from genret.scaling.results import append_row, read_rows
from genret.scaling.subsets import NestedSubsets, load_sweep_data

TINY = Path(__file__).resolve().parents[2] / "fixtures" / "tiny_beir"  # 20 documents, 7 + 3 judged
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


@st.composite
def corpora(draw: st.DrawFn) -> tuple[list[str], set[str], int, list[int]]:
    n = draw(st.integers(1, 60))
    ids = [f"doc{i}" for i in draw(st.permutations(range(n)))]
    judged = set(draw(st.lists(st.sampled_from(ids), max_size=n, unique=True)))
    sizes = draw(st.lists(st.integers(len(judged), n), min_size=1, max_size=6))
    return ids, judged, draw(st.integers(0, 2**16)), sorted(sizes)


@settings(max_examples=150, deadline=None)
@given(corpora())
def test_subsets_are_nested_and_keep_every_judged_document(case: tuple[list[str], set[str], int, list[int]]) -> None:
    ids, judged, seed, sizes = case
    subsets = NestedSubsets(ids, judged, seed)
    previous: set[str] = set()
    for size in sizes:
        chosen = subsets.ids(size)
        assert len(chosen) == size == len(set(chosen))
        assert judged <= set(chosen)
        assert previous <= set(chosen)  # every smaller subset is inside the larger ones
        assert chosen == [d for d in ids if d in set(chosen)]  # corpus order
        previous = set(chosen)
    assert subsets.ids("all") == subsets.ids(None) == ids
    assert NestedSubsets(ids, judged, seed).ids(sizes[0]) == subsets.ids(sizes[0])  # deterministic for a seed


def test_subset_sizes_are_checked_and_seeds_differ() -> None:
    ids = [f"d{i}" for i in range(100)]
    subsets = NestedSubsets(ids, {"d3", "d50"}, seed=0)
    with pytest.raises(ValueError, match="size 1 is smaller than the 2 judged"):
        subsets.rows(1)
    with pytest.raises(ValueError, match="size 101 is larger than the corpus"):
        subsets.rows(101)
    with pytest.raises(ValueError, match="size 'most'"):
        subsets.rows("most")
    with pytest.raises(ValueError, match="not in the corpus"):
        NestedSubsets(ids, {"nope"})
    assert subsets.ids(40) != NestedSubsets(ids, {"d3", "d50"}, seed=1).ids(40)


def test_union_prefixes_ids_and_judges_queries_against_their_own_collection(tmp_path: Path) -> None:
    for name in ("a", "b"):  # two collections with the very same raw ids
        shutil.copytree(TINY, tmp_path / name)
    data = load_sweep_data(
        {
            "a": {"path": str(tmp_path / "a"), "train_split": "train"},
            "b": {"path": str(tmp_path / "b"), "max_eval_queries": 2},
        }
    )
    ids = data.corpus["_id"]
    assert len(ids) == len(set(ids)) == 40 and ids[0] == "a/d01" and ids[20] == "b/d01"
    assert list(data.eval_queries) == ["a/q1", "a/q3", "a/q4", "a/q5", "a/q7", "b/q1", "b/q3"]
    assert set(data.train_queries) == {"a/q2", "a/q6", "a/q8"} and data.train_qrels["a/q6"] == {"a/d16": 1, "a/d02": 1}
    for qid, rel in [*data.eval_qrels.items(), *data.train_qrels.items()]:
        assert all(doc.split("/")[0] == qid.split("/")[0] for doc in rel)
        assert data.collection_of.get(qid, "a") == qid.split("/")[0]
    # the other collection's copy of a relevant document is not relevant
    assert evaluate({"a/q1": {"b/d01": 1.0}}, {"a/q1": data.eval_qrels["a/q1"]}, ("R@10",))["R@10"] == 0.0
    assert evaluate({"a/q1": {"a/d01": 1.0}}, {"a/q1": data.eval_qrels["a/q1"]}, ("R@10",))["R@10"] == 0.5
    single = load_sweep_data({"a": {"path": str(TINY)}})
    assert single.corpus["_id"][0] == "d01" and "q1" in single.eval_qrels  # one collection keeps its own ids


SWEEP = f"""# a tiny sweep for the tests
name: tiny
output_dir: never-used
collections:
  tiny: {{path: {TINY}, train_split: train}}
sizes: [12, all]
systems:
  - {{name: bm25, system: bm25}}
  - name: dsi-atomic
    system: dsi
    overrides: [docids.scheme=atomic, "docids.params={{}}", model.name_or_path=t5, train.batch_size=8,
                "model.config={{d_model: 32, d_kv: 8, d_ff: 64, num_layers: 1, num_decoder_layers: 1, num_heads: 4}}"]
budget: {{max_steps: 1}}
eval: {{k: 5, measures: [nDCG@10, R@1, R@10, RR@10], batch_size: 4}}
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sweep")
    recipe = root / "tiny.yaml"
    recipe.write_text(SWEEP)
    out = root / "out"
    assert main(["scale", str(recipe), f"output_dir={out}", "--no-progress"]) == 0
    return recipe, out


def test_sweep_writes_one_row_per_cell_with_quality_and_cost(swept: tuple[Path, Path]) -> None:
    _, out = swept
    rows = read_rows(out)
    assert [(r["size"], r["system"]) for r in rows] == [
        (12, "bm25"),
        (12, "dsi-atomic"),
        (20, "bm25"),
        (20, "dsi-atomic"),
    ]
    for r in rows:
        assert set(r["quality"]) == {"nDCG@10", "R@1", "R@10", "RR@10"}
        assert all(0.0 <= v <= 1.0 for v in r["quality"].values())
        cost = r["cost"]
        assert cost["index_bytes_disk"] > 0 and cost["index_bytes_memory"] > 0 and cost["peak_rss_bytes"] > 0
        assert cost["latency_p95_ms"] >= cost["latency_p50_ms"] > 0 and cost["qps"] > 0
        assert r["info"]["documents"] == r["size"] and r["info"]["judged_documents"] == 10
        assert r["info"]["eval_queries"] == 5 and r["info"]["train_queries"] == 3
    dsi = [r for r in rows if r["system"] == "dsi-atomic"]
    for r in dsi:  # atomic ids: one output row of width d_model per document (tied T5: no bias, no second matrix)
        assert r["cost"]["id_params"] == r["size"] * 32
        assert r["info"]["train_steps"] == 1 and 0 < r["cost"]["train_tokens"]
        assert r["cost"]["train_flops"] == 6 * r["cost"]["params"] * r["cost"]["train_tokens"]
    assert dsi[1]["cost"]["params"] - dsi[0]["cost"]["params"] == 8 * 32  # 8 more documents, 8 more rows
    assert not (out / "cells").exists()  # artifacts removed once measured
    assert {"results.md", "quality_vs_size.png", "cost_vs_size.png", "sweep.json"} <= {p.name for p in out.iterdir()}


def test_rerun_runs_only_the_missing_cells(swept: tuple[Path, Path], tmp_path: Path) -> None:
    recipe, first = swept
    out = tmp_path / "out"
    shutil.copytree(first, out)
    rows = read_rows(out)
    kept = [r for r in rows if r["cell"] != "size=12/system=dsi-atomic"]
    lines = [json.dumps(r) for r in kept]
    (out / "results.jsonl").write_text("\n".join(lines) + "\n" + lines[-1][:40])  # and a row torn by a kill
    with pytest.warns(UserWarning, match="incomplete last row"):
        assert main(["scale", str(recipe), f"output_dir={out}", "--no-progress"]) == 0
    again = read_rows(out)
    assert len(again) == 4 and len({r["cell"] for r in again}) == 4
    assert again[:3] == kept  # untouched, same times
    assert again[3]["cell"] == "size=12/system=dsi-atomic" and again[3]["time"] >= kept[-1]["time"]
    assert main(["scale", str(recipe), f"output_dir={out}", "--no-progress"]) == 0  # all done: nothing runs
    assert read_rows(out) == again


def test_a_folder_of_other_settings_is_refused(swept: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    recipe, out = swept
    before = (out / "results.jsonl").read_text()
    assert main(["scale", str(recipe), f"output_dir={out}", "seed=3", "--no-progress"]) == 2
    assert "other settings (seed differ" in capsys.readouterr().err
    assert (out / "results.jsonl").read_text() == before


def test_sizes_below_the_judged_documents_are_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(SWEEP)
    assert main(["scale", str(recipe), f"output_dir={tmp_path / 'o'}", "sizes=[5]", "--no-progress"]) == 2
    assert "sizes: size 5 is smaller than the 10 judged documents" in capsys.readouterr().err


def test_recipe_errors_name_the_key(tmp_path: Path) -> None:
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(SWEEP)
    with pytest.raises(ConfigError, match="unknown key.*budget.epoch"):
        load_sweep(recipe, ["budget.epoch=2"])
    with pytest.raises(ConfigError, match="max_steps or train_tokens, not both"):
        load_sweep(recipe, ["budget.train_tokens=100"])
    with pytest.raises(ConfigError, match="system 'bm26'"):
        load_sweep(recipe, ["systems=[{name: x, system: bm26}]"])
    assert sweep_kind(recipe) == "quality"
    (tmp_path / "cost.yaml").write_text("kind: cost\n")
    assert sweep_kind(tmp_path / "cost.yaml") == "cost"


def test_report_redraws_from_results_alone(
    swept: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out = swept
    shutil.copy(out / "results.jsonl", tmp_path / "results.jsonl")
    assert main(["scale", "--report", str(tmp_path)]) == 0
    assert "quality_vs_size.png" in capsys.readouterr().out
    table = (tmp_path / "results.md").read_text()
    assert table.count("| bm25 |") == 2 and table.count("| dsi-atomic |") == 2 and "nDCG@10" in table
    for png in ("quality_vs_size.png", "cost_vs_size.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_of_cost_only_rows_skips_what_is_missing(tmp_path: Path) -> None:
    for size, extra in [(1000, {"index_bytes_disk": 5000}), (10000, {})]:
        append_row(
            tmp_path,
            {
                "sweep": "cost",
                "size": size,
                "system": "dsi-atomic",
                "cost": {"params": 1000 + size, "build_s": 0.5, **extra},
            },
        )
    written = {p.name for p in write_report(tmp_path)}
    assert written == {"results.md", "cost_vs_size.png"}
    table = (tmp_path / "results.md").read_text()
    assert "nDCG@10" not in table and "p50 ms" not in table and "disk" in table
    with pytest.raises(FileNotFoundError, match="no results rows"):
        write_report(tmp_path / "empty")


def test_scale_help_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["scale", "--help"])
    assert exit_.value.code == 0
    assert "--report DIR" in capsys.readouterr().out
    assert main(["scale"]) == 2
    assert "genret scale: give a sweep recipe" in capsys.readouterr().err


def test_timed_search_charges_each_query_its_call() -> None:
    calls: list[int] = []

    def search(queries: dict[str, str], k: int) -> dict[str, dict[str, float]]:
        calls.append(len(queries))
        return {q: {"d": 1.0} for q in queries}

    run, latency = timed_search(search, {f"q{i}": "text" for i in range(10)}, k=3, batch_size=4)
    assert calls == [1, 4, 4, 2] and len(run) == 10  # one warm-up call, then batches of 4
    assert latency["latency_p95_ms"] >= latency["latency_p50_ms"] > 0 and latency["qps"] > 0
