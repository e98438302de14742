"""Run by test_encoder_cache.py under `accelerate launch` with two CPU processes: the main process builds the
encoder cache while the other waits, both train the same frozen-encoder model for 6 steps; each writes its
parameter checksum, whether its encoder moved, and the cache key it read to OUT/rank-<i>.json."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState

from genret.encoder_cache import training_inputs
from genret.models import ModelConfig, build_text_model
from genret.training import TrainConfig, train
from indexing.tokenizer import load_tokenizer

out = Path(sys.argv[1])
model, tok = build_text_model(
    ModelConfig(  # tiny_models.tiny_model_config("minilm-decoder"); this script runs alone
        name_or_path="bert",
        dropout=0.0,
        decoder_layers=2,
        config={
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 128,
            "max_position_embeddings": 128,
        },
    ),
    load_tokenizer("minilm"),
)
before = {k: v.clone() for k, v in model.get_encoder().state_dict().items()}
rng = np.random.default_rng(0)
pairs = {
    "source": [f"passage {i} about subject {i % 5}" for i in range(32)],
    "target_ids": [rng.integers(1000, 2000, size=3).tolist() + [102] for _ in range(32)],
}
dataset, collate, lengths = training_inputs(
    model, tok, pairs, freeze=True, max_source_length=16, cache_dir=out / "cache", progress=False
)
result = train(
    model,
    dataset,
    collate,
    TrainConfig(output_dir=str(out / "train"), max_steps=6, batch_size=4, lr=3e-3),
    progress=False,
    lengths=lengths,
)
state = PartialState()
flat = torch.cat([p.detach().reshape(-1) for p in result.model.parameters()])
encoder = result.model.get_encoder().state_dict()
report = {
    "rank": state.process_index,
    "num_processes": state.num_processes,
    "sha256": hashlib.sha256(flat.numpy().tobytes()).hexdigest(),
    "encoder_unchanged": all(torch.equal(encoder[k], v) for k, v in before.items()),
    "cache_key": collate.cache.key,
    "loss": result.loss,
}
(out / f"rank-{state.process_index}.json").write_text(json.dumps(report))
