"""CopyBonus against a brute-force reading: each row's scores gain the bonus exactly on its source's tokens (the
skipped ones excepted), only until the row writes the stop token, with the beams of one source sharing it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genret.copy_bonus import CopyBonus
from indexing.tokenizer import minilm_path


def brute_force(source, beams, bonus, skip, stop, input_ids, scores):
    out = scores.clone()
    for row in range(input_ids.shape[0]):
        if stop is not None and stop in input_ids[row].tolist():
            continue
        for token in set(source[row // beams].tolist()) - set(skip):
            out[row, token] += bonus
    return out


@pytest.mark.parametrize("bonus", [2.0, -1.5])
@pytest.mark.parametrize("stop", [None, 7])
def test_bonus_lands_on_the_source_tokens_until_the_stop_token(bonus: float, stop: int | None) -> None:
    rng = np.random.default_rng(0)
    batch, beams, vocab = 3, 4, 40
    source = torch.as_tensor(rng.integers(0, 12, size=(batch, 9)))  # repeated tokens, pad 0 among them
    skip = [0, 5]
    bonus_processor = CopyBonus(source, beams, bonus, skip, stop_token_id=stop)
    for step in range(1, 5):
        input_ids = torch.as_tensor(rng.integers(1, 10, size=(batch * beams, step)))
        scores = torch.as_tensor(rng.normal(size=(batch * beams, vocab)), dtype=torch.float32)
        expected = brute_force(source, beams, bonus, skip, stop, input_ids, scores)
        torch.testing.assert_close(bonus_processor(input_ids, scores.clone()), expected)


def test_zero_bonus_changes_nothing_and_a_wrong_row_count_is_refused() -> None:
    source = torch.tensor([[3, 4, 5]])
    scores = torch.randn(2, 10)
    assert torch.equal(CopyBonus(source, 2, 0.0, [])(torch.ones(2, 1, dtype=torch.long), scores), scores)
    with pytest.raises(ValueError, match="built for 2 rows"):
        CopyBonus(source, 2, 1.0, [])(torch.ones(3, 1, dtype=torch.long), torch.randn(3, 10))


def test_skip_ids_are_the_special_and_punctuation_tokens_of_a_tokenizer() -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(minilm_path()))
    skip = set(CopyBonus.skip_ids(tok))
    assert set(tok.all_special_ids) <= skip
    assert {tok.convert_tokens_to_ids(t) for t in ("?", ",", ".")} <= skip
    assert not {tok.convert_tokens_to_ids(t) for t in ("broncos", "50", "##s")} & skip
