"""The quality sweep (``genret scale RECIPE``): every (corpus size, system) cell built, trained, evaluated, timed.

For each size (nested subsets, :mod:`genret.scaling.subsets`) and each system of the recipe, a cell
indexes the subset (BM25, dense MiniLM, or a DSI / SEAL recipe's index, pairs and model), trains the
generative systems for the recipe's budget (fixed epochs, steps or tokens), searches the evaluation
queries in timed calls and appends one row to ``OUTPUT_DIR/results.jsonl`` (:mod:`genret.scaling.results`;
cost fields as :mod:`genret.scaling.measure` defines them). Cells already in results.jsonl are skipped,
so a killed sweep reruns only the missing ones (a cell cut short starts over). The table and figures
(:mod:`genret.scaling.report`) are written at the end.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import shutil
import time
from functools import cache
from pathlib import Path
from typing import Any

from genret.config import ConfigError, apply_overrides, from_dict, to_dict
from genret.evaluation import Qrels, evaluate
from genret.provenance import machine_info
from genret.retrievers.baselines import BASELINES, build_baseline
from genret.scaling.config import SweepConfig, SystemConfig, load_sweep, to_collection_dicts
from genret.scaling.measure import (
    CountingCollator,
    id_params,
    mean_example_tokens,
    reachable_nbytes,
    reset_peak_rss,
    timed_search,
)
from genret.scaling.memory import folder_bytes, peak_rss
from genret.scaling.results import append_row, cell_key, done_cells
from genret.scaling.subsets import NestedSubsets, SweepData, load_sweep_data

SWEEP_FILE = "sweep.json"


def run_sweep_file(recipe: str, overrides: list[str] | None = None, progress: bool = True) -> Path:
    """Load a quality sweep recipe (a path or a packaged name) and run it; returns the output folder."""
    from genret.recipe import resolve_recipe

    return run_sweep(load_sweep(resolve_recipe(recipe), overrides), progress=progress)


def run_sweep(config: SweepConfig, progress: bool = True) -> Path:
    """Run every missing cell of ``config`` and write the report; returns the output folder."""
    from tqdm.auto import tqdm

    from genret.scaling.report import write_report

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_same_sweep(out, config)
    data = load_sweep_data(to_collection_dicts(config))
    subsets = NestedSubsets(data.corpus["_id"], data.judged(config.keep_train_judged), config.seed)
    try:
        sizes = sorted({subsets.resolve(s) for s in config.sizes})
    except ValueError as err:
        hint = (
            " (keep_train_judged=false keeps only the evaluation queries' judged documents)"
            if config.keep_train_judged
            else ""
        )
        raise ConfigError(f"sweep {config.name!r}: sizes: {err}{hint}") from None
    cells = [(size, system) for size in sizes for system in config.systems]
    done = done_cells(out)
    todo = [(size, system) for size, system in cells if cell_key(size, system.name) not in done]
    bar = tqdm(
        total=len(cells), initial=len(cells) - len(todo), desc=f"sweep {config.name}", unit="cell", disable=not progress
    )
    bar.write(
        f"{config.name}: {len(subsets)} documents ({subsets.n_judged} judged), sizes {sizes}, "
        f"{len(config.systems)} systems: {len(cells)} cells, {len(cells) - len(todo)} already done"
    )
    for number, (size, system) in enumerate(todo, 1):
        bar.write(f"[{number}/{len(todo)}] size={size} system={system.name} ...")
        start = time.perf_counter()
        row = run_cell(config, data, subsets, size, system, out, progress)
        row["info"]["cell_s"] = time.perf_counter() - start
        append_row(out, row)
        quality = row["quality"]
        bar.write(
            f"[{number}/{len(todo)}] size={size} system={system.name}: nDCG@10 {quality.get('nDCG@10', 0):.3f} "
            f"R@10 {quality.get('R@10', 0):.3f} in {time.perf_counter() - start:.0f} s"
        )
        bar.update(1)
    bar.close()
    if (out / "cells").is_dir() and not any((out / "cells").iterdir()):
        (out / "cells").rmdir()
    write_report(out)
    return out


def _check_same_sweep(out: Path, config: SweepConfig) -> None:
    """Refuse an output folder whose rows came from other settings (sizes and systems may be added)."""
    path = out / SWEEP_FILE
    current = to_dict(config)
    if path.is_file() and done_cells(out):  # rows were measured with the stored settings
        old = json.loads(path.read_text())
        fixed = ("collections", "corpus", "seed", "keep_train_judged", "budget", "eval")
        changed = [key for key in fixed if old.get(key) != current.get(key)]
        old_systems = {s["name"]: s for s in old.get("systems", [])}
        changed += [
            f"systems.{s['name']}"
            for s in current["systems"]
            if s["name"] in old_systems and old_systems[s["name"]] != s
        ]
        if changed:
            raise ConfigError(
                f"{out} holds a sweep run with other settings ({', '.join(changed)} differ from "
                f"{path}); choose another output_dir, or delete the folder to start over"
            )
    path.write_text(json.dumps(current, indent=2) + "\n")


def run_cell(
    config: SweepConfig,
    data: SweepData,
    subsets: NestedSubsets,
    size: int,
    system: SystemConfig,
    out: Path,
    progress: bool = True,
) -> dict[str, Any]:
    """Build, train (generative systems), evaluate and time one cell; returns its results row."""
    rows = subsets.rows(size)
    corpus = data.corpus.select(rows)
    kept = set(subsets.ids(size))
    train_qrels: Qrels = {}
    for qid, rel in data.train_qrels.items():  # all of them when keep_train_judged; else those still judged here
        here = {d: r for d, r in rel.items() if d in kept}
        if here:
            train_qrels[qid] = here
    train_queries = {q: data.train_queries[q] for q in train_qrels}
    work = out / "cells" / cell_key(size, system.name).replace("/", "_")
    if work.exists():
        shutil.rmtree(work)  # what a killed run of this cell left: it starts over
    work.mkdir(parents=True)
    rss_scope = reset_peak_rss()
    if system.system in BASELINES:
        retriever, cost, info = _baseline_cell(system, corpus)
    else:
        retriever, cost, info = _generative_cell(config, system, corpus, train_queries, train_qrels, work, progress)
    run, latency = timed_search(_search_fn(retriever), data.eval_queries, config.eval.k, config.eval.batch_size)
    quality = evaluate(run, data.eval_qrels, tuple(config.eval.measures))
    retriever.save_pretrained(work / "retriever")
    cost.update(
        index_bytes_disk=folder_bytes(work / "retriever"),
        index_bytes_memory=reachable_nbytes(retriever),
        peak_rss_bytes=peak_rss(),
        **latency,
    )
    info.update(
        documents=len(corpus),
        judged_documents=subsets.n_judged,
        eval_queries=len(data.eval_queries),
        train_queries=len(train_queries),
        peak_rss_scope=rss_scope,
        machine=_machine(),
    )
    collections = sorted(set(data.collection_of.values()))
    if len(collections) > 1:
        info["quality_by_collection"] = {
            name: evaluate(
                {q: run.get(q, {}) for q in data.eval_qrels if data.collection_of[q] == name},
                {q: r for q, r in data.eval_qrels.items() if data.collection_of[q] == name},
                tuple(config.eval.measures),
            )
            for name in collections
        }
    if not config.keep_artifacts:
        shutil.rmtree(work)
    return {
        "sweep": config.name,
        "cell": cell_key(size, system.name),
        "size": size,
        "system": system.name,
        "quality": quality,
        "cost": cost,
        "info": info,
    }


def _search_fn(retriever: Any) -> Any:
    """``(queries, k) -> Run`` without per-call progress bars."""
    if "progress" in inspect.signature(retriever.search).parameters:
        return lambda queries, k: retriever.search(queries, k=k, progress=False)
    return lambda queries, k: retriever.search(queries, k=k)


def _baseline_cell(system: SystemConfig, corpus: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    t0 = time.perf_counter()
    retriever = build_baseline(system.system, corpus, progress=False)
    params = _minilm_params() if system.system == "dense" else 0
    cost = {"params": params, "id_params": 0, "build_s": time.perf_counter() - t0}
    return retriever, cost, {"kind": system.system}


@cache
def _minilm_params() -> int:
    """Parameters of the dense baseline's query encoder (all-MiniLM-L6-v2)."""
    from transformers import AutoModel

    from indexing.tokenizer import minilm_path

    return sum(p.numel() for p in AutoModel.from_pretrained(str(minilm_path())).parameters())


def system_recipe(system: SystemConfig) -> Any:
    """The base recipe of a generative system with its overrides (its data section is unused)."""
    from genret.recipe import Recipe, load_recipe

    if system.recipe:
        recipe = load_recipe(system.recipe, system.overrides)
    else:
        recipe = from_dict(Recipe, apply_overrides({"system": system.system}, list(system.overrides)))
    if recipe.system != system.system:
        raise ConfigError(
            f"system {system.name!r} is {system.system!r} but its recipe {system.recipe!r} is {recipe.system!r}"
        )
    return recipe


def _generative_cell(
    config: SweepConfig,
    system: SystemConfig,
    corpus: Any,
    queries: dict[str, str],
    qrels: Qrels,
    work: Path,
    progress: bool,
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    from genret.encoder_cache import training_inputs
    from genret.models import count_parameters
    from genret.systems import get_system
    from genret.training import train

    recipe = system_recipe(system)
    t0 = time.perf_counter()
    prepared = get_system(recipe.system).prepare(recipe, corpus, queries or None, qrels or None, False)
    build_s = time.perf_counter() - t0
    dataset, base_collate, lengths = training_inputs(
        prepared.model,
        prepared.hf_tokenizer,
        prepared.pairs,
        freeze=recipe.model.freeze_encoder,
        max_source_length=recipe.pairs.max_source_length,
        cache_dir=work / "encoder_cache",
        max_gb=recipe.model.encoder_cache_gb,
        progress=progress,
    )
    collate = CountingCollator(base_collate)
    budget, settings = config.budget, recipe.train
    per_step = settings.batch_size * settings.grad_accum
    if budget.train_tokens is not None:
        per_example = mean_example_tokens(collate.collate, dataset)
        schedule = {"max_steps": max(1, math.ceil(budget.train_tokens / (per_example * per_step)))}
    elif budget.max_steps is not None:
        schedule = {"max_steps": budget.max_steps}
    else:
        schedule = {"max_steps": None, "epochs": float(budget.epochs)}
    train_config = dataclasses.replace(settings, output_dir=str(work / "train"), **schedule)
    t0 = time.perf_counter()
    result = train(prepared.model, dataset, collate, train_config, progress=progress, lengths=lengths)
    train_s = time.perf_counter() - t0
    model = result.model
    params = count_parameters(model)["total"]
    base_vocab = (getattr(model.config, "genret", None) or {}).get("base_vocab_size", 0)
    train_tokens = collate.tokens(result.step * settings.grad_accum)
    cost = {
        "params": params,
        "id_params": id_params(model, base_vocab) if base_vocab else 0,
        "train_tokens": train_tokens,
        "train_s": train_s,
        "train_flops": 6.0 * params * train_tokens,
        "build_s": build_s,
    }
    info = {
        "kind": recipe.system,
        "recipe": system.recipe,
        "overrides": list(system.overrides),
        "train_steps": result.step,
        "final_loss": result.loss if math.isfinite(result.loss) else None,
        "train_pairs": len(prepared.pairs),
        "epochs": result.step * per_step / max(len(prepared.pairs), 1),
        "budget": {**schedule, "train_tokens": budget.train_tokens} if budget.train_tokens else schedule,
    }
    return prepared.make_retriever(model), cost, info


def _machine() -> dict[str, Any]:
    """Where a cell ran (the box may be shared: the load average says how busy it was)."""
    import torch

    return {**machine_info(), "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}
