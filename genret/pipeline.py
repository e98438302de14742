"""Run a recipe end to end: index -> training pairs -> model -> train -> save -> search -> evaluate.

``run_recipe(recipe)`` writes one result folder: ``retriever/`` (the trained index, loadable with
``genret.retrievers.load_retriever``), ``train/`` (metrics.jsonl, checkpoints), ``runs/*.trec`` and
``results.json`` with every system's metrics on the same queries, BM25 (and dense) beside genret. Only the
first step differs between the systems: the registered system's ``prepare`` (:mod:`genret.systems`: index,
pairs, model and how to wrap a trained model).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genret.checkpoints import refuse_mixed_runs
from genret.config import ConfigError, from_dict, to_dict
from genret.encoder_cache import training_inputs
from genret.evaluation import Qrels, RetrievalEvaluator, evaluate, write_trec_run
from genret.provenance import git_commit, machine_info
from genret.recipe import Recipe
from genret.retrievers.baselines import build_baseline
from genret.systems import get_system
from genret.training import train
from indexing.corpus import load_beir, load_qrels, load_queries


@dataclass
class EvalSet:
    """Queries and their judgments, evaluated the same way for every system."""

    queries: dict[str, str]
    qrels: Qrels


def memorization_set(corpus: Any, limit: int | None = None) -> EvalSet:
    """Each document's own text as the query (cut to the first tokens by the retriever) -> that document.

    R@1 on this set measures how much of the corpus the model has memorized.
    """
    from genret.dsi_pairs import document_texts

    texts = document_texts(corpus)
    ids = corpus["_id"]
    rows = [i for i, text in enumerate(texts) if text.strip()]
    if limit is not None:
        rows = rows[:limit]
    return EvalSet({ids[i]: texts[i] for i in rows}, {ids[i]: {ids[i]: 1} for i in rows})


def limit_corpus(corpus: Any, keep: set[str], max_docs: int) -> Any:
    """The documents in ``keep`` plus the first others (corpus order) up to ``max_docs``, in corpus order."""
    ids = corpus["_id"]
    budget = max(0, max_docs - sum(1 for d in ids if d in keep))
    rows = []
    for i, doc in enumerate(ids):
        if doc in keep:
            rows.append(i)
        elif budget:
            rows.append(i)
            budget -= 1
    return corpus.select(rows)


def _first(queries: dict[str, str], qrels: Qrels, n: int | None) -> EvalSet:
    keep = list(queries)[:n] if n is not None else list(queries)
    return EvalSet({q: queries[q] for q in keep}, {q: qrels[q] for q in keep})


RESUMABLE_CHANGES = (
    "train.log_every",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.log_with",
    "train.num_workers",
    "train.output_dir",
    "expected",
)
"""Recipe keys a resumed run may change: they say how a run is logged and checked, not what it computes
(``train.output_dir`` is always ``OUTPUT_DIR/train`` in a recipe run)."""


def _flat_keys(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(_flat_keys(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def refuse_changed_recipe(saved: dict[str, Any], now: dict[str, Any], where: Path) -> None:
    """ConfigError naming every key whose value differs from the run being resumed (but those that only say how
    it is logged or checked, ``RESUMABLE_CHANGES``): a resumed run must be the run it continues."""
    old, new = _flat_keys(saved), _flat_keys(now)
    allowed = tuple(f"{k}." for k in RESUMABLE_CHANGES)
    changed = [
        k
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k) and k not in RESUMABLE_CHANGES and not k.startswith(allowed)
    ]
    if changed:
        shown = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise ConfigError(
            f"cannot resume the run recorded in {where}: the recipe changed ({shown}); resume "
            f"with the recipe as it was, or start a new run in another output_dir"
        )


def run_recipe(
    recipe: Recipe, resume: bool = False, progress: bool = True, evaluate_after: bool = True
) -> dict[str, Any]:
    """Run ``recipe``; returns (and writes to ``output_dir/results.json``) every system's metrics.

    ``evaluate_after=False`` stops after saving the trained retriever (``genret train``).
    """
    out = Path(recipe.output_dir)
    refuse_mixed_runs(out / "train", resume)  # before minutes of indexing, not after
    saved = out / "recipe.json"
    if resume and saved.is_file():  # read through today's schema: a key added since then takes its default
        before = to_dict(from_dict(Recipe, json.loads(saved.read_text()), "recipe.json"))
        refuse_changed_recipe(before, to_dict(recipe), saved)
    out.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(to_dict(recipe), indent=2) + "\n")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    commit = git_commit()  # the code this process loaded, read before anything can change the checkout

    data = load_beir(recipe.data.path, split=recipe.data.eval_split, on_duplicate=recipe.data.on_duplicate)
    train_queries, train_qrels = None, None
    if recipe.data.train_split:
        train_qrels = load_qrels(recipe.data.path, recipe.data.train_split)
        all_queries = load_queries(recipe.data.path, on_duplicate=recipe.data.on_duplicate)
        train_queries = {q: all_queries[q] for q in train_qrels if q in all_queries}
    heldout = EvalSet({}, {})
    if train_qrels and recipe.data.heldout_queries:  # withheld from training, probed while it runs
        held = list(train_qrels)[-recipe.data.heldout_queries :]
        heldout = EvalSet({q: train_queries[q] for q in held if q in train_queries}, {q: train_qrels[q] for q in held})
        train_qrels = {q: rel for q, rel in train_qrels.items() if q not in heldout.qrels}

    if recipe.data.max_docs is not None:
        judged = {d for rel in [*data.qrels.values(), *(train_qrels or {}).values()] for d in rel}
        data.corpus = limit_corpus(data.corpus, judged, recipe.data.max_docs)
    prepared = get_system(recipe.system).prepare(recipe, data.corpus, train_queries, train_qrels, progress)
    pairs, model, hf_tokenizer = prepared.pairs, prepared.model, prepared.hf_tokenizer
    timings["index_s"] = time.perf_counter() - start
    memo = memorization_set(data.corpus, recipe.data.memorization_docs)

    def probe(trained: Any) -> dict[str, float]:
        n = recipe.eval.during_training
        retriever = prepared.make_retriever(trained, device=str(trained.device))
        subset = _first(memo.queries, memo.qrels, n)
        run = retriever.search(subset.queries, k=1, progress=False)
        metrics = {"memorization_R@1": evaluate(run, subset.qrels, ("R@1",))["R@1"]}
        if heldout.queries:
            run = retriever.search(heldout.queries, k=recipe.eval.k, progress=False)
            metrics.update({f"heldout_{m}": v for m, v in evaluate(run, heldout.qrels, ("nDCG@10", "R@10")).items()})
        trained.train()
        return metrics

    t0 = time.perf_counter()
    dataset, collate, lengths = training_inputs(
        model,
        hf_tokenizer,
        pairs,
        freeze=recipe.model.freeze_encoder,
        max_source_length=recipe.pairs.max_source_length,
        cache_dir=out / "encoder_cache",
        max_gb=recipe.model.encoder_cache_gb,
        progress=progress,
    )
    timings["encoder_cache_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    train_config = dataclasses.replace(recipe.train, output_dir=str(out / "train"))  # the caller's recipe unchanged
    result = train(
        model,
        dataset,
        collate,
        train_config,
        evaluate=probe if recipe.eval.during_training else None,
        resume=resume,
        progress=progress,
        lengths=lengths,
    )
    timings["train_s"] = time.perf_counter() - t0
    final_loss, log = result.loss, Path(train_config.output_dir) / "metrics.jsonl"
    if math.isnan(final_loss) and log.is_file():  # resumed a finished run: no step ran now; nan is not JSON
        logged = [json.loads(line) for line in log.read_text().splitlines()]
        final_loss = next((m["loss"] for m in reversed(logged) if "loss" in m), final_loss)  # the last logged

    retriever = prepared.make_retriever(result.model)
    retriever.save_pretrained(out / "retriever", overwrite=True)
    if not evaluate_after:
        return {
            "recipe": recipe.name,
            "retriever": str(out / "retriever"),
            "train_steps": result.step,
            "final_loss": final_loss,
            "timings": timings,
        }

    queries = _first(data.queries, data.qrels, recipe.data.max_eval_queries)
    sets = {"queries": queries, "memorization": memo}
    systems: dict[str, Any] = {"genret": retriever}
    for name in recipe.eval.baselines:
        systems[name] = build_baseline(name, data.corpus, progress=progress)
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    (out / "runs").mkdir(exist_ok=True)
    t0 = time.perf_counter()
    for set_name, eval_set in sets.items():
        measures = recipe.eval.measures if set_name == "queries" else ["R@1", "R@10"]
        evaluator = RetrievalEvaluator(
            eval_set.queries, eval_set.qrels, measures, k=recipe.eval.k, primary_metric=measures[0]
        )
        for system, retriever_ in systems.items():
            metrics.setdefault(set_name, {})[system] = evaluator(retriever_)
            write_trec_run(evaluator.run, out / "runs" / f"{system}.{set_name}.trec", tag=system)
    extra: dict[str, Any] = {}
    if prepared.evaluate_extra is not None:  # what the system measures beyond retrieval (1-Pager: answers)
        extra = dict(prepared.evaluate_extra(retriever, queries.queries, progress))
        metrics.update(extra.pop("metrics", {}))
    timings["eval_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - start

    results = {
        "recipe": recipe.name,
        "system": recipe.system,
        "data": recipe.data.path,
        "commit": commit,
        "machine": {
            **machine_info(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
        "documents": prepared.documents,
        "queries": len(queries.queries),
        "train_pairs": len(pairs),
        "train_steps": result.step,
        "final_loss": final_loss,
        "metrics": metrics,
        **extra,
        "timings": timings,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def format_results(results: dict[str, Any]) -> str:
    """The metrics tables of ``run_recipe``'s results, one per query set, systems side by side."""
    lines = [
        f"{results['recipe']}: {results['documents']} documents, {results['train_steps']} steps, "
        f"{results['timings']['total_s']:.0f} s"
    ]
    for set_name, by_system in results["metrics"].items():
        systems = list(by_system)
        measures = list(next(iter(by_system.values())))
        lines.append("")
        label = "own text as query" if set_name == "memorization" else f"{results['queries']} queries"
        lines.append(f"{set_name} ({label})")
        width = max(10, *(len(s) + 2 for s in systems))  # a system's name never runs into the next one's
        lines.append(f"{'measure':10s}" + "".join(f"{s:>{width}s}" for s in systems))
        for m in measures:
            lines.append(f"{m:10s}" + "".join(f"{by_system[s][m]:{width}.4f}" for s in systems))
    return "\n".join(lines)


def check_expected(
    results: dict[str, Any], expected: dict[str, dict[str, float]], tolerance: float = 0.01
) -> list[str]:
    """Where measured metrics lie outside a recipe's ``expected`` +- ``tolerance`` (the same recipe, seed and
    machine reproduce their figures within 0.01; a figure that moved either way is reported).

    Keys of ``expected`` are ``system`` or ``set/system`` (default set: ``queries``).
    """
    problems = []
    for key, measures in expected.items():
        set_name, _, system = key.rpartition("/")
        got = results["metrics"].get(set_name or "queries", {}).get(system)
        if got is None:
            problems.append(f"{key}: no such system/set in the results")
            continue
        for measure, value in measures.items():
            if measure not in got:
                problems.append(f"{key} {measure}: not measured")
            elif abs(got[measure] - value) > tolerance:
                problems.append(f"{key} {measure}: {got[measure]:.4f}, outside expected {value:.4f} +- {tolerance}")
    return problems
