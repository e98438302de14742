"""The cost sweep's decoding latency (:mod:`genret.scaling.cost`): constrained beam search with an index.

``model.generate`` with constrained beam search (``decode.batch`` queries x ``decode.beams`` beams; the DSI
retriever's arguments for DSI, SEAL's for n-grams with ``max_new_tokens = decode.ngram_length``) of a tiny
T5 (:data:`TINY_T5`) built from a config with random weights and the scheme's vocabulary, so the output
layer and the ``[rows, vocab]`` scores grow as they do for a real model (atomic ids add a token per
document). ``decode.warmup`` untimed batches, then ``decode.rounds`` timed ones, each of new random queries.
The constraint's own time is that of the logits processor's calls (:class:`TimedProcessor`), inside the same
``generate``. Every returned sequence is checked (``valid_share``).
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from genret.scaling.memory import peak_rss, reset_peak, rss_now

if TYPE_CHECKING:
    from genret.scaling.cost_config import DecodeConfig

TINY_T5 = {"d_model": 64, "d_ff": 256, "d_kv": 16, "num_layers": 2, "num_decoder_layers": 2, "num_heads": 4}


def measure_decoding(decoder: dict[str, Any], cfg: DecodeConfig, tick: Any = None) -> dict[str, Any]:
    """Time constrained beam search of random queries with a tiny random T5 (see the module docstring)."""
    import torch
    from transformers import LogitsProcessorList

    from genret.constraints import ConstrainedLogitsProcessor

    torch.set_num_threads(cfg.threads)
    peak_before = peak_rss()  # the cell's peak so far (build and save), before the counter is reset
    rss_before = rss_now()
    reset_peak()
    model = tiny_model(decoder["vocab"], decoder["pad"], decoder["eos"], cfg.seed)
    constraint, generate_args, check = _constraint(decoder, cfg)
    walls, constraint_s, valid, steps = [], [], [], set()
    for rnd in range(cfg.warmup + cfg.rounds):
        gen = torch.Generator().manual_seed(cfg.seed + 1000 + rnd)
        input_ids = torch.randint(2, decoder["query_vocab"], (cfg.batch, cfg.query_length), generator=gen)
        timer = TimedProcessor(ConstrainedLogitsProcessor(constraint, num_beams=cfg.beams, inplace=True))
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                logits_processor=LogitsProcessorList([timer]),
                num_beams=cfg.beams,
                num_return_sequences=cfg.beams,
                do_sample=False,
                length_penalty=0.0,
                early_stopping="never",
                return_dict_in_generate=True,
                **generate_args,
            )
        wall = time.perf_counter() - start
        sequences = out.sequences[:, 1:].numpy()
        del out
        valid.append(check(sequences))
        steps.add(sequences.shape[1])
        if rnd >= cfg.warmup:
            walls.append(wall)
            constraint_s.append(timer.seconds)
        if tick is not None:
            tick()
    return {
        "method": "model.generate, constrained beam search, tiny random T5",
        "model": TINY_T5,
        "model_params": int(sum(p.numel() for p in model.parameters())),
        "vocab_size": decoder["vocab"],
        "batch": cfg.batch,
        "beams": cfg.beams,
        "rows": cfg.batch * cfg.beams,
        "warmup": cfg.warmup,
        "rounds": cfg.rounds,
        "query_length": cfg.query_length,
        "torch_threads": torch.get_num_threads(),
        "decoder_steps": sorted(steps),
        "batch_ms": [w * 1e3 for w in walls],
        "per_query_ms": [w * 1e3 / cfg.batch for w in walls],
        "constraint_ms_p50": statistics.median(constraint_s) * 1e3,
        "constraint_share": sum(constraint_s) / sum(walls),
        "valid_share": float(np.mean(valid)),
        "queries": cfg.batch * cfg.rounds,
        "seconds": sum(walls),
        "rss_before_bytes": rss_before,
        "rss_delta_bytes": peak_rss() - rss_before,
        "cell_peak_bytes": max(peak_before, peak_rss()),
        **{k: v for k, v in generate_args.items() if k != "decoder_input_ids"},
    }


def _constraint(decoder: dict[str, Any], cfg: DecodeConfig) -> tuple[Any, dict[str, Any], Any]:
    """The scheme's constraint, its extra ``generate`` arguments, and a check of returned sequences
    (share of rows that are identifiers / corpus n-grams)."""
    import torch

    if decoder["kind"] == "dsi":
        from genret.constraints import TrieConstraint

        trie = decoder["trie"]

        def check_ids(seqs: np.ndarray) -> float:
            return float(np.mean(trie.lookup_batch(seqs) >= 0))

        return (
            TrieConstraint(trie, fill_token_id=decoder["pad"]),
            {"max_new_tokens": trie.max_depth, "output_scores": True},
            check_ids,
        )
    from genret.constraints.ngram import NgramConstraint

    index = decoder["index"]
    stop = {decoder["eos"], decoder["pad"]}

    def check_ngrams(seqs: np.ndarray) -> float:
        grams = [next((row[:j] for j, t in enumerate(row) if t in stop), row) for row in seqs.tolist()]
        return float(np.mean(index.find(grams).counts > 0))

    keep = cfg.keep_top or 2 * cfg.beams
    start = torch.full((cfg.batch, 1), decoder["pad"], dtype=torch.long)
    return (
        NgramConstraint(index, decoder["eos"], decoder["pad"], cfg.enumerate_width, keep),
        {"max_new_tokens": cfg.ngram_length, "decoder_input_ids": start},
        check_ngrams,
    )


def tiny_model(vocab: int, pad: int, eos: int, seed: int) -> Any:
    """A T5 of ``TINY_T5`` size with random weights and ``vocab`` tokens (its output layer grows with it)."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    config = T5Config(vocab_size=vocab, decoder_start_token_id=pad, pad_token_id=pad, eos_token_id=eos, **TINY_T5)
    return T5ForConditionalGeneration(config).eval()


class TimedProcessor:
    """Wraps a logits processor and adds up the wall time of its calls (the constraint's own work)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seconds = 0.0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        start = time.perf_counter()
        out = self.inner(input_ids, scores)
        self.seconds += time.perf_counter() - start
        return out
