"""Cost measurements of one sweep cell: parameters, training tokens and FLOPs, index bytes, memory, latency.

Definitions (what the ``cost`` fields of a results row mean):

- ``params``: unique parameters of the model that answers queries (the seq2seq model for DSI/SEAL, the
  MiniLM query encoder for dense, 0 for BM25). ``id_params``: parameters that exist only for the
  identifiers: the rows of new docid tokens in the output layer (weight and bias), plus those rows of the
  decoder's input embeddings when they are not tied to it. Atomic ids add N x d; semantic ids a few
  hundred rows; SEAL (corpus n-grams in the tokenizer's own vocabulary) none.
- ``train_tokens``: non-padding source tokens plus target tokens of every training batch the optimizer
  stepped on (counted by the collator). ``train_flops`` = 6 x params x train_tokens, the usual
  dense-transformer estimate (forward 2, backward 4 per parameter and token); it ignores attention's
  quadratic term and the output layer's cost on padding, and charges every token the whole model.
- ``index_bytes_disk``: bytes of every file of the retriever's saved folder (``save_pretrained``).
  ``index_bytes_memory``: ``nbytes`` of every numpy array and torch tensor reachable from the retriever
  object (model weights included, each counted once); Python lists and strings (document ids) are not counted.
- ``peak_rss_bytes``: the process's peak resident set during the cell (``VmHWM``, :mod:`genret.scaling.memory`),
  reset at the start of the cell through ``/proc/self/clear_refs`` where Linux allows; else the process's peak so far.
- Latency: the evaluation queries are searched in calls of ``eval.batch_size`` queries after one warm-up
  call; each query is charged its call's wall time divided by the queries in the call, so ``latency_p50_ms``
  / ``latency_p95_ms`` are percentiles of that per-query time and ``qps`` = queries / total search time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from genret.scaling.memory import reset_peak


def reset_peak_rss() -> str:
    """Reset the process's peak RSS; returns the scope the next reading covers (a row's ``peak_rss_scope``)."""
    return "cell" if reset_peak() else "process"


def reachable_nbytes(obj: Any, max_depth: int = 8) -> int:
    """``nbytes`` of the numpy arrays and torch tensors reachable from ``obj`` (attributes, containers,
    module parameters and buffers), each storage counted once."""
    import torch

    seen: set[int] = set()
    storages: set[tuple[int, int]] = set()
    total = 0

    def walk(value: Any, depth: int) -> None:
        nonlocal total
        if depth > max_depth or id(value) in seen or isinstance(value, (str, bytes, int, float, bool, type(None))):
            return
        seen.add(id(value))
        if isinstance(value, np.ndarray):
            base = value.base if isinstance(value.base, np.ndarray) else value
            key = (id(base), 0)
            if key not in storages:
                storages.add(key)
                total += int(base.nbytes)
            return
        if isinstance(value, torch.Tensor):
            storage = value.untyped_storage()
            key = (storage.data_ptr(), storage.nbytes())
            if key not in storages:
                storages.add(key)
                total += int(storage.nbytes())
            return
        if isinstance(value, torch.nn.Module):
            for tensor in [*value.parameters(), *value.buffers()]:
                walk(tensor, depth + 1)
            return
        if isinstance(value, dict):
            for item in value.values():
                walk(item, depth + 1)
            return
        if isinstance(value, (list, tuple, set)):
            if value and all(isinstance(v, (str, int, float)) for v in list(value)[:8]):
                return  # ids, texts, numbers: not arrays
            for item in value:
                walk(item, depth + 1)
            return
        attrs = getattr(value, "__dict__", None)
        if attrs is not None and type(value).__module__.split(".")[0] in ("genret", "indexing", "bm25s"):
            for item in attrs.values():
                walk(item, depth + 1)
        for name in getattr(type(value), "__slots__", ()):
            walk(getattr(value, name, None), depth + 1)

    walk(obj, 0)
    return total


def id_params(model: Any, base_vocab_size: int) -> int:
    """Parameters of the identifier tokens (ids >= ``base_vocab_size``): their output rows (and bias), and their
    decoder input embedding rows when those are a separate matrix."""
    output = model.get_output_embeddings()
    new = max(0, int(output.weight.shape[0]) - base_vocab_size)
    total = new * int(output.weight.shape[1])
    if getattr(output, "bias", None) is not None:
        total += new
    decoder_in = model.get_decoder().get_input_embeddings().weight
    if decoder_in.data_ptr() != output.weight.data_ptr():
        total += max(0, int(decoder_in.shape[0]) - base_vocab_size) * int(decoder_in.shape[1])
    return total


class CountingCollator:
    """Wraps a seq2seq collator and records each batch's tokens (non-padding source + target)."""

    def __init__(self, collate: Callable[[Any], dict[str, Any]]) -> None:
        self.collate = collate
        self.batches: list[int] = []

    def __call__(self, rows: Any) -> dict[str, Any]:
        batch = self.collate(rows)
        self.batches.append(int(batch["attention_mask"].sum()) + int((batch["labels"] != -100).sum()))
        return batch

    def tokens(self, batches: int) -> int:
        """Tokens of the first ``batches`` batches (a loader may have built one more than were stepped on)."""
        return int(sum(self.batches[:batches]))


def mean_example_tokens(collate: Callable[[Any], dict[str, Any]], pairs: Any, chunk: int = 512) -> float:
    """Mean non-padding source + target tokens per training pair (turns a token budget into steps)."""
    total = 0
    for start in range(0, len(pairs), chunk):
        batch = collate([pairs[i] for i in range(start, min(start + chunk, len(pairs)))])
        total += int(batch["attention_mask"].sum()) + int((batch["labels"] != -100).sum())
    return total / max(len(pairs), 1)


def timed_search(
    search: Callable[[dict[str, str], int], dict[str, dict[str, float]]],
    queries: dict[str, str],
    k: int,
    batch_size: int,
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """The run of ``queries`` searched in calls of ``batch_size``, and its latency figures (see module docstring)."""
    qids = list(queries)
    if qids:
        search({qids[0]: queries[qids[0]]}, k)  # warm-up: lazy loads and first-call allocations are not latency
    run: dict[str, dict[str, float]] = {}
    per_query: list[float] = []
    total = 0.0
    for start in range(0, len(qids), batch_size):
        batch = {q: queries[q] for q in qids[start : start + batch_size]}
        t0 = time.perf_counter()
        run.update(search(batch, k))
        elapsed = time.perf_counter() - t0
        total += elapsed
        per_query.extend([elapsed / len(batch)] * len(batch))
    if not per_query:
        return run, {}
    ms = np.asarray(per_query) * 1000.0
    return run, {
        "latency_p50_ms": float(np.percentile(ms, 50)),
        "latency_p95_ms": float(np.percentile(ms, 95)),
        "qps": len(qids) / total if total > 0 else None,
    }
