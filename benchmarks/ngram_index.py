"""Benchmark: the n-gram store (``indexing.ngrams``, backends ``sa`` and ``fm``) and one SEAL decoding step.

    python benchmarks/ngram_index.py                                   # quick: 1M synthetic tokens
    python benchmarks/ngram_index.py --tokens 10000000 --json OUT      # one synthetic size
    python benchmarks/ngram_index.py --tokens 1000000 10000000 50000000 --data ../shared/data/scifact \\
        --json benchmarks/results/ngram_index_cpu.json                # everything, one JSON

Corpora. Synthetic: token ids drawn i.i.d. from a Zipf law (s = ``--zipf``, default 1) over the
content ids ``[2, --vocab)`` (32k vocabulary; rank r has probability proportional to 1 / r**s, ranks
assigned to ids by a seeded permutation), documents of 64-192 tokens (uniform), the last one cut
so that the corpus has exactly ``--tokens`` tokens; pad = 0 and eos = 1 never occur
(``indexing.synthetic.zipf_token_stream``). Real:
``--data`` = a BEIR folder, loaded with ``indexing.corpus.load_corpus``, indexed with
``NgramIndex.build(corpus, load_tokenizer("minilm"), backend)`` (title and text joined). Nothing
of a corpus is written outside ``--workdir`` (scifact is CC BY-NC: only numbers reach the JSON).

Build (one fresh subprocess per corpus and backend, so that memory figures do not mix): wall and
CPU time (``time.process_time`` of the build process) of the shard build from the tokens:
``backend.build(tokens, doc_offsets)`` on int64 tokens, what ``NgramIndex.from_token_lists`` and
``NgramIndex.build`` call; tokens/s both ways. Real corpora: the tokenization alone is timed before
(``tokenize_*``), and the whole ``NgramIndex.build`` after (``ngram_index_build_wall_s``; its index
is the one saved and queried). Memory: the build's peak resident memory above the process's
resident memory just before it (corpus loaded, numba kernels loaded, the peak counter reset
through ``/proc/self/clear_refs``), i.e. everything the build allocates, numba's and libdivsufsort's
buffers included (tracemalloc would miss those). Size: ``nbytes()`` (the arrays in memory) and the
sum of every file ``NgramIndex.save`` writes (manifest and doc ids included), per token.

Latency (the saved index loaded back into memory, ``mmap=False``). States are real n-grams of the
corpus: a document drawn in proportion to its length, a start position uniform inside it.
``extend_640``: 640 rows of depth 0-4, each extended by the token that follows it there (one call).
``next_narrow_640``: ``next_tokens_csr`` of 640 n-grams (depth 1-5) of width <= 1000 (one call);
``next_mid``: widths 1e3-1e5, and ``next_wide``: the 8 most frequent unigrams, per range;
``locate_100``: ``locate_csr(limit=100)`` of 64 n-grams with >= 100 occurrences, per range;
``doc_tokens``: per document. Every timed case runs ``inner`` calls per sample (calibrated to
about 5 ms), ``--reps`` samples interleaved across cases and backends (order rotated every
round); medians of wall time reported, with min / max, and the median CPU time of the thread
(``cpu_median_ms``: what the work cost when the shared machine descheduled the process).

One constrained decoding step: 640 rows (32 queries x 20 beams) of n-grams of depth 0-5 (depth 0 =
the empty n-gram; uniform over depths), ``NgramConstraint(index, eos, pad, enumerate_width=1000,
keep_top=40)`` (``keep_top`` = 2 x beams: the hybrid gives the beams of the full mask). On ``sa``
the shard's follower bitmaps (frequent n-grams of 1-2 tokens) are built once before any timing;
their build time and size are reported (``followers``). Scores
``[640, vocab]`` float32, two kinds: ``random`` = N(0, 1); ``model`` = N(0, 1) with up to 64 true
continuations of each row's n-gram (drawn by corpus frequency) raised by +4, as a trained model
ranks valid continuations high. Timed separately, same states and scores for both backends:

- ``allowed``: the index-side work (``NgramConstraint.allowed_pairs``, one thread): which (row, token) pairs are
  allowed (narrow rows enumerated, wide rows' top candidates checked, the top-k over their scores
  included); ``step_cpu_breakdown_ms`` splits its CPU time into top-k, checks, enumeration,
  cutting to ``keep_top`` and the rest (measured apart, wrappers around those calls);
- ``mask``: the whole ``NgramConstraint.mask`` call, a fresh ``[640, vocab]`` tensor of -inf with
  the allowed scores written in (the cost every masking logits processor pays);
- ``mask_``: the same written into the scores in place (what ``ConstrainedLogitsProcessor`` uses
  under beam search with ``inplace=True``); each call gets a copy of the scores made before the clock;
- ``allowed`` with ``threads=2`` (``step_allowed_model_2threads``): the wide rows' top-k split
  between the calling thread and a pool thread (wall time; the CPU column counts the calling
  thread only);
- ``advance``: one ``advance`` of the 640 rows by a valid token each;
- per depth (``--by-depth``): ``allowed`` with all 640 rows at one depth (steps 1-5 of decoding).

Machine: the CPU model and core count go to the JSON; the numbers are from a shared machine unless
``--note`` says otherwise. torch runs on ``--threads`` threads (default 1); numba kernels run on the
calling thread (and one pool thread in the 2-thread step case).
``--merge`` adds a run to an existing JSON: ``runs`` holds every run's settings and machine,
``results[i]["run"]`` the run a result came from (a corpus and backend measured again replaces the
older result).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ngram_build import MB, build_child, machine_info, synthetic_files  # noqa: E402
from ngram_steps import (  # noqa: E402
    BOOST,
    BOOSTED,
    ENUMERATE_WIDTH,
    KEEP_TOP,
    Sampler,
    check_same_allowed,
    model_like_scores,
    state_tensor,
    step_breakdown,
    valid_tokens,
)

PAD, EOS = 0, 1
ROWS, QUERIES, BEAMS = 640, 32, 20


# ------------------------------------------------------------------------------------------ machine


# ------------------------------------------------------------------------------------------ corpora


# ------------------------------------------------------------------------------------------ build (child)


def run_build(spec: dict[str, Any]) -> dict[str, Any]:
    """``build_child`` in a fresh interpreter (its result is the last line of its output)."""
    done = subprocess.run(
        [sys.executable, __file__, "--build-child", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    if done.returncode != 0:
        raise RuntimeError(f"build of {spec['backend']} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ sampling


# ------------------------------------------------------------------------------------------ timing


class Case:
    """One timed operation: ``fn()`` (or ``fn(setup())``, the setup outside the clock)."""

    def __init__(
        self, name: str, backend: str, fn: Callable[..., Any], per: int = 1, setup: Callable[[], Any] | None = None
    ) -> None:
        self.name, self.backend, self.fn, self.per, self.setup = name, backend, fn, per, setup
        self.inner = 1
        self.samples: list[float] = []
        self.cpu: list[float] = []

    def call(self) -> tuple[float, float]:
        arg = self.setup() if self.setup else None
        cpu, wall = time.thread_time(), time.perf_counter()
        self.fn(arg) if self.setup else self.fn()
        return time.perf_counter() - wall, time.thread_time() - cpu

    def once(self) -> tuple[float, float]:
        """Seconds per call (wall, CPU of this thread) over ``inner`` calls."""
        wall = cpu = 0.0
        for _ in range(self.inner):
            w, c = self.call()
            wall, cpu = wall + w, cpu + c
        return wall / self.inner, cpu / self.inner

    def calibrate(self, target: float) -> None:
        self.inner = 1
        first = min(self.once()[0] for _ in range(2))
        self.inner = int(max(1, min(1000, target / max(first, 1e-7))))

    def summary(self) -> dict[str, Any]:
        med = statistics.median(self.samples)
        return {
            "median_ms": med * 1e3,
            "median_us_per_item": med * 1e6 / self.per,
            "min_ms": min(self.samples) * 1e3,
            "max_ms": max(self.samples) * 1e3,
            "cpu_median_ms": statistics.median(self.cpu) * 1e3,
            "items_per_call": self.per,
            "calls_per_sample": self.inner,
            "samples": len(self.samples),
        }


def run_cases(cases: list[Case], reps: int, target: float, progress: Callable[[str], None]) -> None:
    """Warm up and calibrate every case, then ``reps`` rounds over all cases, order rotated per round."""
    for case in cases:
        case.call()  # warm-up (numba kernels, caches)
        case.calibrate(target)
    start = time.perf_counter()
    for rep in range(reps):
        shift = rep % len(cases)
        for case in cases[shift:] + cases[:shift]:
            wall, cpu = case.once()
            case.samples.append(wall)
            case.cpu.append(cpu)
        if (rep + 1) % 5 == 0 or rep + 1 == reps:
            progress(f"  round {rep + 1}/{reps} ({time.perf_counter() - start:.0f} s)")


# ------------------------------------------------------------------------------------------ one corpus


def bench_corpus(
    name: str,
    paths: dict[str, Path],
    vocab: int,
    eos: int,
    pad: int,
    args: argparse.Namespace,
    log: Callable[[str], None],
) -> dict[str, dict[str, Any]]:
    """Latency cases for every backend of one corpus, interleaved; returns ``{backend: {case: summary}}``."""
    from genret.constraints.ngram import NgramConstraint
    from indexing.ngrams import NgramIndex

    indexes = {b: NgramIndex.load(p, mmap=False) for b, p in paths.items()}
    first = next(iter(indexes.values()))
    sampler = Sampler(first, args.seed)
    t = time.perf_counter()
    ext = sampler.ngrams(ROWS, (1, 5))
    ext_states, ext_tokens = [g[:-1] for g in ext], np.array([g[-1] for g in ext], dtype=np.int64)
    narrow = sampler.by_width(ROWS, (1, 5), 1, ENUMERATE_WIDTH)
    mid = sampler.by_width(64, (1, 4), ENUMERATE_WIDTH + 1, 100_000)
    root_counts = first.next_tokens_csr(first.root(1))
    wide = [[int(t)] for t in root_counts[1][np.argsort(-root_counts[2])[:8]]]
    located = sampler.by_width(64, (1, 3), 100, 10**12)
    docs = sampler.rng.integers(0, first.n_docs, 100)
    step = [sampler.ngram(int(d)) if d else [] for d in sampler.rng.integers(0, 6, ROWS)]
    random_scores, model_scores = model_like_scores(first, step, vocab, args.seed)
    by_depth = {d: sampler.ngrams(ROWS, (d, d)) for d in range(1, 6)} if args.by_depth else {}
    depth_scores = {d: model_like_scores(first, g, vocab, args.seed + d) for d, g in by_depth.items()}
    log(
        f"  states sampled in {time.perf_counter() - t:.1f} s: narrow {len(narrow)}, mid {len(mid)}, "
        f"wide {[int(w) for w in first.find(wide).counts]}, locate {len(located)}"
    )
    info: dict[str, Any] = {
        "widths": {
            "extend_640_median": float(np.median(first.find(ext_states).counts)),
            "narrow_median": float(np.median(first.find(narrow).counts)) if narrow else None,
            "mid_median": float(np.median(first.find(mid).counts)) if mid else None,
            "wide": [int(w) for w in first.find(wide).counts],
            "step_wide_rows": 0,
        }
    }
    cases: list[Case] = []
    breakdown: dict[str, Any] = {}
    followers: dict[str, Any] = {}
    for b, index in indexes.items():
        if index.backend == "sa":  # follower bitmaps: built once, before any timing
            t, c = time.perf_counter(), time.process_time()
            tables = [shard.followers() for shard in index.shards]
            followers[b] = {
                "build_s": time.perf_counter() - t,
                "build_cpu_s": time.process_time() - c,
                "rows": sum(len(table.keys) for table in tables),
                "bytes": sum(table.nbytes() for table in tables),
            }
            log(
                f"  {b}: follower bitmaps of {followers[b]['rows']} frequent n-grams, "
                f"{followers[b]['bytes'] / MB:.1f} MB, built in {followers[b]['build_s']:.2f} s"
            )
        r_ext, r_narrow, r_mid = index.find(ext_states), index.find(narrow), index.find(mid)
        r_wide, r_loc = index.find(wide), index.find(located)
        cases += [
            Case("extend_640", b, lambda i=index, r=r_ext: i.extend(r, ext_tokens), ROWS),
            Case("next_narrow_640", b, lambda i=index, r=r_narrow: i.next_tokens_csr(r), max(len(narrow), 1)),
            Case("locate_100", b, lambda i=index, r=r_loc: i.locate_csr(r, 100), max(len(located), 1)),
            Case("doc_tokens", b, lambda i=index: [i.doc_tokens(int(d)) for d in docs], len(docs)),
        ]
        if mid:
            cases.append(Case("next_mid", b, lambda i=index, r=r_mid: i.next_tokens_csr(r), len(mid)))
        cases.append(Case("next_wide", b, lambda i=index, r=r_wide: i.next_tokens_csr(r), len(wide)))
        con = NgramConstraint(
            index, eos_token_id=eos, fill_token_id=pad, enumerate_width=ENUMERATE_WIDTH, keep_top=KEEP_TOP
        )
        state = state_tensor(index, step)
        counts = index.find(step).counts
        depth = np.array([len(g) for g in step])
        info["widths"]["step_wide_rows"] = int(((counts > ENUMERATE_WIDTH) & (depth > 0)).sum())
        info["widths"]["step_narrow_rows"] = int(((counts <= ENUMERATE_WIDTH) & (depth > 0)).sum())
        info["widths"]["step_start_rows"] = int((depth == 0).sum())
        adv = valid_tokens(con, state, model_scores)
        con2 = NgramConstraint(
            index, eos_token_id=eos, fill_token_id=pad, enumerate_width=ENUMERATE_WIDTH, keep_top=KEEP_TOP, threads=2
        )
        cases.append(
            Case("step_allowed_model_2threads", b, lambda c=con2, s=state, x=model_scores: c.allowed_pairs(s, x), ROWS)
        )
        for kind, scores in (("random", random_scores), ("model", model_scores)):
            cases += [
                Case(f"step_allowed_{kind}", b, lambda c=con, s=state, x=scores: c.allowed_pairs(s, x), ROWS),
                Case(f"step_mask_{kind}", b, lambda c=con, s=state, x=scores: c.mask(s, x), ROWS),
                Case(
                    f"step_mask_inplace_{kind}",
                    b,
                    lambda x, c=con, s=state: c.mask_(s, x),
                    ROWS,
                    setup=lambda x=scores: x.clone(),
                ),
            ]
        cases.append(Case("step_advance", b, lambda c=con, s=state, t=adv: c.advance(s, t), ROWS))
        breakdown[b] = {
            kind: step_breakdown(con, state, scores)
            for kind, scores in (("model", model_scores), ("random", random_scores))
        }
        for d, g in by_depth.items():
            s_d = state_tensor(index, g)
            for j, kind in enumerate(("random", "model")):
                step = lambda c=con, s=s_d, x=depth_scores[d][j]: c.allowed_pairs(s, x)  # noqa: E731
                cases.append(Case(f"depth{d}_allowed_{kind}", b, step, ROWS))
    if args.by_depth:
        info["widths"]["by_depth_wide_rows"] = {
            d: int((first.find(g).counts > ENUMERATE_WIDTH).sum()) for d, g in by_depth.items()
        }
    check_same_allowed(indexes, step, model_scores, eos, pad)
    run_cases(cases, args.reps, args.target_ms / 1e3, log)
    out: dict[str, dict[str, Any]] = {b: {"latency": {}} for b in indexes}
    for case in cases:
        out[case.backend]["latency"][case.name] = case.summary()
    for b in indexes:
        out[b]["states"] = info
        out[b]["step_cpu_breakdown_ms"] = breakdown[b]
        if b in followers:
            out[b]["followers"] = followers[b]
    del indexes
    gc.collect()
    return out


# ------------------------------------------------------------------------------------------ main


def table(results: list[dict[str, Any]]) -> str:
    """The README table: medians of wall time (the machine was shared: see the JSON for CPU times)."""
    head = (
        "| corpus | backend | build s | tokens/s wall (CPU) | build peak MB | bytes/token disk | extend 640 | "
        "next narrow 640 | next wide (per range) | locate 100 (per range) | step index-side, model (random) | "
        "step full mask, fresh (in place) |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        b, lat = r["build"], r["latency"]

        def ms(name: str, lat: dict[str, Any] = lat) -> str:
            return f"{lat[name]['median_ms']:.2f} ms" if name in lat else "-"

        def each(name: str, lat: dict[str, Any] = lat) -> str:
            if name not in lat:
                return "-"
            v = lat[name]["median_us_per_item"]
            return f"{v / 1e3:.2f} ms" if v >= 1000 else f"{v:.1f} µs"

        lines.append(
            f"| {r['corpus']} | {r['backend']} | {b['build_wall_s']:.2f} | "
            f"{b['tokens_per_s_wall'] / 1e6:.2f}M ({b['tokens_per_s_cpu'] / 1e6:.2f}M) | {b['build_peak_mb']:.0f} | "
            f"{b['disk_bytes_per_token']:.2f} | {ms('extend_640')} | {ms('next_narrow_640')} | {each('next_wide')} | "
            f"{each('locate_100')} | {ms('step_allowed_model')} ({ms('step_allowed_random')}) | "
            f"{ms('step_mask_model')} ({ms('step_mask_inplace_model')}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--tokens",
        type=int,
        nargs="*",
        default=None,
        help="synthetic corpus sizes (default: 1M when --data is not given)",
    )
    parser.add_argument("--data", nargs="*", default=[], help="BEIR corpus folders (e.g. ../shared/data/scifact)")
    parser.add_argument("--tokenizer", default="minilm")
    parser.add_argument("--backends", nargs="+", default=["sa", "fm"])
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--zipf", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reps", type=int, default=15, help="timed samples per case (interleaved)")
    parser.add_argument("--target-ms", type=float, default=5.0, help="about this long per sample")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--by-depth", action="store_true", help="also time steps with every row at one depth")
    parser.add_argument("--workdir", default="/tmp/genret-ngram-bench", help="corpora and indexes (deleted after)")
    parser.add_argument("--keep", action="store_true", help="keep the indexes in --workdir")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the entries of an existing --json file (same corpus and backend replaced)",
    )
    parser.add_argument("--note", default=f"shared machine ({os.cpu_count()} cores, other jobs running)")
    parser.add_argument("--build-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.build_child:
        print(json.dumps(build_child(json.loads(args.build_child))))
        return {}

    import torch

    torch.set_num_threads(args.threads)
    sizes = args.tokens if args.tokens is not None else ([] if args.data else [1_000_000])
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(msg, flush=True)

    corpora: list[dict[str, Any]] = [{"name": f"zipf-{n / 1e6:g}M", "kind": "synthetic", "tokens": n} for n in sizes]
    corpora += [{"name": Path(d).name, "kind": "real", "data": str(d)} for d in args.data]
    results: list[dict[str, Any]] = []
    for corpus in corpora:
        log(f"== {corpus['name']}")
        paths, builds = {}, {}
        for backend in args.backends:
            out = workdir / f"{corpus['name']}-{backend}"
            spec: dict[str, Any] = {"backend": backend, "out": str(out), "kind": corpus["kind"], "vocab": args.vocab}
            if corpus["kind"] == "synthetic":
                t = time.perf_counter()
                spec.update(synthetic_files(workdir, corpus["tokens"], args.vocab, args.zipf, args.seed))
                log(f"  corpus ready ({time.perf_counter() - t:.1f} s)")
            else:
                spec.update({"data": corpus["data"], "tokenizer": args.tokenizer})
            builds[backend] = run_build(spec)
            paths[backend] = out
            b = builds[backend]
            log(
                f"  {backend}: built {b['n_tokens']:,} tokens in {b['build_wall_s']:.2f} s "
                f"({b['tokens_per_s_wall'] / 1e6:.2f}M tokens/s wall, {b['tokens_per_s_cpu'] / 1e6:.2f}M CPU), "
                f"peak +{b['build_peak_mb']:.0f} MB, {b['disk_bytes_per_token']:.3f} B/token on disk, "
                f"{b['memory_bytes_per_token']:.3f} in memory"
            )
        first = builds[args.backends[0]]
        vocab = first.get("vocab_size", args.vocab)
        eos, pad = first.get("eos_token_id", EOS), first.get("pad_token_id", PAD)
        latency = bench_corpus(corpus["name"], paths, vocab, eos, pad, args, log)
        for backend in args.backends:
            results.append(
                {
                    "corpus": corpus["name"],
                    "kind": corpus["kind"],
                    "backend": backend,
                    "run": 0,
                    "vocab": vocab,
                    "eos": eos,
                    "pad": pad,
                    "build": builds[backend],
                    **latency[backend],
                }
            )
        if not args.keep:
            for p in paths.values():
                shutil.rmtree(p, ignore_errors=True)
        log(table(results[-len(args.backends) :]))
    machine = machine_info(args.note)
    settings = {k: v for k, v in vars(args).items() if k not in ("build_child", "json", "merge")} | {
        "rows": ROWS,
        "queries": QUERIES,
        "beams": BEAMS,
        "enumerate_width": ENUMERATE_WIDTH,
        "keep_top": KEEP_TOP,
        "boosted": BOOSTED,
        "boost": BOOST,
    }
    report = {
        "benchmark": "ngram_index",
        "machine": machine,
        "settings": settings,
        "runs": [{"settings": settings, "machine": machine}],
        "results": results,
    }
    if args.json:
        path = Path(args.json)
        if args.merge and path.is_file():  # earlier runs' results stay, each with the index of its run
            old = json.loads(path.read_text())
            runs = old.get("runs") or [{"settings": old["settings"], "machine": old["machine"]}]
            for r in results:
                r["run"] = len(runs)
            done = {(r["corpus"], r["backend"]) for r in results}
            kept = [{"run": 0, **r} for r in old.get("results", []) if (r["corpus"], r["backend"]) not in done]
            report["results"] = kept + results
            report["runs"] = runs + report["runs"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1) + "\n")
        log(f"wrote {path}")
    print(table(report["results"]))
    return report


if __name__ == "__main__":
    main()
