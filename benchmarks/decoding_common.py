"""What both decoding benchmarks share (constrained_decoding.py and ngram_decoding.py): the random T5 models,
the inputs, the timing and the beam-by-beam comparison against the reference.

A module of its own so that neither benchmark imports the other (no import cycle).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import T5Config, T5ForConditionalGeneration

PAD, EOS = 0, 1  # T5: pad is also the decoder start token; the fill token of the constraint
VOCAB = 32128
ID_VOCAB = 32000
MODELS = {
    "small": dict(d_model=512, d_ff=2048, d_kv=64, num_layers=6, num_decoder_layers=6, num_heads=8),
    "tiny": dict(d_model=64, d_ff=256, d_kv=16, num_layers=2, num_decoder_layers=2, num_heads=4),
}


def log(message: str) -> None:
    print(message, flush=True)


def count(text: str) -> int:
    """``10000``, ``10k``, ``1M`` -> int."""
    scale = {"k": 10**3, "m": 10**6}.get(text[-1].lower(), 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def make_model(name: str, device: torch.device, dtype: torch.dtype, seed: int) -> T5ForConditionalGeneration:
    config = T5Config(vocab_size=VOCAB, decoder_start_token_id=PAD, pad_token_id=PAD, eos_token_id=EOS, **MODELS[name])
    torch.manual_seed(seed)
    return T5ForConditionalGeneration(config).eval().to(device=device, dtype=dtype)


def make_inputs(batch: int, length: int, seed: int, device: torch.device) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(2, ID_VOCAB, (batch, length), generator=gen)
    return {"input_ids": input_ids.to(device), "attention_mask": torch.ones_like(input_ids).to(device)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Beams:
    """What the checks need of a ``generate`` output."""

    sequences: torch.Tensor
    sequences_scores: torch.Tensor


def compare_beams(ours: Any, ref: Any, batch: int, beams: int) -> dict[str, int]:
    """Per query: identical sequences; else equal scores rank by rank (ties); else a difference."""
    result = {"identical": 0, "tied": 0, "different": 0}
    seq_a, seq_b = ours.sequences.cpu(), ref.sequences.cpu()
    if seq_a.shape != seq_b.shape:
        result["different"] = batch
        return result
    score_a, score_b = ours.sequences_scores.float().cpu(), ref.sequences_scores.float().cpu()
    for q in range(batch):
        rows = slice(q * beams, (q + 1) * beams)
        if torch.equal(seq_a[rows], seq_b[rows]):
            result["identical"] += 1
        elif torch.allclose(score_a[rows], score_b[rows], rtol=0, atol=1e-6):
            result["tied"] += 1
        else:
            result["different"] += 1
    return result


def summary(wall: list[float], cpu: list[float], batch: int) -> dict[str, Any]:
    ms = np.array(wall) * 1e3
    p50 = float(np.median(ms))
    return {
        "ms": ms.tolist(),
        "p50_ms": p50,
        "p95_ms": float(np.percentile(ms, 95)),
        "mean_ms": float(ms.mean()),
        "qps": batch / (p50 / 1e3),
        "cpu_ms": [c * 1e3 for c in cpu],
        "cpu_p50_ms": statistics.median(cpu) * 1e3,
    }


def timed(device: torch.device, fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """``(wall seconds, CPU seconds of this process, fn())``, synchronised on CUDA."""
    sync(device)
    start, start_cpu = time.perf_counter(), time.process_time()
    out = fn()
    sync(device)
    return time.perf_counter() - start, time.process_time() - start_cpu, out


def paired_median(ours: list[float], base: list[float]) -> float:
    """Median of the per-round ratios (runs of one round are seconds apart)."""
    return statistics.median(a / b for a, b in zip(ours, base, strict=True))
