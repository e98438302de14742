"""Benchmark: DocidTrie (CSR) build, memory and batched ops, side by side with a GENRE-style dict trie.

    python benchmarks/trie_build.py --ids 1000000 --length 8 --vocab 32000 --kind random \\
        --json benchmarks/results/trie_build_cpu.json

Identifiers: ``random`` = ``--length`` tokens drawn uniformly from ``[2, --vocab)``; ``semantic`` =
``--length`` levels x ``--codes`` codes, token = 2 + level * codes + code (``--vocab`` ignored).
eos = 1. The competitor is the nested-dict trie of GENRE (``genre/trie.py``: one dict per node,
``get(prefix)`` walks from the root), built in the same process for at most ``--dict-trie-max``
ids, with the CSR trie rebuilt on exactly those ids for the ratios. Memory of the dict trie is
measured with tracemalloc (what the built trie retains), the CSR trie's with ``nbytes()`` (its
arrays) and tracemalloc's peak during the build. Peak RSS of the process is read right after the
full CSR build (before the dict trie exists).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba
import numpy as np

from indexing.trie import DocidTrie

EOS = 1
MB = 2**20


def rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB


def make_ids(n: int, length: int, vocab: int, kind: str, codes: int, seed: int) -> tuple[np.ndarray, int]:
    """``(ids [n, length] int32, vocab_size)``; duplicate rows are possible (rare), see ``dedupe``."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        ids = rng.integers(2, vocab, size=(n, length), dtype=np.int32)
    else:
        levels = np.arange(length, dtype=np.int32) * codes
        ids = 2 + levels + rng.integers(0, codes, size=(n, length), dtype=np.int32)
        vocab = 2 + length * codes
    return ids, vocab


def dedupe(ids: np.ndarray) -> np.ndarray:
    """Drop repeated rows, keeping the first of each and the order (only after a build refused them)."""
    _, first = np.unique(ids, axis=0, return_index=True)
    return ids[np.sort(first)]


class GenreTrie:
    """GENRE's nested-dict prefix trie (facebookresearch/GENRE, genre/trie.py), verbatim logic."""

    def __init__(self, sequences: list[list[int]]) -> None:
        self.trie_dict: dict[int, Any] = {}
        self.len = 0
        for sequence in sequences:
            GenreTrie._add_to_trie(sequence, self.trie_dict)
            self.len += 1

    def get(self, prefix_sequence: list[int]) -> list[int]:
        return GenreTrie._get_from_trie(prefix_sequence, self.trie_dict)

    @staticmethod
    def _add_to_trie(sequence: list[int], trie_dict: dict[int, Any]) -> None:
        if sequence:
            if sequence[0] not in trie_dict:
                trie_dict[sequence[0]] = {}
            GenreTrie._add_to_trie(sequence[1:], trie_dict[sequence[0]])

    @staticmethod
    def _get_from_trie(prefix_sequence: list[int], trie_dict: dict[int, Any]) -> list[int]:
        if len(prefix_sequence) == 0:
            return list(trie_dict.keys())
        if prefix_sequence[0] in trie_dict:
            return GenreTrie._get_from_trie(prefix_sequence[1:], trie_dict[prefix_sequence[0]])
        return []


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median seconds of ``repeats`` calls after one warm-up call, and the last result."""
    out = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def build_csr(ids: np.ndarray, vocab: int) -> DocidTrie:
    offsets = np.arange(len(ids) + 1, dtype=np.int64) * ids.shape[1]
    return DocidTrie.build(offsets, ids.reshape(-1), EOS, vocab)


def states_at(trie: DocidTrie, ids: np.ndarray, docs: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """States after the first ``depth[i]`` tokens of document ``docs[i]``."""
    states = trie.start(len(docs))
    for d in range(ids.shape[1]):
        states = np.where(depth > d, trie.step(states, ids[docs, d]), states)
    return states


def next_tokens(ids: np.ndarray, docs: np.ndarray, depth: np.ndarray) -> np.ndarray:
    length = ids.shape[1]
    return np.where(depth < length, ids[docs, np.minimum(depth, length - 1)], EOS).astype(np.int64)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", type=int, default=1_000_000)
    parser.add_argument("--length", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32_000)
    parser.add_argument("--kind", choices=["random", "semantic"], default="random")
    parser.add_argument("--codes", type=int, default=100, help="codes per level for --kind semantic")
    parser.add_argument("--states", type=int, default=640, help="states per batched op (batch x beams)")
    parser.add_argument("--dict-trie-max", type=int, default=100_000, help="ids for the dict trie (0: skip)")
    parser.add_argument("--repeats", type=int, default=3, help="timed builds (median reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--note", default=f"{os.cpu_count()}-core CPU", help="machine note for the JSON")
    args = parser.parse_args(argv)

    rss_start = rss_mb()
    ids, vocab = make_ids(args.ids, args.length, args.vocab, args.kind, args.codes, args.seed)
    rss_before = rss_mb()

    # ---- CSR trie on all ids
    try:
        start = time.perf_counter()
        trie = build_csr(ids, vocab)
    except ValueError as err:  # two random ids collided: drop repeats and build again
        print(f"dropping repeated ids ({err})")
        ids = dedupe(ids)
        start = time.perf_counter()
        trie = build_csr(ids, vocab)
    first_build = time.perf_counter() - start
    rss_after = rss_mb()
    n = len(ids)
    print(f"{args.kind} ids: {n:,} x {args.length} tokens, vocab {vocab:,}, eos {EOS}")
    builds = [first_build]
    for _ in range(args.repeats - 1):
        start = time.perf_counter()
        build_csr(ids, vocab)
        builds.append(time.perf_counter() - start)
    build_s = statistics.median(builds)
    tracemalloc.start()
    build_csr(ids, vocab)
    csr_traced_peak = tracemalloc.get_traced_memory()[1] / MB
    tracemalloc.stop()
    print(f"CSR build: {build_s:.3f} s (median of {len(builds)}; runs {', '.join(f'{b:.3f}' for b in builds)})")
    print(
        f"  {trie.n_nodes:,} nodes, {trie.nbytes() / MB:.1f} MiB arrays "
        f"({trie.nbytes() / trie.n_nodes:.2f} B/node), token {trie.token.dtype}, "
        f"first_child {trie.first_child.dtype}"
    )
    print(
        f"  peak RSS {rss_before:.0f} MiB before build -> {rss_after:.0f} MiB after "
        f"(+{rss_after - rss_before:.0f}); tracemalloc peak during build {csr_traced_peak:.0f} MiB"
    )

    # ---- batched ops on args.states states
    rng = np.random.default_rng(args.seed + 1)
    k = args.states
    docs = rng.integers(0, n, size=k)
    start = time.perf_counter()
    trie.step(trie.start(1), 0)
    trie.allowed_mask(trie.start(2))
    first_call_s = time.perf_counter() - start  # numba: JIT compile or cache load
    mixed = rng.integers(0, args.length + 1, size=k)
    ops: dict[str, Any] = {"first_call_s": first_call_s, "per_depth": []}
    st_mixed = states_at(trie, ids, docs, mixed)
    tok_mixed = next_tokens(ids, docs, mixed)
    ops["step_ms_mixed_depths"] = timed(lambda: trie.step(st_mixed, tok_mixed), 200)[0] * 1e3
    ops["allowed_mask_ms_mixed_depths"] = timed(lambda: trie.allowed_mask(st_mixed), 50)[0] * 1e3
    ops["allowed_ms_mixed_depths"] = timed(lambda: trie.allowed(st_mixed), 50)[0] * 1e3
    decode_ms = 0.0
    for d in range(args.length + 1):  # one beam-search step: every state at the same depth
        depth = np.full(k, d)
        st, tok = states_at(trie, ids, docs, depth), next_tokens(ids, docs, depth)
        step_ms = timed(lambda st=st, tok=tok: trie.step(st, tok), 200)[0] * 1e3
        mask_ms = timed(lambda st=st: trie.allowed_mask(st), 20 if d == 0 else 50)[0] * 1e3
        allowed_per_state = float(np.diff(trie.allowed(st)[0]).mean())
        ops["per_depth"].append(
            {"depth": d, "step_ms": step_ms, "allowed_mask_ms": mask_ms, "mean_allowed": allowed_per_state}
        )
        decode_ms += step_ms + mask_ms
    ops["decode_all_depths_ms"] = decode_ms
    print(f"batched ops, {k} states (first call {first_call_s:.2f} s incl. numba compile/cache load):")
    print(
        f"  mixed depths: step {ops['step_ms_mixed_depths']:.3f} ms, allowed_mask "
        f"{ops['allowed_mask_ms_mixed_depths']:.2f} ms, allowed (CSR) {ops['allowed_ms_mixed_depths']:.2f} ms"
    )
    for row in ops["per_depth"]:
        print(
            f"  depth {row['depth']}: step {row['step_ms']:.3f} ms, allowed_mask {row['allowed_mask_ms']:.2f} ms"
            f" ({row['mean_allowed']:.1f} allowed tokens per state)"
        )
    print(f"  one full decode ({args.length + 1} steps: mask + step each): {decode_ms:.2f} ms")

    # ---- GENRE dict trie on a subset, CSR rebuilt on the same subset
    competitor: dict[str, Any] | None = None
    m = min(n, args.dict_trie_max)
    if m > 0:
        sub = ids[:m]
        seqs = [[*row, EOS] for row in sub.tolist()]
        start = time.perf_counter()
        GenreTrie(seqs)
        dict_build = time.perf_counter() - start
        tracemalloc.start()
        dict_trie = GenreTrie(seqs)
        dict_mem = tracemalloc.get_traced_memory()[0] / MB
        tracemalloc.stop()
        sub_build, sub_trie = timed(lambda: build_csr(sub, vocab), args.repeats)
        tracemalloc.start()
        build_csr(sub, vocab)
        sub_traced_peak = tracemalloc.get_traced_memory()[1] / MB
        tracemalloc.stop()
        sub_docs = rng.integers(0, m, size=k)
        sub_depth = rng.integers(0, args.length + 1, size=k)
        prefixes = [sub[doc, :dep].tolist() for doc, dep in zip(sub_docs, sub_depth, strict=True)]

        def dict_mask() -> np.ndarray:  # what prefix_allowed_tokens_fn + HF's mask amount to
            mask = np.zeros((k, vocab), dtype=bool)
            for i, prefix in enumerate(prefixes):
                mask[i, dict_trie.get(prefix)] = True
            return mask

        sub_states = states_at(sub_trie, sub, sub_docs, sub_depth)
        dict_mask_s, ref_mask = timed(dict_mask, 5)
        csr_mask_s, csr_mask = timed(lambda: sub_trie.allowed_mask(sub_states), 20)
        assert np.array_equal(ref_mask, csr_mask), "dict trie and CSR trie disagree"
        csr_mb = sub_trie.nbytes() / MB
        competitor = {
            "ids": m,
            "dict_build_s": dict_build,
            "dict_traced_mb": dict_mem,
            "csr_build_s": sub_build,
            "csr_nbytes_mb": csr_mb,
            "csr_traced_peak_build_mb": sub_traced_peak,
            "dict_mask_ms_mixed": dict_mask_s * 1e3,
            "csr_mask_ms_mixed": csr_mask_s * 1e3,
            "ratio_build_time_dict_over_csr": dict_build / sub_build,
            "ratio_memory_dict_over_csr": dict_mem / csr_mb,
            "ratio_memory_dict_over_csr_build_peak": dict_mem / sub_traced_peak,
            "ratio_mask_time_dict_over_csr": dict_mask_s / csr_mask_s,
        }
        print(f"GENRE dict trie vs CSR on the same {m:,} ids:")
        print(
            f"  build: dict {dict_build:.3f} s, CSR {sub_build:.3f} s -> "
            f"dict/CSR {competitor['ratio_build_time_dict_over_csr']:.1f}x"
        )
        print(
            f"  memory: dict {dict_mem:.1f} MiB (tracemalloc), CSR {csr_mb:.2f} MiB arrays "
            f"(build peak {sub_traced_peak:.1f} MiB) -> dict/CSR {competitor['ratio_memory_dict_over_csr']:.1f}x "
            f"({competitor['ratio_memory_dict_over_csr_build_peak']:.1f}x of the CSR build peak)"
        )
        print(
            f"  mask of {k} mixed-depth prefixes: dict {dict_mask_s * 1e3:.2f} ms, CSR "
            f"{csr_mask_s * 1e3:.2f} ms -> dict/CSR {competitor['ratio_mask_time_dict_over_csr']:.1f}x"
        )

    result = {
        "benchmark": "trie_build",
        "argv": sys.argv[1:] if argv is None else argv,
        "machine": {
            "note": args.note,
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "numba": numba.__version__,
        },
        "kind": args.kind,
        "ids": n,
        "length": args.length,
        "vocab_size": vocab,
        "csr": {
            "build_s": build_s,
            "build_runs_s": builds,
            "n_nodes": trie.n_nodes,
            "nbytes_mb": trie.nbytes() / MB,
            "bytes_per_node": trie.nbytes() / trie.n_nodes,
            "token_dtype": str(trie.token.dtype),
            "first_child_dtype": str(trie.first_child.dtype),
            "max_depth": trie.max_depth,
            "max_degree": trie.max_degree,
            "peak_rss_mb_at_start": rss_start,
            "peak_rss_mb_before_build": rss_before,
            "peak_rss_mb_after_build": rss_after,
            "traced_peak_build_mb": csr_traced_peak,
        },
        "ops": {"states": k, **ops},
        "dict_trie": competitor,
        "peak_rss_mb_end": rss_mb(),
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
