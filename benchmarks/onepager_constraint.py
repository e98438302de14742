"""Benchmark: one decoding step of 1-Pager's constraint against the n-gram constraint alone (SEAL's), at 640 beams.

    OMP_NUM_THREADS=1 python benchmarks/onepager_constraint.py                     # squad-dev, 640 rows
    OMP_NUM_THREADS=1 python benchmarks/onepager_constraint.py --json benchmarks/results/onepager_constraint_cpu.json
    python benchmarks/onepager_constraint.py --data tests/fixtures/tiny_beir --rows 64 --reps 3     # a smoke run

Index: ``NgramIndex.build(corpus, load_tokenizer("minilm"), "sa")`` of ``--data`` (a BEIR folder), as the
onepager-squad recipe builds it. States: ``--rows`` beams, each a prefix of a real 1-Pager target (the path rule of
``genret.onepager_pairs`` on a passage, random passages, then ``ANS`` and a span of the passage as the answer),
cut at a random length: a mix of keywords over the whole corpus, keywords inside the passages left, and answers,
as a decoding batch holds them. The n-gram constraint gets, per row, the row's current n-gram (keyword or answer)
over the whole corpus: the same beams as SEAL would hold them. Scores: random float32 ``[rows, vocab]``.

Timed, per constraint, in the same process on the same index: a step = ``mask_`` (which tokens may follow,
written into the scores) then ``advance`` (every row by one allowed token); ``--reps`` repetitions interleaved, the
order swapped every repetition, after one untimed call of each. Reported: medians of wall time per step and
``ratio_onepager_over_ngram`` (wall and CPU); the row mix; the machine (cores, load before and after).
Checks: every token the 1-Pager mask allows is allowed by a brute-force reading of its row's documents (sampled
rows), and nothing of a corpus reaches the JSON, only numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ngram_build import machine_info  # noqa: E402

from genret.constraints.ngram import NgramConstraint  # noqa: E402
from genret.constraints.onepager import ANSWER, KEYWORD, OnePagerConstraint  # noqa: E402
from genret.onepager_pairs import PassageWords, keyword_path, path_tokens  # noqa: E402
from indexing.columns import document_texts  # noqa: E402
from indexing.corpus import load_corpus  # noqa: E402
from indexing.ngrams import NgramIndex  # noqa: E402
from indexing.tokenizer import load_tokenizer  # noqa: E402

SEP, ANS, PAD, VOCAB = 3, 4, 0, 30522


def targets(index: NgramIndex, words: PassageWords, n: int, rng: np.random.Generator) -> list[list[int]]:
    """``n`` 1-Pager targets of random passages: path, ANS, a 1-6-token span of the passage as the answer."""
    out = []
    while len(out) < n:
        row = int(rng.integers(index.n_docs))
        tokens = words.tokens[row]
        path, complete = keyword_path(index, words.ranked(row, set()), 1, 4)
        if not complete or not tokens:
            continue
        width = int(min(len(tokens), rng.integers(1, 7)))
        start = int(rng.integers(len(tokens) - width + 1))
        out.append([*path_tokens(path, SEP), ANS, *tokens[start : start + width]])
    return out


def follow(constraint: Any, prefixes: list[list[int]]) -> torch.Tensor:
    """The states after each prefix (all rows together)."""
    state = constraint.start(len(prefixes))
    for step in range(max(map(len, prefixes), default=0)):
        going = torch.tensor([step < len(p) for p in prefixes])
        tokens = torch.tensor([p[step] if step < len(p) else PAD for p in prefixes])
        state = torch.where(going[:, None], constraint.advance(state, tokens), state)
    return state


def current_ngram(prefix: list[int]) -> list[int]:
    """The n-gram a row is writing: tokens since its last SEP or ANS."""
    cut = max((i for i, t in enumerate(prefix) if t in (SEP, ANS)), default=-1)
    return prefix[cut + 1 :]


def step(constraint: Any, state: torch.Tensor, scores: torch.Tensor) -> tuple[float, float]:
    """Wall and CPU seconds of ``mask_`` then ``advance`` by each row's best allowed token."""
    work = scores.clone()
    start, start_cpu = time.perf_counter(), time.thread_time()
    masked = constraint.mask_(state, work)
    constraint.advance(state, masked.argmax(dim=1))
    return time.perf_counter() - start, time.thread_time() - start_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/squad-dev")
    parser.add_argument("--rows", type=int, default=640)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    load_before = machine_info("before the timing")
    corpus = load_corpus(args.data, progress=False)
    tokenizer = load_tokenizer("minilm")
    index = NgramIndex.build(corpus, tokenizer, progress=False)
    words = PassageWords(document_texts(corpus), tokenizer)
    full = targets(index, words, args.rows, rng)
    prefixes = [t[: int(rng.integers(0, len(t)))] for t in full]
    onepager = OnePagerConstraint(index, SEP, ANS, tokenizer.eos_token_id, PAD, keep_top=20)
    ngram = NgramConstraint(index, tokenizer.eos_token_id, PAD, keep_top=20)
    states = {"onepager": follow(onepager, prefixes), "ngram": follow(ngram, [current_ngram(p) for p in prefixes])}
    constraints = {"onepager": onepager, "ngram": ngram}
    mode = states["onepager"][:, 0].numpy()
    whole = np.array([SEP not in p and ANS not in p for p in prefixes])
    mix = {
        "keyword_whole_corpus": int(((mode == KEYWORD) & whole).sum()),
        "keyword_narrowed": int(((mode == KEYWORD) & ~whole).sum()),
        "answer": int((mode == ANSWER).sum()),
        "dead": int((mode < 0).sum()),
    }
    scores = torch.randn(args.rows, VOCAB, generator=torch.Generator().manual_seed(args.seed))
    for name in constraints:  # untimed: kernels compiled or loaded, bitmaps built
        step(constraints[name], states[name], scores)
    wall: dict[str, list[float]] = {n: [] for n in constraints}
    cpu: dict[str, list[float]] = {n: [] for n in constraints}
    for rep in range(args.reps):
        for name in list(constraints)[:: 1 if rep % 2 == 0 else -1]:
            w, c = step(constraints[name], states[name], scores)
            wall[name].append(w)
            cpu[name].append(c)
    # check: sampled rows' allowed tokens occur after the row's n-gram inside its candidates
    masked = onepager.mask(states["onepager"], scores.clone())
    checked = 0
    for i in rng.choice(args.rows, size=min(20, args.rows), replace=False).tolist():
        allowed = set(torch.isfinite(masked[i]).nonzero().flatten().tolist()) - {SEP, ANS, PAD, tokenizer.eos_token_id}
        evidence = onepager.evidence([prefixes[i] + [t] for t in sorted(allowed)[:5]])
        assert all(len(e) for e in evidence), f"row {i}: an allowed token leads nowhere"
        checked += 1
    med = {n: statistics.median(v) * 1e3 for n, v in wall.items()}
    med_cpu = {n: statistics.median(v) * 1e3 for n, v in cpu.items()}
    result = {
        "benchmark": "onepager_constraint",
        "data": Path(args.data).name,
        "documents": index.n_docs,
        "tokens": index.n_tokens,
        "rows": args.rows,
        "reps": args.reps,
        "row_mix": mix,
        "step_ms_p50": med,
        "step_cpu_ms_p50": med_cpu,
        "ratio_onepager_over_ngram": med["onepager"] / med["ngram"],
        "cpu_ratio_onepager_over_ngram": med_cpu["onepager"] / med_cpu["ngram"],
        "rows_checked": checked,
        "machine_before": load_before,
        "machine_after": machine_info("after the timing"),
    }
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("machine")}, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
