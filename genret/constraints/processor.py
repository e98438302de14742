"""``ConstrainedLogitsProcessor``: any :class:`~genret.constraints.Constraint` inside ``model.generate``.

``generate`` is used as it is (no fork: forks are what froze SEAL at transformers 4.13); the
constraint rides along as a ``transformers.LogitsProcessor``::

    processor = ConstrainedLogitsProcessor(TrieConstraint(trie, fill_token_id=pad), num_beams=k, inplace=k > 1)
    model.generate(**inputs, num_beams=k, num_return_sequences=k, max_new_tokens=trie.max_depth,
                   logits_processor=LogitsProcessorList([processor]))

What ``generate`` hands a processor (checked in transformers 5.24, ``generation/utils.py``): on
every step ``processor(input_ids, scores)`` with ``input_ids [rows, length]`` the full sequences
of the rows still being decoded (decoder start or prompt included) and ``scores [rows, vocab]``
float32 (log-softmaxed under beam search, raw logits under greedy / sampling). Beam search
passes the *running* beams only, always ``batch * num_beams`` rows, batch item ``b`` in rows
``b * num_beams .. (b + 1) * num_beams - 1``, reordered between steps by a top-k it does not
report; finished hypotheses are kept elsewhere and never come back. Greedy and sampling keep
rows in place (a finished row gets pad appended). On the first step every row of an item holds
the same sequence.

So on each call the processor finds every row's parent among the previous call's rows: the row,
in the same batch item, whose sequence equals this row's sequence minus its last token (a
``[batch, beams, beams, length]`` equality, then a ``max``; rows with equal sequences have equal
states, so any match will do). Then ``state = advance(previous_state[parent], last_token)`` and
the scores come back through ``mask``; the state is followed, never recomputed from the prefix.
On the first token every previous row holds the start state, so there is nothing to match. All
tensor operations, no host-device synchronisation.
A row with no parent in its group (``num_beams`` not that of the ``generate`` call) is sent
token -1: no constraint allows it, so the row goes dead and may only emit the fill token; the
constraint still never lets an invalid token through, but such rows decode nothing useful.

**Scores.** Disallowed tokens become ``-inf``; allowed ones keep the model's score (under beam
search its log-probability, not renormalised over the allowed tokens: the same arithmetic as
``prefix_allowed_tokens_fn``, so the beams and scores are GENRE's). With ``num_beams=k``,
``num_return_sequences=k``, ``length_penalty=0.0``, ``early_stopping="never"`` (with ``True``,
beam search may stop on padded placeholder beams before the longer identifiers are reached),
``max_new_tokens=trie.max_depth``, ``output_scores=True`` and ``return_dict_in_generate=True``,
every returned sequence is an
identifier + eos (then padding, which beam search writes as eos when pad is 0) and
``sequences_scores`` is its log-probability, whenever ``k`` is at most the number of
identifiers: a live beam always has an allowed continuation, every identifier ends within
``max_depth`` tokens, so ``k`` finished identifiers are found before the limit. One caveat from
transformers itself: it marks "no hypothesis" with a score of -1e9, so a model whose identifiers
all score below that would be outranked by empty placeholders.

**In place.** ``inplace=True`` writes the mask into the scores the processor is handed (through
the constraint's ``mask_``, where it has one: an optional method beside the protocol's ``mask``,
same arguments and result) instead of returning a new ``[rows, vocab]`` tensor. That is most of
the constraint's cost on CPU (a fresh tensor's pages fault in on first touch, several times the cost
of setting one to -inf in place) and saves a pass over the scores on a GPU. It is safe under beam
search (``num_beams > 1``): ``generate`` hands the processors a fresh
log-softmax tensor each step and keeps only a copy of what they return. Not under greedy search or
sampling: there the scores handed over are also what ``output_logits=True`` returns, and a
caller that passes the same scores tensor to several calls must leave it off (the default).

**One processor per ``generate`` call.** It keeps the previous call's rows and states. A call
whose ``input_ids`` are not one token longer than the previous call's (or have another number
of rows) starts afresh, so reusing a processor for sequential calls works in practice, but a
new call that happens to be exactly one token longer would be taken for a continuation: make a
new processor (cheap: the constraint keeps the device data) or call :meth:`reset`. Assisted /
speculative decoding (several tokens per call) is not supported.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

from genret.constraints.base import Constraint


class ConstrainedLogitsProcessor(LogitsProcessor):
    """Mask ``generate``'s scores with ``constraint``, following beams as they are reordered.

    ``num_beams`` is the ``num_beams`` of the ``generate`` call (1 for greedy or sampling, also
    with ``num_return_sequences > 1``): rows are matched to parents within groups of that size.
    The constraint applies to the tokens generated after the prompt (for encoder-decoder models
    the prompt is the decoder start token). ``inplace=True`` masks the scores in place (module
    doc: for beam search, where it saves most of the cost on CPU).
    """

    def __init__(self, constraint: Constraint, num_beams: int = 1, inplace: bool = False) -> None:
        if num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {num_beams}")
        self.constraint = constraint
        self.num_beams = int(num_beams)
        self.inplace = bool(inplace)
        self._offsets: torch.Tensor | None = None  # first row of each row's group, cached per shape and device
        self.reset()

    def reset(self) -> None:
        """Forget the previous call: the next call starts a new decode."""
        self.state: torch.Tensor | None = None  #: the constraint state of each row after the last call
        self._generated: torch.Tensor | None = None  # the last call's tokens after the prompt
        self._prompt_len = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        rows, length = input_ids.shape
        prev = self._generated
        fresh = self.state is None or prev is None or prev.shape[0] != rows
        if fresh or self._prompt_len + prev.shape[1] + 1 != length:
            self._prompt_len = length
            state = self.constraint.start(rows, scores.device)
        elif rows % self.num_beams:
            raise ValueError(f"{rows} rows are not a whole number of groups of num_beams={self.num_beams}")
        elif prev.shape[1] == 0:  # the first token: every row's parent holds the start state
            state = self.constraint.advance(self.state, input_ids[:, -1])
        else:
            parent, found = self._parents(input_ids[:, self._prompt_len : -1], prev)
            # a row without a parent (num_beams does not match the generate call) emits token -1,
            # which no constraint allows: it goes dead and may only emit fill_token_id
            tokens = torch.where(found, input_ids[:, -1], -1)
            state = self.constraint.advance(self.state[parent], tokens)
        self.state = state
        self._generated = input_ids[:, self._prompt_len :].clone()
        mask_ = getattr(self.constraint, "mask_", None) if self.inplace else None
        return mask_(state, scores) if mask_ is not None else self.constraint.mask(state, scores)

    def _parents(self, now: torch.Tensor, prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For each row of ``now``: the row of ``prev`` (in its group) with the same tokens, and whether
        there is one. Rows with equal tokens have equal states, so any match will do."""
        beams = self.num_beams
        rows, length = now.shape
        groups = rows // beams
        same = (now.reshape(groups, beams, 1, length) == prev.reshape(groups, 1, beams, length)).all(dim=-1)
        found, within = same.to(torch.uint8).max(dim=-1)  # a matching previous row of the group, if any
        offsets = self._offsets
        if offsets is None or offsets.shape[0] != groups or offsets.device != now.device:
            offsets = self._offsets = torch.arange(0, rows, beams, device=now.device)[:, None]
        return (within + offsets).view(rows), found.view(rows).bool()
