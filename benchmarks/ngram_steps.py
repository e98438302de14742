"""The n-gram index benchmark's decoding steps: sampled n-gram states, model-like scores, where a step's time goes,
and the check that both backends allow the same tokens (``ngram_index.py`` times them)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

ENUMERATE_WIDTH, KEEP_TOP = 1000, 40
BOOSTED, BOOST = 64, 4.0


class Sampler:
    """Real n-grams of an index's corpus: document drawn by length, start uniform inside it."""

    def __init__(self, index: Any, seed: int) -> None:
        self.index = index
        self.rng = np.random.default_rng(seed)
        self.lengths = index.doc_lengths()
        self.cum = np.cumsum(self.lengths)
        self._docs: dict[int, np.ndarray] = {}

    def doc(self, d: int) -> np.ndarray:
        if d not in self._docs:
            self._docs[d] = self.index.doc_tokens(d)
        return self._docs[d]

    def ngram(self, depth: int) -> list[int]:
        while True:
            d = int(np.searchsorted(self.cum, self.rng.integers(0, self.cum[-1]), side="right"))
            if self.lengths[d] >= depth:
                start = int(self.rng.integers(0, self.lengths[d] - depth + 1))
                return self.doc(d)[start : start + depth].tolist()

    def ngrams(self, n: int, depths: tuple[int, int]) -> list[list[int]]:
        return [self.ngram(int(self.rng.integers(depths[0], depths[1] + 1))) for _ in range(n)]

    def by_width(self, n: int, depths: tuple[int, int], low: int, high: int, tries: int = 40) -> list[list[int]]:
        """Up to ``n`` n-grams with ``low <= occurrences <= high``."""
        found: list[list[int]] = []
        for _ in range(tries):
            cand = self.ngrams(max(4 * n, 256), depths)
            width = self.index.find(cand).counts
            found += [g for g, w in zip(cand, width, strict=True) if low <= w <= high]
            if len(found) >= n:
                break
        return found[:n]


def state_tensor(index: Any, ngrams: list[list[int]]) -> Any:
    """The NgramConstraint state of each n-gram: ``[depth, lo per shard, hi per shard]`` int64 rows."""
    import torch

    r = index.find(ngrams)
    live = r.counts > 0
    host = np.concatenate([np.where(live, r.depth, -1)[:, None], r.lo, r.hi], axis=1).astype(np.int64)
    return torch.from_numpy(np.ascontiguousarray(host))


def model_like_scores(index: Any, ngrams: list[list[int]], vocab: int, seed: int) -> tuple[Any, Any]:
    """``(random, model)`` scores ``[n, vocab]`` (see the module docstring)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    random = torch.randn(len(ngrams), vocab, generator=gen)
    model = random.clone()
    rng = np.random.default_rng(seed)
    offsets, tokens, counts = index.next_tokens_csr(index.find(ngrams))
    for i in range(len(ngrams)):
        tok, cnt = tokens[offsets[i] : offsets[i + 1]], counts[offsets[i] : offsets[i + 1]]
        keep = (tok >= 0) & (tok < vocab)
        tok, cnt = tok[keep], cnt[keep].astype(np.float64)
        if len(tok):
            pick = rng.choice(tok, size=min(BOOSTED, len(tok)), replace=False, p=cnt / cnt.sum())
            model[i, torch.from_numpy(pick.astype(np.int64))] += BOOST
    return random, model


def valid_tokens(con: Any, state: Any, scores: Any) -> Any:
    """One allowed token per row (its best-scoring one): what beam search would feed ``advance``."""
    return con.mask(state, scores).argmax(dim=1)


def step_breakdown(con: Any, state: Any, scores: Any, reps: int = 7) -> dict[str, Any]:
    """Where ``allowed_pairs``'s CPU time goes (thread CPU ms per call, mean over ``reps`` calls): the top-k
    over wide rows' scores, the candidate checks (``occurs`` / ``extend``), enumeration
    (``next_tokens``), cutting enumerated wide rows to ``keep_top``, and the rest (numpy glue);
    plus how many wide rows were handed from checks to enumeration. Measured apart from the timed
    cases (the wrappers add a little)."""
    import genret.constraints.ngram as module

    spent: dict[str, float] = {}
    handed: list[int] = []

    inside = [False]  # a timed call made by another (fm's occurs calls extend) counts once

    def timed(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*a: Any, **k: Any) -> Any:
            if inside[0]:
                return fn(*a, **k)
            inside[0] = True
            start = time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                spent[label] = spent.get(label, 0.0) + time.thread_time() - start
                inside[0] = False

        return wrapper

    saved = {name: getattr(module, name) for name in ("top_tokens", "select_best")}
    shards = con.index.shards
    check_top = con._check_top

    def counting_check_top(*a: Any, **k: Any) -> Any:
        out = check_top(*a, **k)
        handed.append(len(out[2]))
        return out

    try:
        module.top_tokens = timed("topk", saved["top_tokens"])
        module.select_best = timed("cut_to_keep_top", saved["select_best"])
        for shard in shards:
            for method, label in (
                ("occurs", "checks"),
                ("first_occurring", "checks"),
                ("extend", "checks"),
                ("next_tokens", "enumerate"),
            ):
                if hasattr(shard, method):
                    setattr(shard, method, timed(label, getattr(type(shard), method).__get__(shard)))
        con._check_top = counting_check_top
        con.allowed_pairs(state, scores)
        spent.clear()
        handed.clear()
        start = time.thread_time()
        for _ in range(reps):
            con.allowed_pairs(state, scores)
        total = time.thread_time() - start
    finally:
        for name, fn in saved.items():
            setattr(module, name, fn)
        for shard in shards:
            for method in ("occurs", "first_occurring", "extend", "next_tokens"):
                shard.__dict__.pop(method, None)
        del con._check_top
    out = {k: v / reps * 1e3 for k, v in spent.items()}
    out["total"] = total / reps * 1e3
    out["other"] = out["total"] - sum(v for k, v in out.items() if k != "total")
    out["wide_rows_enumerated"] = handed[0] if handed else 0
    return out


def check_same_allowed(indexes: dict[str, Any], step: list[list[int]], scores: Any, eos: int, pad: int) -> None:
    """Both backends allow the same tokens on the step (a sanity check of the benchmark's inputs)."""
    import torch

    from genret.constraints.ngram import NgramConstraint

    masks = []
    for index in indexes.values():
        con = NgramConstraint(
            index, eos_token_id=eos, fill_token_id=pad, enumerate_width=ENUMERATE_WIDTH, keep_top=KEEP_TOP
        )
        masks.append(torch.isfinite(con.mask(state_tensor(index, step), scores)))
    for m in masks[1:]:
        if not torch.equal(m, masks[0]):
            raise AssertionError("the backends allow different tokens on the benchmark step")
