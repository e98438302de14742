"""Run by test_training.py under `accelerate launch` with two CPU processes: train the tiny T5 straight for 12 steps
(run "a"), and again cut at step 6 then resumed to 12 (run "b"); write this process's parameter checksums, the rows
it saw in run "a" and the losses to OUT/rank-<i>.json."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch
from accelerate import PartialState
from transformers import T5Config, T5ForConditionalGeneration

from genret.training import TrainConfig, train

out = Path(sys.argv[1])
seen: list[int] = []


def collate(rows: list[dict]) -> dict[str, torch.Tensor]:
    seen.extend(int(r["idx"]) for r in rows)
    input_ids = torch.stack([r["input_ids"] for r in rows])
    labels = torch.stack([r["labels"] for r in rows])
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}


def tiny_t5() -> T5ForConditionalGeneration:
    torch.manual_seed(0)
    return T5ForConditionalGeneration(
        T5Config(
            vocab_size=64,
            d_model=32,
            d_ff=64,
            d_kv=16,
            num_layers=2,
            num_heads=2,
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=1,
            dropout_rate=0.0,
        )  # fmt: skip
    )


def flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().cpu().reshape(-1) for p in model.parameters()])


g = torch.Generator().manual_seed(1)
rows = [
    {"idx": i, "input_ids": torch.randint(2, 64, (8,), generator=g), "labels": torch.randint(2, 64, (3,), generator=g)}
    for i in range(32)
]
# 32 rows, 4 per process per step -> 4 steps per epoch; a constant LR so a run cut at step 6 can be resumed to 12
config = dict(batch_size=4, lr=1e-2, schedule="constant", log_every=1, checkpoint_every=6)
a = train(tiny_t5(), rows, collate, TrainConfig(output_dir=str(out / "a"), max_steps=12, **config), progress=False)
seen_a = list(seen)
train(tiny_t5(), rows, collate, TrainConfig(output_dir=str(out / "b"), max_steps=6, **config), progress=False)
b = train(tiny_t5(), rows, collate, TrainConfig(output_dir=str(out / "b"), max_steps=12, **config), resume=True,
          progress=False)  # fmt: skip

state = PartialState()
params_a, params_b = flat(a.model), flat(b.model)
report = {
    "rank": state.process_index,
    "num_processes": state.num_processes,
    "sha256": hashlib.sha256(params_a.numpy().tobytes()).hexdigest(),
    "resumed_max_abs_diff": float((params_a - params_b).abs().max()),
    "resumed_loss": b.loss,
    "seen": seen_a,
    "losses": [h["loss"] for h in a.history],
    "loss": a.loss,
}
(out / f"rank-{state.process_index}.json").write_text(json.dumps(report))
