"""The n-gram constraint (SEAL's identifiers) inside ``generate``: three ways side by side, one process.

Run from ``benchmarks/constrained_decoding.py --ngram-tokens 10M`` (same model, devices and timing
rules as the docid-trie settings there), or alone::

    python benchmarks/ngram_decoding.py --tokens 10M --batch 32 --beams 20 --json OUT

Corpus: i.i.d. Zipf(1) token ids over ``[2, 32000)`` in documents of 64-192 tokens
(``indexing.synthetic.zipf_token_stream``), indexed by the ``sa`` backend. Every method is one
``model.generate`` call (beam search, ``num_return_sequences = beams``, ``length_penalty=0``,
``early_stopping="never"``, ``max_new_tokens = --ngram-length``) over the same random queries:

- ``unconstrained``: the model and beam search alone (the physical limit);
- ``anchor``: SEAL's way, ``prefix_allowed_tokens_fn=``: per beam per step the n-gram's range is
  recomputed from its first token (``NgramIndex.find``) and every next token enumerated
  (``next_tokens``), in Python, as SEAL's fork of beam search does over its FM-index (anchors.md);
- ``genret``: ``ConstrainedLogitsProcessor(NgramConstraint(index, eos, pad, keep_top=2 * beams),
  inplace=True)``: ranges kept per beam and extended by one token, the hybrid policy for wide ranges.

Both constrained methods allow eos after one token or more and only pad after eos. Checks: genret
returns the anchor's beams (the hybrid policy's claim: with ``keep_top >= 2 * beams`` beam search
sees the same candidates as under the full mask), and every n-gram either returns occurs in the
corpus. Reported per method: p50 / p95 ms per batch, queries/s; ``ratio_vs_unconstrained`` (genret
/ unconstrained) and ``anchor_speedup`` (anchor / genret), from wall and from CPU time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessorList

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decoding_common import (  # noqa: E402  (shared model, inputs, timing and checks)
    EOS,
    PAD,
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

from genret.constraints import ConstrainedLogitsProcessor  # noqa: E402
from genret.constraints.ngram import NgramConstraint  # noqa: E402
from indexing.ngrams import NgramIndex, backend_class  # noqa: E402
from indexing.synthetic import zipf_token_stream  # noqa: E402

METHODS = ("unconstrained", "genret", "anchor")


def build_index(n_tokens: int, seed: int) -> tuple[NgramIndex, dict[str, Any]]:
    """The synthetic corpus's ``sa`` index and its build figures."""
    start = time.perf_counter()
    tokens, offsets = zipf_token_stream(n_tokens, seed=seed)
    made = time.perf_counter() - start
    start = time.perf_counter()
    shard = backend_class("sa").build(tokens.astype(np.int64), offsets)
    index = NgramIndex([shard], config={"backend": "sa"})
    return index, {
        "tokens": index.n_tokens,
        "documents": index.n_docs,
        "corpus_s": made,
        "build_s": time.perf_counter() - start,
        "index_mb": index.nbytes() / 2**20,
    }


class SealAnchor:
    """SEAL's constraint as a ``prefix_allowed_tokens_fn``: from scratch per beam per step."""

    def __init__(self, index: NgramIndex) -> None:
        self.index = index

    def __call__(self, batch_id: int, sent: torch.Tensor) -> list[int]:
        ngram = sent.tolist()[1:]  # after the decoder start token
        if EOS in ngram:
            return [PAD]
        ranges = self.index.find([ngram])
        if ranges.counts[0] == 0:
            return [PAD]
        tokens = self.index.next_tokens_csr(ranges)[1]
        allowed = tokens[(tokens >= 0) & (tokens < VOCAB)].tolist()
        return allowed + [EOS] if ngram else allowed


def generate(
    model: Any, inputs: dict, beams: int, length: int, index: NgramIndex, constraint: NgramConstraint, method: str
) -> Any:
    """One beam search; ``constraint`` is built once per setting, as a retriever builds it once."""
    kwargs: dict[str, Any] = {}
    if method == "genret":
        kwargs["logits_processor"] = LogitsProcessorList(
            [ConstrainedLogitsProcessor(constraint, num_beams=beams, inplace=True)]
        )
    elif method == "anchor":
        kwargs["prefix_allowed_tokens_fn"] = SealAnchor(index)
    elif method != "unconstrained":
        raise ValueError(method)
    with torch.inference_mode():
        return model.generate(
            **inputs,
            num_beams=beams,
            num_return_sequences=beams,
            do_sample=False,
            length_penalty=0.0,
            early_stopping="never",
            max_new_tokens=length,
            output_scores=True,
            return_dict_in_generate=True,
            **kwargs,
        )


def valid_share(index: NgramIndex, sequences: torch.Tensor) -> float:
    """Share of returned n-grams (start token dropped, cut at eos, pad dropped) that occur in the corpus."""
    ngrams = []
    for row in sequences[:, 1:].tolist():
        ngram = row[: row.index(EOS)] if EOS in row else row
        ngrams.append([t for t in ngram if t != PAD])
    return float((index.find(ngrams).counts > 0).mean())


def run_ngram_setting(
    model_name: str,
    model: Any,
    index: NgramIndex,
    batch: int,
    beams: int,
    length: int,
    reps: int,
    anchor_reps: int,
    warmup: int,
    seed: int,
    query_length: int,
    device: torch.device,
) -> dict[str, Any]:
    """Rounds of the three methods on the same inputs, order rotated; the anchor in the first rounds only."""
    seconds: dict[str, list[float]] = {m: [] for m in METHODS}
    cpu_seconds: dict[str, list[float]] = {m: [] for m in METHODS}
    valid: dict[str, list[float]] = {m: [] for m in METHODS}
    beams_check = {"identical": 0, "tied": 0, "different": 0}
    constraint = NgramConstraint(index, eos_token_id=EOS, fill_token_id=PAD, keep_top=2 * beams)
    for rnd in range(warmup + reps):
        inputs = make_inputs(batch, query_length, seed + 7000 + 1000 * rnd + batch, device)
        methods = METHODS if rnd < warmup + anchor_reps else METHODS[:2]
        order = methods[rnd % len(methods) :] + methods[: rnd % len(methods)]
        outs, took = {}, {}
        for method in order:
            wall, cpu, out = timed(
                device, lambda m=method, x=inputs: generate(model, x, beams, length, index, constraint, m)
            )
            took[method] = wall
            if rnd >= warmup:
                seconds[method].append(wall)
                cpu_seconds[method].append(cpu)
            if method != "unconstrained":
                valid[method].append(valid_share(index, out.sequences.cpu()))
            outs[method] = Beams(out.sequences, out.sequences_scores)
            del out
        if "anchor" in outs:
            for key, value in compare_beams(outs["genret"], outs["anchor"], batch, beams).items():
                beams_check[key] += value
        label = "warm-up" if rnd < warmup else f"round {rnd - warmup + 1}/{reps}"
        log(f"    n-gram {label}: " + ", ".join(f"{m} {took[m] * 1e3:.1f} ms" for m in order))
    result: dict[str, Any] = {
        "model": model_name,
        "tokens": index.n_tokens,
        "batch": batch,
        "beams": beams,
        "rows": batch * beams,
        "ngram_length": length,
        "rounds": reps,
        "anchor_rounds": anchor_reps,
    }
    for method in METHODS:
        result[method] = summary(seconds[method], cpu_seconds[method], batch)
    unc, ours, anchor = (result[m]["p50_ms"] for m in METHODS)
    result["ratio_vs_unconstrained"] = ours / unc
    result["ratio_vs_unconstrained_paired_median"] = paired_median(seconds["genret"], seconds["unconstrained"])
    result["anchor_speedup"] = anchor / ours
    unc_cpu, ours_cpu, anchor_cpu = (result[m]["cpu_p50_ms"] for m in METHODS)
    result["cpu_time"] = {"ratio_vs_unconstrained": ours_cpu / unc_cpu, "anchor_speedup": anchor_cpu / ours_cpu}
    result["checks"] = {
        "same_beams_as_anchor": beams_check["different"] == 0,
        "queries": beams_check,
        "all_genret_ngrams_occur": bool(np.mean(valid["genret"]) == 1.0),
        "all_anchor_ngrams_occur": bool(np.mean(valid["anchor"]) == 1.0),
    }
    return result


def ngram_line(r: dict[str, Any]) -> str:
    return (
        f"n-gram {r['tokens']:,} tokens, model {r['model']}, batch {r['batch']} x {r['beams']} beams, "
        f"{r['ngram_length']} steps: unconstrained {r['unconstrained']['p50_ms']:.1f} ms, genret "
        f"{r['genret']['p50_ms']:.1f} ms ({r['ratio_vs_unconstrained']:.3f}x; CPU time "
        f"{r['cpu_time']['ratio_vs_unconstrained']:.3f}x), SEAL-style anchor {r['anchor']['p50_ms']:.1f} ms "
        f"(anchor/genret {r['anchor_speedup']:.1f}x); checks {r['checks']}"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=count, nargs="+", default=[10_000_000], help="corpus sizes (10M, 50M, ...)")
    parser.add_argument("--model", default="small", choices=["small", "tiny"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--beams", type=int, default=20)
    parser.add_argument("--ngram-length", type=int, default=6, help="decoder steps (SEAL decodes up to 10)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--anchor-reps", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--query-length", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    model = make_model(args.model, device, dtype, args.seed)
    results = []
    for n in args.tokens:
        index, build = build_index(n, args.seed)
        log(f"n-gram index: {build}")
        result = run_ngram_setting(
            args.model,
            model,
            index,
            args.batch,
            args.beams,
            args.ngram_length,
            args.reps,
            args.anchor_reps,
            args.warmup,
            args.seed,
            args.query_length,
            device,
        )
        result["index"] = build
        results.append(result)
        log(ngram_line(result))
    report = {"benchmark": "ngram_decoding", "device": device.type, "dtype": str(dtype), "settings": results}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
