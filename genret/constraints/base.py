"""The ``Constraint`` protocol: which tokens a decoder may emit next, for all rows (beams) at once.

A constraint keeps one *state* per row in a tensor on the model's device (a trie node id for
DSI-style identifiers; later FM-index ranges for SEAL's n-grams). Decoding calls ``start`` once,
then for every step ``mask`` (what may come next) and, after each row emitted a token,
``advance``. :class:`genret.constraints.ConstrainedLogitsProcessor` drives any constraint from
inside ``model.generate``.

The contract every implementation keeps:

- **Batched, on the device, no synchronisation.** Each method is a few tensor ops over all rows;
  no Python loop over rows, nothing that copies to the host (``.item()``, ``.tolist()``,
  ``.nonzero()``, a tensor in a Python ``if``), so a decoding step never waits on the device.
- **A state is a function of the tokens emitted since ``start``.** Two rows that emitted the same
  tokens have interchangeable states. The processor relies on it: it finds each row's parent by
  comparing sequences, and any row with the same sequence will do.
- **States are values.** ``advance`` returns a new tensor and never writes into its input; callers
  do not write into a state either (an implementation may remember which tensors it made).
  Indexing a state along its first dimension (``state[rows]``) selects rows.
- **Never an invalid token, never an all ``-inf`` row.** ``mask`` returns a new tensor of the
  scores' shape and dtype where every token the constraint does not allow is ``-inf`` and every
  allowed token keeps its score. A row with no allowed continuation (a dead state: the row emitted
  a token the constraint did not allow; or a finished identifier) keeps exactly one token,
  ``fill_token_id`` (the model's pad token, or eos), so beam search never sees a row of ``-inf``
  only; no other token is let through. ``fill_token_id`` keeps the model's score: if that score is
  itself ``-inf`` (another processor removed it) the row is all ``-inf``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Constraint(Protocol):
    """Allowed next tokens for a batch of rows, as tensor operations on the model's device."""

    fill_token_id: int
    """The one token left to a row with no allowed continuation (pad, or eos)."""

    def start(self, n: int, device: torch.device | str) -> torch.Tensor:
        """The state of ``n`` rows that have emitted nothing yet, on ``device``."""
        ...

    def advance(self, state: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The state after row ``i`` (state ``state[i]``) emitted ``tokens[i]``.

        A token the constraint did not allow, and any negative token, gives a dead state (only
        ``fill_token_id`` follows; the processor sends -1 to kill a row).
        """
        ...

    def mask(self, state: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """``scores [n, vocab]`` with every token not allowed after ``state[i]`` set to ``-inf``.

        Rows with no allowed continuation keep ``fill_token_id`` only. Returns a new tensor.
        """
        ...
