"""Benchmark: constrained beam search, three ways side by side in one process (same model, same inputs).

    python benchmarks/constrained_decoding.py --ids 1000000 --batch 32 --beams 20 --json OUT   # one setting
    python benchmarks/constrained_decoding.py --model small tiny --kind random semantic \\
        --ids 10000 100000 1000000 --batch 1 32 --beams 10 20 --json OUT                      # the full sweep

Every method is one ``model.generate`` call with the arguments of ``genret.retrievers.dsi``
(``num_beams=k, num_return_sequences=k, do_sample=False, length_penalty=0.0,
early_stopping="never", max_new_tokens=trie.max_depth, output_scores=True,
return_dict_in_generate=True``), so the encoder runs once per batch and every method decodes the
same number of steps (checked):

- ``unconstrained``: nothing else: the physical limit, what the model and beam search cost alone.
- ``anchor``: GENRE's way, ``prefix_allowed_tokens_fn=`` over GENRE's nested-dict trie
  (``trie_build.GenreTrie``, the logic of GENRE's ``genre/trie.py``: ``get(prefix)`` walks from
  the root on every call), called by transformers' ``PrefixConstrainedLogitsProcessor`` once per
  beam per step with ``sent.tolist()``; as in GENRE the trie's sequences start with the decoder
  start token. (It returns ``[pad]`` where the trie has nothing, as transformers raises on an
  empty list; with fixed-length identifiers and ``max_new_tokens = max_depth`` that never happens.)
- ``genret``: ``ConstrainedLogitsProcessor(TrieConstraint(trie, pad), num_beams=k, inplace=True)``:
  per step a few tensor operations over all beams on the model's device (parents found by
  matching sequences, one ``searchsorted`` to advance, child blocks gathered and scattered into
  the scores), no host-device synchronisation; ``inplace=True`` masks generate's fresh log-softmax
  tensor instead of allocating another ``[rows, vocab]`` one (safe under beam search, see the
  processor's docs).

Identifiers (eos = 1 appended, pad = 0 is the decoder start and fill token): ``random`` = 8 tokens
uniform in ``[2, 32000)``; ``semantic`` = 8 levels x 100 codes (token = 2 + level * 100 + code).
Models: T5 built from a config with random weights (fine for timing), vocabulary 32128 (covers
both kinds): ``small`` = t5-small sized (d_model 512, d_ff 2048, 6 + 6 layers, 8 heads), ``tiny``
(d_model 64, d_ff 256, 2 + 2 layers, 4 heads). Encoder inputs: random tokens, ``--query-length`` 32.

Timing. ``--warmup`` rounds, then ``--reps`` timed rounds; each round runs the three methods on
that round's batch (the same inputs for all three), in an order rotated every round so that drift
on a shared machine spreads evenly (with ``--anchor-reps N`` the anchor, the slowest by far, runs
in the first N timed rounds only, and the other rounds time the two fast methods, alternating).
Per-batch latency is wall time around ``generate``, with ``torch.cuda.synchronize()`` on both
sides on CUDA. Reported: p50 / p95 / mean ms per batch, queries per second (batch / p50),
``ratio_vs_unconstrained`` = genret p50 / unconstrained p50 (and the median of the per-round
ratios, which pairs runs made seconds apart; and ``ratio_vs_unconstrained_from_constraint_only``
= 1 + genret's constraint-only time / unconstrained p50, the ratio if the constraint's own work
were the only difference), ``anchor_speedup`` = anchor p50 / genret p50. The process's CPU time
of every call is recorded too, and the same ratios from it (``cpu_time``): on a shared machine a
single-threaded run waits for a core now and then, which wall time counts and CPU time does not.
On CPU ``--threads`` (default 1) sets torch's threads; on CUDA the model runs in bfloat16
(``--dtype``); generate's scores are float32 either way.

Constraint work alone (no model). One more genret ``generate`` call records, through a logits
processor placed before genret's, every step's ``input_ids`` and (unmasked) scores. That
sequence of calls is then replayed through a fresh ``PrefixConstrainedLogitsProcessor`` (the
anchor, exactly what ``generate`` builds from ``prefix_allowed_tokens_fn``) and a fresh
``ConstrainedLogitsProcessor`` (genret, as timed end to end; also ``inplace=False`` for
reference), timing only the processor calls; each call gets its own copy of the recorded scores,
made before the clock starts. The first replay round (untimed) runs both step by step and checks
that their outputs are equal tensors; then ``--replay-reps`` timed rounds, the methods' order
rotated per round. ``constraint_only_speedup`` = anchor p50 / genret p50 (ms per batch, all steps).

Checks, per round: genret and the anchor return the same sequences per query (or, where not,
sequences with equal scores rank by rank: ties), every genret and anchor sequence is an
identifier (``DocidTrie.lookup_batch``), the unconstrained share of valid identifiers is reported.

Build: the CSR trie (``DocidTrie.build``), the constraint's device tensors, and the dict trie, each
timed; memory: the CSR arrays, the constraint's device tensors, and the dict trie as the growth of
the process's resident memory while it is built.

The JSON holds the machine, the id sets' build figures, and one entry per setting with
``ratio_vs_unconstrained``, ``anchor_speedup`` and ``constraint_only_speedup``.

N-gram constraint (SEAL): ``--ngram-tokens 10M`` also runs, for every model / batch / beams setting,
unconstrained vs a SEAL-style ``prefix_allowed_tokens_fn`` (range recomputed and next tokens
enumerated per beam per step) vs genret's ``NgramConstraint`` over a synthetic corpus of that many
tokens (``benchmarks/ngram_decoding.py``, whose docstring has the details); under ``ngram_settings``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from transformers import LogitsProcessor
from transformers.generation.logits_process import PrefixConstrainedLogitsProcessor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decoding_common import (  # noqa: E402  (the model, inputs, timing and checks both decoding benchmarks use)
    MODELS,
    VOCAB,
    Beams,
    compare_beams,
    count,
    log,
    make_inputs,
    make_model,
    paired_median,
    summary,
    timed,
)
from trie_ids import IdSet, generate, genret_processor, make_id_set, valid_share  # noqa: E402

METHODS = ("unconstrained", "genret", "anchor")


# ------------------------------------------------------------------------------ identifiers


# ----------------------------------------------------------------------------------- models


# ----------------------------------------------------------------------------------- checks


# ---------------------------------------------------------------------------------- timing


class Recorder(LogitsProcessor):
    """Keeps a copy of every step's ``input_ids`` and scores; changes nothing."""

    def __init__(self) -> None:
        self.steps: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.steps.append((input_ids.clone(), scores.clone()))
        return scores


def constraint_only(
    model: Any, inputs: dict, id_set: IdSet, beams: int, reps: int, device: torch.device
) -> dict[str, Any]:
    """Replay one decode's processor calls through the anchor's and genret's processors (module doc)."""
    recorder = Recorder()
    generate(model, inputs, beams, id_set, "genret", before=[recorder])
    steps = recorder.steps
    makers: dict[str, Callable[[], LogitsProcessor]] = {
        "anchor": lambda: PrefixConstrainedLogitsProcessor(id_set.prefix_allowed_tokens_fn, beams),
        "genret": lambda: genret_processor(id_set, beams),
        "genret_new_tensor": lambda: genret_processor(id_set, beams, inplace=False),
    }
    # untimed first round: all three step by step, outputs compared
    procs = {name: make() for name, make in makers.items()}
    equal = True
    for input_ids, scores in steps:
        outs = {name: proc(input_ids, scores.clone()) for name, proc in procs.items()}
        equal &= torch.equal(outs["anchor"], outs["genret"]) and torch.equal(outs["anchor"], outs["genret_new_tensor"])
        del outs
    names = list(makers)
    totals: dict[str, list[float]] = {name: [] for name in names}
    cpu_totals: dict[str, list[float]] = {name: [] for name in names}
    per_step: dict[str, list[list[float]]] = {name: [] for name in names}
    for rep in range(reps):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            proc = makers[name]()
            step_s, cpu_s = [], 0.0
            for input_ids, scores in steps:
                fresh = scores.clone()
                wall, cpu, out = timed(device, lambda p=proc, i=input_ids, s=fresh: p(i, s))
                step_s.append(wall)
                cpu_s += cpu
                del out, fresh
            totals[name].append(sum(step_s))
            cpu_totals[name].append(cpu_s)
            per_step[name].append(step_s)
        log(
            f"    constraint only, round {rep + 1}/{reps}: "
            + ", ".join(f"{name} {totals[name][-1] * 1e3:.1f} ms" for name in names)
        )
    result: dict[str, Any] = {"steps": len(steps), "outputs_equal": bool(equal)}
    for name in names:
        result[name] = {
            "ms": [s * 1e3 for s in totals[name]],
            "p50_ms": statistics.median(totals[name]) * 1e3,
            "cpu_p50_ms": statistics.median(cpu_totals[name]) * 1e3,
            "per_step_p50_ms": [statistics.median(col) * 1e3 for col in zip(*per_step[name], strict=True)],
        }
    del steps, recorder
    return result


def run_setting(
    model_name: str, model: Any, id_set: IdSet, batch: int, beams: int, args: argparse.Namespace, device: torch.device
) -> dict[str, Any]:
    depth = id_set.trie.max_depth
    rounds = args.warmup + args.reps
    seconds: dict[str, list[float]] = {m: [] for m in METHODS}
    cpu_seconds: dict[str, list[float]] = {m: [] for m in METHODS}
    steps: dict[str, set[int]] = {m: set() for m in METHODS}
    valid: dict[str, list[float]] = {m: [] for m in METHODS}
    beams_check = {"identical": 0, "tied": 0, "different": 0}
    anchor_rounds = args.warmup + (args.reps if args.anchor_reps is None else min(args.anchor_reps, args.reps))
    for rnd in range(rounds):
        inputs = make_inputs(batch, args.query_length, args.seed + 1000 * rnd + batch, device)
        methods = METHODS if rnd < anchor_rounds else METHODS[:2]  # later rounds: the two fast methods only
        order = methods[rnd % len(methods) :] + methods[: rnd % len(methods)]
        outs, took = {}, {}
        for method in order:
            wall, cpu, out = timed(device, lambda m=method, x=inputs: generate(model, x, beams, id_set, m))
            took[method] = (wall, cpu)
            if rnd >= args.warmup:
                seconds[method].append(wall)
                cpu_seconds[method].append(cpu)
            steps[method].add(out.sequences.shape[1] - 1)
            valid[method].append(valid_share(id_set, out))
            outs[method] = Beams(out.sequences, out.sequences_scores)  # drop the per-step scores now
            del out
        if "anchor" in outs:
            for key, value in compare_beams(outs["genret"], outs["anchor"], batch, beams).items():
                beams_check[key] += value
        label = "warm-up" if rnd < args.warmup else f"round {rnd - args.warmup + 1}/{args.reps}"
        log(f"    {label}: " + ", ".join(f"{m} {took[m][0] * 1e3:.1f} ms (CPU {took[m][1] * 1e3:.1f})" for m in order))
        del outs
    result: dict[str, Any] = {
        "model": model_name,
        "kind": id_set.kind,
        "ids": len(id_set.ids),
        "batch": batch,
        "beams": beams,
        "steps": depth,
        "rounds": args.reps,
        "anchor_rounds": anchor_rounds - args.warmup,
        "warmup": args.warmup,
    }
    for method in METHODS:
        result[method] = summary(seconds[method], cpu_seconds[method], batch)
        result[method]["decoder_steps"] = sorted(steps[method])
        result[method]["valid_share"] = float(np.mean(valid[method]))
    unc, ours, anchor = (result[m]["p50_ms"] for m in METHODS)
    result["ratio_vs_unconstrained"] = ours / unc
    result["ratio_vs_unconstrained_paired_median"] = paired_median(seconds["genret"], seconds["unconstrained"])
    # what the ratio would be if genret's generate differed from the unconstrained one by the constraint's own
    # work alone (filled in below from the replay): a floor, free of the machine's noise
    result["ratio_vs_unconstrained_from_constraint_only"] = None
    result["anchor_vs_unconstrained"] = anchor / unc
    result["anchor_speedup"] = anchor / ours
    # the same from the process's CPU time: on a shared machine, free of the time spent waiting for a core
    unc_cpu, ours_cpu, anchor_cpu = (result[m]["cpu_p50_ms"] for m in METHODS)
    result["cpu_time"] = {
        "ratio_vs_unconstrained": ours_cpu / unc_cpu,
        "ratio_vs_unconstrained_paired_median": paired_median(cpu_seconds["genret"], cpu_seconds["unconstrained"]),
        "anchor_speedup": anchor_cpu / ours_cpu,
    }
    log("    constraint only: recording one decode, then replaying it")
    only = constraint_only(
        model, make_inputs(batch, args.query_length, args.seed + 999, device), id_set, beams, args.replay_reps, device
    )
    result["constraint_only"] = only
    result["constraint_only_speedup"] = only["anchor"]["p50_ms"] / only["genret"]["p50_ms"]
    result["ratio_vs_unconstrained_from_constraint_only"] = 1 + only["genret"]["p50_ms"] / unc
    result["cpu_time"]["constraint_only_speedup"] = only["anchor"]["cpu_p50_ms"] / only["genret"]["cpu_p50_ms"]
    all_steps = set().union(*steps.values())
    result["checks"] = {
        "same_beams_as_anchor": beams_check["different"] == 0,
        "queries": beams_check,
        "all_genret_valid": result["genret"]["valid_share"] == 1.0,
        "all_anchor_valid": result["anchor"]["valid_share"] == 1.0,
        "same_decoder_steps": all_steps == {depth},
        "constraint_only_outputs_equal": only["outputs_equal"],
    }
    return result


# ------------------------------------------------------------------------------------ main


def machine(device: torch.device, args: argparse.Namespace, dtype: torch.dtype) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info: dict[str, Any] = {
        "note": args.note,
        "device": device.type,
        "dtype": str(dtype).removeprefix("torch."),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def table(results: list[dict[str, Any]]) -> str:
    head = (
        f"{'model':<6} {'kind':<8} {'ids':>8} {'batch':>5} {'beams':>5} | {'uncons ms':>10} "
        f"{'genret ms':>10} {'ratio':>6} {'(cpu)':>6} {'anchor ms':>10} {'anc/gen':>8} | {'only: anchor':>12} "
        f"{'genret':>8} {'anc/gen':>8} | checks"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        only = r["constraint_only"]
        ok = all(r["checks"].values())
        lines.append(
            f"{r['model']:<6} {r['kind']:<8} {r['ids']:>8} {r['batch']:>5} {r['beams']:>5} | "
            f"{r['unconstrained']['p50_ms']:>10.1f} {r['genret']['p50_ms']:>10.1f} {r['ratio_vs_unconstrained']:>6.3f} "
            f"{r['cpu_time']['ratio_vs_unconstrained']:>6.3f} "
            f"{r['anchor']['p50_ms']:>10.1f} {r['anchor_speedup']:>8.2f} | {only['anchor']['p50_ms']:>12.1f} "
            f"{only['genret']['p50_ms']:>8.2f} {r['constraint_only_speedup']:>8.1f} | {'ok' if ok else r['checks']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--ids",
        type=count,
        nargs="+",
        default=[10_000, 100_000, 1_000_000],
        help="identifier set sizes (10000, 10k, 1M)",
    )
    parser.add_argument("--kind", nargs="+", choices=["random", "semantic"], default=["random"])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--beams", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--model", nargs="+", choices=list(MODELS), default=["small"])
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds per setting")
    parser.add_argument("--reps", type=int, default=3, help="timed rounds per setting (each: all three methods)")
    parser.add_argument(
        "--anchor-reps",
        type=int,
        default=None,
        help="run the anchor in the first N timed rounds only (default: all); the other rounds "
        "time unconstrained and genret alone, for a tighter ratio_vs_unconstrained",
    )
    parser.add_argument("--replay-reps", type=int, default=3, help="timed rounds of the constraint-only replay")
    parser.add_argument("--query-length", type=int, default=32)
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--dtype",
        choices=["auto", "float32", "bfloat16"],
        default="auto",
        help="model weights: auto = bfloat16 on CUDA, float32 on CPU",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads on CPU")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--note", default="", help="a note on the machine for the JSON")
    parser.add_argument(
        "--ngram-tokens",
        type=count,
        nargs="*",
        default=[],
        help="also time the n-gram constraint (SEAL) over synthetic corpora of these sizes "
        "(benchmarks/ngram_decoding.py), for every model, batch and beams setting",
    )
    parser.add_argument("--ngram-length", type=int, default=6, help="decoder steps of the n-gram settings")
    args = parser.parse_args(argv)
    if min(args.beams) < 2:
        parser.error("--beams: beam search needs at least 2 beams")

    transformers.logging.set_verbosity_error()
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else "cpu"
        if args.device == "auto"
        else args.device
    )
    if args.dtype == "auto":
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    else:
        dtype = getattr(torch, args.dtype)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    info = machine(device, args, dtype)
    log(f"device {device} ({info.get('gpu', info['cpu'])}), {dtype}, torch threads {torch.get_num_threads()}")

    models = {}
    for name in args.model:
        models[name] = make_model(name, device, dtype, args.seed)
        params = sum(p.numel() for p in models[name].parameters())
        log(f"model {name}: {params / 1e6:.1f}M parameters")

    results: list[dict[str, Any]] = []
    id_sets: list[dict[str, Any]] = []
    settings = [(m, b, k) for m in args.model for b in args.batch for k in args.beams]
    total = len(args.kind) * len(args.ids) * len(settings)
    done = 0
    for kind in args.kind:
        for n in args.ids:
            log(f"building {kind} id set of {n:,} identifiers (CSR trie, device tensors, GENRE dict trie)")
            id_set = make_id_set(kind, n, args.seed, device)
            b = id_set.build
            log(
                f"  CSR {b['csr_build_s']:.2f} s, {b['csr_host_mb']:.1f} MiB host, device tensors "
                f"{b['genret_device_tensors_s']:.2f} s / {b['genret_device_mb']:.1f} MiB; dict trie "
                f"{b['dict_build_s']:.1f} s / {b['dict_rss_mb']:.0f} MiB resident; {b['n_nodes']:,} nodes"
            )
            id_sets.append(b)
            for model_name, batch, beams in settings:
                done += 1
                log(
                    f"[{done}/{total}] model {model_name}, {kind} ids {len(id_set.ids):,}, batch {batch}, beams {beams}"
                )
                result = run_setting(model_name, models[model_name], id_set, batch, beams, args, device)
                results.append(result)
                log(
                    f"  p50: unconstrained {result['unconstrained']['p50_ms']:.1f} ms, genret "
                    f"{result['genret']['p50_ms']:.1f} ms ({result['ratio_vs_unconstrained']:.3f}x; CPU time "
                    f"{result['cpu_time']['ratio_vs_unconstrained']:.3f}x), anchor "
                    f"{result['anchor']['p50_ms']:.1f} ms (anchor/genret {result['anchor_speedup']:.2f}x); "
                    f"constraint only: anchor {result['constraint_only']['anchor']['p50_ms']:.1f} ms, genret "
                    f"{result['constraint_only']['genret']['p50_ms']:.2f} ms "
                    f"({result['constraint_only_speedup']:.1f}x); checks {result['checks']}"
                )
            del id_set
            gc.collect()

    ngram_results: list[dict[str, Any]] = []
    for n in args.ngram_tokens:
        from ngram_decoding import build_index, ngram_line, run_ngram_setting

        index, build = build_index(n, args.seed)
        log(f"n-gram index over {n:,} synthetic tokens: {build}")
        for model_name, batch, beams in settings:
            anchor_reps = args.reps if args.anchor_reps is None else min(args.anchor_reps, args.reps)
            result = run_ngram_setting(
                model_name,
                models[model_name],
                index,
                batch,
                beams,
                args.ngram_length,
                args.reps,
                anchor_reps,
                args.warmup,
                args.seed,
                args.query_length,
                device,
            )
            result["index"] = build
            ngram_results.append(result)
            log("  " + ngram_line(result))
        del index
        gc.collect()

    log("\n" + table(results))
    report = {
        "benchmark": "constrained_decoding",
        "argv": sys.argv[1:] if argv is None else argv,
        "machine": info,
        "models": {
            name: {"parameters": sum(p.numel() for p in m.parameters()), **MODELS[name], "vocab_size": VOCAB}
            for name, m in models.items()
        },
        "id_sets": id_sets,
        "settings": results,
        "ngram_settings": ngram_results,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        log(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
