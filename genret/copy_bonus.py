"""``CopyBonus``: a logits processor that adds a fixed bonus to the tokens of each row's own source text.

A 1-Pager path is mostly the question's own words (the path rule puts the question words the passage holds
first), and a small decoder over a frozen encoder learns to copy them only loosely. A pointer-style prior fixes
that at decoding time without touching the model: while a row has not written ``stop_token_id`` (the answer
marker), every token of its source text (special tokens and tokens without a letter or digit excluded) gets
``bonus`` added to its score. The constraint still decides what is allowed; the bonus only reorders what is.
Beam scores include the bonus, so passages are ranked by it too. Chosen on held-out training questions
(``recipes/onepager-squad.yaml``).

    bonus = CopyBonus(enc["input_ids"], num_beams=10, bonus=2.0, skip_ids=CopyBonus.skip_ids(tokenizer),
                      stop_token_id=answer_marker)
    model.generate(..., logits_processor=LogitsProcessorList([bonus, constrained]))
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import LogitsProcessor


class CopyBonus(LogitsProcessor):
    """Add ``bonus`` to the scores of each row's source tokens until the row writes ``stop_token_id``."""

    def __init__(
        self,
        source_ids: torch.Tensor,
        num_beams: int,
        bonus: float,
        skip_ids: torch.Tensor | list[int],
        stop_token_id: int | None = None,
    ) -> None:
        if source_ids.ndim != 2:
            raise ValueError(f"source_ids must be [batch, length], got shape {tuple(source_ids.shape)}")
        if num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {num_beams}")
        skip = torch.as_tensor(skip_ids, dtype=source_ids.dtype, device=source_ids.device)
        rows = source_ids.repeat_interleave(num_beams, dim=0)
        self.keep = ~torch.isin(rows, skip)  # [rows, length]: the source tokens that earn the bonus
        self.ids = torch.where(self.keep, rows, torch.zeros_like(rows))
        self.bonus = float(bonus)
        self.stop_token_id = stop_token_id

    @staticmethod
    def skip_ids(tokenizer: Any) -> list[int]:
        """A Hugging Face tokenizer's special tokens and the tokens without a letter or digit (punctuation)."""
        special = set(tokenizer.all_special_ids)
        special.update(i for token, i in tokenizer.get_vocab().items() if not any(c.isalnum() for c in token))
        return sorted(special)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.bonus == 0.0:
            return scores
        if input_ids.shape[0] != self.ids.shape[0]:
            raise ValueError(
                f"CopyBonus was built for {self.ids.shape[0]} rows (batch x num_beams), got {input_ids.shape[0]}"
            )
        hit = torch.zeros_like(scores)
        hit.scatter_reduce_(1, self.ids.to(scores.device), self.keep.to(scores), reduce="amax")  # [rows, vocab] 0/1
        if self.stop_token_id is not None:
            hit *= ~(input_ids == self.stop_token_id).any(dim=1, keepdim=True)
        return scores + self.bonus * hit
