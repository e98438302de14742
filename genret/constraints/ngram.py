"""``NgramConstraint``: decode only n-grams that occur in an :class:`indexing.ngrams.NgramIndex` (SEAL).

A row's state is its n-gram's :class:`~indexing.ngrams.Ranges` row: depth, then ``lo`` and ``hi`` per
shard, as one int64 tensor ``[n, 1 + 2 * shards]`` on the model's device (depth -1 = dead: only
``fill_token_id`` follows). ``advance`` extends each row's range by the token it emitted (one
batched ``extend``, never recomputed from the start of the n-gram); eos ends an n-gram.

Which tokens may follow (``mask``), per row:

- the empty n-gram (depth 0): every token of the corpus (computed once, kept as a device row);
- a range of at most ``enumerate_width`` occurrences: its next tokens, enumerated by the index,
  plus eos;
- a wider range (a frequent n-gram with thousands of followers): the model's best-scoring tokens
  are checked by extension, in score order, until ``keep_top`` of them are found to continue the
  n-gram (or every token was checked), plus eos. The allowed tokens a row keeps are then exactly its
  ``keep_top`` best allowed ones; beam search never picks more than ``2 * num_beams`` tokens of
  one row, so with ``keep_top >= 2 * num_beams`` the beams equal those of the full mask (tested),
  at a fraction of the cost (dependencies.md, section 4.5: full enumeration of 640 beams at 50M
  tokens 438 ms a step, the hybrid about 5 ms).

The index lives on the CPU: each step copies states, tokens and the top candidates to the host,
and the allowed (row, token) pairs back to the device in one copy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from indexing.ngrams import NgramIndex, Ranges

DEAD = -1


class NgramConstraint:
    """N-grams of ``index`` (each ended by ``eos_token_id``), optionally after a fixed ``prefix``.

    ``prefix``: tokens every n-gram starts with, already in the decoder prompt (e.g. the title
    marker of the index's title view); decoding continues from their range.
    """

    def __init__(self, index: NgramIndex, eos_token_id: int, fill_token_id: int, enumerate_width: int = 1000,
                 keep_top: int = 40, prefix: Sequence[int] = ()) -> None:
        if keep_top < 1 or enumerate_width < 0:
            raise ValueError(f"keep_top must be >= 1 and enumerate_width >= 0, got {keep_top}, {enumerate_width}")
        self.index = index
        self.eos_token_id = int(eos_token_id)
        self.fill_token_id = int(fill_token_id)
        self.enumerate_width = int(enumerate_width)
        self.keep_top = int(keep_top)
        self.prefix = [int(t) for t in prefix]
        self.shards = len(index.shards)
        self._start = index.find([self.prefix])
        self._first_tokens = index.next_tokens_csr(self._start)[1]  # what may follow the prefix
        self._first_cache: dict[tuple[torch.device, torch.dtype, int], torch.Tensor] = {}

    def __repr__(self) -> str:
        return (f"NgramConstraint({self.index!r}, eos={self.eos_token_id}, enumerate_width={self.enumerate_width}, "
                f"keep_top={self.keep_top})")

    # ------------------------------------------------------------ state <-> ranges

    def _to_ranges(self, state: torch.Tensor) -> tuple[Ranges, np.ndarray]:
        host = state.detach().to("cpu", torch.int64).numpy()
        live = host[:, 0] >= 0
        s = self.shards
        depth = np.where(live, host[:, 0], 0)
        return Ranges(host[:, 1 : 1 + s].copy(), host[:, 1 + s :].copy(), depth), live

    def _to_state(self, ranges: Ranges, live: np.ndarray, device: torch.device) -> torch.Tensor:
        host = np.concatenate([np.where(live, ranges.depth, DEAD)[:, None], ranges.lo, ranges.hi], axis=1)
        return torch.from_numpy(np.ascontiguousarray(host, dtype=np.int64)).to(device)

    # ------------------------------------------------------------- Constraint

    def start(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """``n`` rows at the prefix (the empty n-gram when there is none)."""
        start = self._start[np.zeros(n, dtype=np.int64)]
        live = np.full(n, start.counts[0] > 0 if n else True)
        return self._to_state(Ranges(start.lo, start.hi, np.full(n, len(self.prefix), dtype=np.int64)), live,
                              torch.device(device))

    def advance(self, state: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Each row's n-gram extended by its token; eos, a negative token or a token that does not
        continue the n-gram gives a dead row."""
        ranges, live = self._to_ranges(state)
        tok = tokens.detach().to("cpu", torch.int64).numpy()
        grown = self.index.extend(ranges, np.where(live & (tok >= 0), tok, -1))
        live = live & (tok >= 0) & (tok != self.eos_token_id) & (grown.counts > 0)
        return self._to_state(grown, live, state.device)

    def mask(self, state: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """``scores`` with every token that does not continue a row's n-gram set to -inf (see module)."""
        pairs, at_start = self._allowed(state, scores)
        return self._write(scores, pairs, at_start, inplace=False)

    def mask_(self, state: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """``mask`` written into ``scores`` (which it returns): no new ``[n, vocab]`` tensor."""
        pairs, at_start = self._allowed(state, scores)
        return self._write(scores, pairs, at_start, inplace=True)

    def _write(self, scores: torch.Tensor, pairs: np.ndarray, at_start: np.ndarray, inplace: bool) -> torch.Tensor:
        """-inf everywhere but at ``pairs`` (row, token) and, in rows ``at_start``, the prefix's followers."""
        vocab = scores.shape[1]
        pairs_dev = torch.from_numpy(pairs).to(scores.device)  # the one copy to the device
        kept = scores[pairs_dev[0], pairs_dev[1]]
        start = None
        if at_start.any():
            start_rows = torch.from_numpy(np.flatnonzero(at_start)).to(scores.device)
            start = (start_rows, scores[start_rows] + self._first_row(scores.device, scores.dtype, vocab))
        out = scores.fill_(-math.inf) if inplace else torch.full_like(scores, -math.inf)
        out[pairs_dev[0], pairs_dev[1]] = kept
        if start is not None:
            out[start[0]] = start[1]
        return out

    def _allowed(self, state: torch.Tensor, scores: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The index-side work of ``mask``: ``(pairs, at_start)``, host arrays.

        ``pairs`` int64 ``[2, m]``: the allowed (row, token) pairs of every row not at the start
        (the fill token of dead rows included); ``at_start`` bool ``[n]``: rows at the prefix.
        """
        n, vocab = scores.shape
        if state.shape != (n, 1 + 2 * self.shards):
            raise ValueError(f"state has shape {tuple(state.shape)} for scores {tuple(scores.shape)}")
        ranges, live = self._to_ranges(state)
        width = ranges.counts
        at_start = live & (ranges.depth == len(self.prefix))  # advance always adds a token
        narrow = live & ~at_start & (width <= self.enumerate_width)
        wide = live & ~at_start & ~narrow
        rows, cols = [np.flatnonzero(~live)], [np.full(int((~live).sum()), self.fill_token_id)]
        if narrow.any():
            idx = np.flatnonzero(narrow)
            offsets, tokens, _ = self.index.next_tokens_csr(ranges[idx])
            rows.append(np.repeat(idx, np.diff(offsets)))
            cols.append(tokens)
        if wide.any():
            r, c = self._check_top(ranges, np.flatnonzero(wide), scores)
            rows.append(r)
            cols.append(c)
        ended = np.flatnonzero(live & ~at_start)  # an n-gram of one token or more may end here
        rows.append(ended)
        cols.append(np.full(len(ended), self.eos_token_id))
        pairs = np.stack([np.concatenate(rows), np.concatenate(cols)]).astype(np.int64)
        return pairs[:, (pairs[1] >= 0) & (pairs[1] < vocab)], at_start

    def _first_row(self, device: torch.device, dtype: torch.dtype, vocab: int) -> torch.Tensor:
        """``[vocab]``: 0 at every token that may follow the prefix (fill if none), -inf elsewhere."""
        key = (device, dtype, vocab)
        if key not in self._first_cache:
            allowed = self._first_tokens[(self._first_tokens >= 0) & (self._first_tokens < vocab)]
            if len(allowed) == 0:
                allowed = np.array([self.fill_token_id])
            row = torch.full((vocab,), -math.inf, dtype=dtype)
            row[torch.from_numpy(allowed.astype(np.int64))] = 0
            self._first_cache[key] = row.to(device)
        return self._first_cache[key]

    def _check_top(self, ranges: Ranges, rows: np.ndarray, scores: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The allowed tokens of wide rows: candidates in score order, ``keep_top`` found per row."""
        vocab = scores.shape[1]
        k = min(vocab, 2 * self.keep_top)
        found_rows, found_cols = [], []
        pending = rows
        order: np.ndarray | None = None
        while len(pending):
            if order is None or order.shape[1] < k:
                sub = scores[torch.from_numpy(pending).to(scores.device)]
                order = torch.topk(sub, k, dim=1).indices.to("cpu").numpy()
            cand = order[:, :k]
            width = cand.shape[1]
            grown = self.index.extend(ranges[np.repeat(pending, width)], cand.reshape(-1))
            ok = (grown.counts > 0).reshape(len(pending), width) & (cand != self.eos_token_id)
            hits = np.cumsum(ok, axis=1)
            enough = hits[:, -1] >= self.keep_top
            done = enough | (width >= vocab)
            # rows with enough hits keep their first keep_top (the best-scoring allowed tokens)
            keep = ok & (~enough[:, None] | (hits <= self.keep_top))
            r, c = np.nonzero(keep & done[:, None])
            found_rows.append(pending[r])
            found_cols.append(cand[r, c])
            pending = pending[~done]
            order = order[~done]
            k = min(vocab, 2 * k)
        if not found_rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(found_rows), np.concatenate(found_cols)
