"""``NgramConstraint``: decode only n-grams that occur in an :class:`indexing.ngrams.NgramIndex` (SEAL).

A row's state is its n-gram's :class:`~indexing.ngrams.Ranges` row: depth, then ``lo`` and ``hi`` per
shard, as one int64 tensor ``[n, 1 + 2 * shards]`` on the model's device (depth -1 = dead: only
``fill_token_id`` follows). ``advance`` extends each row's range by the token it emitted (one
batched ``extend``, never recomputed from the start of the n-gram); eos ends an n-gram.

Which tokens may follow (``mask``), per row:

- the empty n-gram (depth 0): every token of the corpus (computed once, kept as a device row);
- a range of at most ``enumerate_width`` occurrences: its next tokens, enumerated by the index,
  plus eos;
- a wider range (a frequent n-gram with thousands of followers): the row's ``keep_top`` best-scoring
  followers, plus eos. The model's best-scoring tokens are checked (does the n-gram continue with
  it?), in score order, in rounds over all such rows at once, until ``keep_top`` are found (or every
  token was checked). On one ``sa`` shard the checks of frequent n-grams (1-2 tokens) read the
  bitmaps of the shard's ``FollowerTable`` instead of searching. A row that falls short in the first round takes,
  when its followers are such a bitmap, its ``keep_top`` best followers from one pass over its
  scores; else, when it is not too wide (``NgramIndex.select_width``), it has few followers: those are
  enumerated and the ``keep_top`` best kept (the same tokens, found faster). Beam search never
  picks more than ``2 * num_beams`` tokens of one row, so with ``keep_top >= 2 * num_beams`` the
  beams equal those of the full mask (tested), at a fraction of the cost of enumerating every wide
  row's followers.

The index lives on the CPU: each step copies the states to the host (for scores on a device, also
the wide rows' top candidates and the scores of enumerated followers; scores on the CPU are read
in place), and the allowed (row, token) pairs back to the device in one copy. ``mask`` returns a
new tensor; ``mask_`` writes into the scores (what ``ConstrainedLogitsProcessor(inplace=True)``
calls): on the CPU a fresh ``[n, vocab]`` tensor costs more than everything else, its pages being
touched for the first time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from genret.constraints.topk import (
    MIN_ROWS_PER_THREAD,
    best_followers,
    first_hits,
    host_view,
    select_best,
    thread_pool,
    top_tokens,
    write_mask,
)
from indexing.ngrams import NgramIndex, Ranges

DEAD = -1


class NgramConstraint:
    """N-grams of ``index`` (each ended by ``eos_token_id``), optionally after a fixed ``prefix``.

    ``prefix``: tokens every n-gram starts with, already in the decoder prompt (e.g. the title
    marker of the index's title view); decoding continues from their range.
    """

    def __init__(
        self,
        index: NgramIndex,
        eos_token_id: int,
        fill_token_id: int,
        enumerate_width: int = 1000,
        keep_top: int = 40,
        prefix: Sequence[int] = (),
        threads: int = 1,
    ) -> None:
        if keep_top < 1 or enumerate_width < 0 or threads < 1:
            raise ValueError(
                f"keep_top and threads must be >= 1 and enumerate_width >= 0, got {keep_top}, "
                f"{threads}, {enumerate_width}"
            )
        self.threads = int(threads)
        """Threads for the top-k over wide rows' scores (the step's largest cost, a pass over memory): a
        second thread helps when a core is idle and costs time when it is busy, so 1 unless the machine
        has cores to spare while the model waits."""
        self.index = index
        self.eos_token_id = int(eos_token_id)
        self.fill_token_id = int(fill_token_id)
        self.enumerate_width = int(enumerate_width)
        self.keep_top = int(keep_top)
        self.prefix = [int(t) for t in prefix]
        self.shards = index.n_shards
        self._start = index.find([self.prefix])
        self._first_tokens = index.next_tokens_csr(self._start)[1]  # what may follow the prefix
        self._first_cache: dict[tuple[torch.device, torch.dtype, int], torch.Tensor] = {}
        index.follower_table()  # sa's follower bitmaps: built now, not in the first decoding step

    def __repr__(self) -> str:
        return (
            f"NgramConstraint({self.index!r}, eos={self.eos_token_id}, enumerate_width={self.enumerate_width}, "
            f"keep_top={self.keep_top})"
        )

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
        return self._to_state(
            Ranges(start.lo, start.hi, np.full(n, len(self.prefix), dtype=np.int64)), live, torch.device(device)
        )

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
        pairs, at_start = self.allowed_pairs(state, scores)
        return self.write_pairs(scores, pairs, at_start, inplace=False)

    def mask_(self, state: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """``mask`` written into ``scores`` (which it returns): no new ``[n, vocab]`` tensor."""
        pairs, at_start = self.allowed_pairs(state, scores)
        return self.write_pairs(scores, pairs, at_start, inplace=True)

    def write_pairs(self, scores: torch.Tensor, pairs: np.ndarray, at_start: np.ndarray, inplace: bool) -> torch.Tensor:
        """-inf everywhere but at ``pairs`` (row, token) and, in rows ``at_start``, the prefix's followers."""
        vocab = scores.shape[1]
        first = self._first_row(scores.device, scores.dtype, vocab)
        out = scores if inplace else torch.empty_like(scores)
        host, host_out = host_view(scores), host_view(out)
        if host is not None and host_out is not None:  # one pass over the rows, no [n, vocab] temporaries
            write_mask(host_out, host, at_start, first.numpy(), pairs[0], pairs[1])
            return out
        pairs_dev = torch.from_numpy(pairs).to(scores.device)  # the one copy to the device
        kept = scores[pairs_dev[0], pairs_dev[1]]
        start = None
        if at_start.any():
            start_rows = torch.from_numpy(np.flatnonzero(at_start)).to(scores.device)
            start = (start_rows, scores[start_rows] + first)
        out.fill_(-math.inf)
        out[pairs_dev[0], pairs_dev[1]] = kept
        if start is not None:
            out[start[0]] = start[1]
        return out

    def allowed_pairs(self, state: torch.Tensor, scores: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The index-side work of ``mask``: ``(pairs, at_start)``, host arrays.

        ``pairs`` int64 ``[2, m]``: the allowed (row, token) pairs of every row not at the start
        (the fill token of dead rows included); ``at_start`` bool ``[n]``: rows at the prefix.
        """
        n, vocab = scores.shape
        if state.shape != (n, 1 + 2 * self.shards):
            raise ValueError(f"state has shape {tuple(state.shape)} for scores {tuple(scores.shape)}")
        ranges, live = self._to_ranges(state)
        width = _counts(ranges)
        at_start = live & (ranges.depth == len(self.prefix))  # advance always adds a token
        inner = live & ~at_start
        narrow = inner & (width <= self.enumerate_width)
        host = host_view(scores)
        dead = np.flatnonzero(~live)
        rows, cols = [], []
        if 0 <= self.fill_token_id < vocab:
            rows.append(dead)
            cols.append(np.full(len(dead), self.fill_token_id, dtype=np.int64))
        wide = np.flatnonzero(inner & ~narrow)
        if len(wide):
            r, c, select = self._check_top(ranges, wide, scores, host)
            rows.append(r)
            cols.append(c)
            if len(select):  # wide rows with few followers: enumerated, cut to their keep_top best
                offsets, tokens, _ = self.index.next_tokens_csr(ranges[select])
                owner = np.repeat(select, np.diff(offsets))
                take = (tokens < vocab) & (tokens != self.eos_token_id)
                values = np.full(len(tokens), -np.inf, dtype=np.float64)
                if host is not None:
                    values[take] = host[owner[take], tokens[take]]
                else:
                    at = torch.from_numpy(np.stack([owner[take], tokens[take]])).to(scores.device)
                    values[take] = scores[at[0], at[1]].to("cpu", torch.float64).numpy()
                chosen = select_best(offsets, tokens, values, np.zeros(len(select), dtype=bool), take, self.keep_top)
                rows.append(owner[chosen])
                cols.append(tokens[chosen])
        narrow_rows = np.flatnonzero(narrow)
        if len(narrow_rows):  # every follower
            offsets, tokens, _ = self.index.next_tokens_csr(ranges[narrow_rows])
            owner = np.repeat(narrow_rows, np.diff(offsets))
            if len(tokens) and tokens.max() >= vocab:  # the index knows tokens the model has no score for
                owner, tokens = owner[tokens < vocab], tokens[tokens < vocab]
            rows.append(owner)
            cols.append(tokens)
        if 0 <= self.eos_token_id < vocab:  # an n-gram of one token or more may end here
            ended = np.flatnonzero(inner)
            rows.append(ended)
            cols.append(np.full(len(ended), self.eos_token_id, dtype=np.int64))
        size = sum(len(r) for r in rows)
        pairs = np.empty((2, size), dtype=np.int64)
        if rows:
            np.concatenate(rows, out=pairs[0])
            np.concatenate(cols, out=pairs[1])
        return pairs, at_start

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

    def _follower_rows(self, ranges: Ranges, rows: np.ndarray) -> np.ndarray:
        """Per row, its row of the index's follower bitmaps (-1: none)."""
        table = self.index.follower_table()
        if table is None:
            return np.full(len(rows), -1, dtype=np.int64)
        return table.rows(ranges.lo[rows, 0], ranges.hi[rows, 0], ranges.depth[rows])

    def _best_known(
        self, ranges: Ranges, rows: np.ndarray, among: np.ndarray, host: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, tokens, known)``: for the rows ``among`` whose followers the index keeps as a
        bitmap (``sa``), their ``keep_top`` best followers from one pass over their scores, and
        which rows those were."""
        at = np.full(len(rows), -1, dtype=np.int64)
        at[among] = self._follower_rows(ranges, rows[among])
        known = at >= 0
        if not known.any():
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), known
        bits = self.index.follower_table().bits
        best = best_followers(host, rows[known], bits, at[known], self.keep_top, self.eos_token_id)
        r, c = np.nonzero(best >= 0)
        return rows[known][r], best[r, c], known

    def _top_tokens(self, host: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
        """``topk.top_tokens`` of ``rows``, split among ``threads`` (the kernel releases the GIL)."""
        parts = min(self.threads, len(rows) // MIN_ROWS_PER_THREAD)
        if parts <= 1:
            return top_tokens(host, rows, k)
        chunks = np.array_split(rows, parts)
        futures = [thread_pool(self.threads - 1).submit(top_tokens, host, chunk, k) for chunk in chunks[1:]]
        first = top_tokens(host, chunks[0], k)
        return np.concatenate([first] + [f.result() for f in futures])

    def _check_top(
        self, ranges: Ranges, rows: np.ndarray, scores: torch.Tensor, host: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The allowed tokens of wide rows: candidates in score order, ``keep_top`` found per row.

        Returns ``(rows, tokens, select)``: the pairs found, and the rows left to ``allowed_pairs`` to
        enumerate and cut to their ``keep_top`` best followers (the same tokens, found another way).
        Candidates are checked in rounds, all rows' in one ``_occurs``: the best ``keep_top +
        keep_top // 4`` (at least 8 more) first; a row that falls short and has at most
        ``index.select_width`` occurrences is handed to enumeration (few followers: checking would take
        many rounds), a wider one checks on, twice as many candidates each round. Order: score
        descending, then token ascending (on the host; on a device, torch.topk's order).
        """
        vocab = scores.shape[1]
        occurrences = _counts(ranges)
        select_width = self.index.select_width
        found_rows, found_cols, select = [], [], []
        pending = rows
        hits = np.zeros(len(rows), dtype=np.int64)
        checked = 0  # candidates of every pending row checked so far
        upto = min(vocab, self.keep_top + max(8, self.keep_top // 4))
        cand = np.zeros((len(rows), 0), dtype=np.int64)
        while len(pending):
            if cand.shape[1] < upto:
                k = min(vocab, max(upto, 2 * cand.shape[1]))
                if host is not None:
                    cand = self._top_tokens(host, pending, k)
                else:
                    sub = scores[torch.from_numpy(pending).to(scores.device)]
                    cand = torch.topk(sub, k, dim=1).indices.to("cpu").numpy()
            new = cand[:, checked:upto]
            ok = self.index.first_occurring(
                ranges, pending, np.where(new == self.eos_token_id, -1, new), self.keep_top - hits
            )
            kept, total = first_hits(ok, hits, self.keep_top)  # each row's hits, up to keep_top in all
            done = (total >= self.keep_top) | (upto >= vocab)
            known = np.zeros(len(pending), dtype=bool)
            if host is not None and not done.all():  # rows whose followers are known: done in one pass
                r, c, known = self._best_known(ranges, pending, ~done, host)
                found_rows.append(r)
                found_cols.append(c)
            handed = ~done & ~known & (occurrences[pending] <= select_width)
            select.append(pending[handed])
            going = ~done & ~known & ~handed
            # the best-scoring allowed tokens of rows that are done, and the hits so far of rows that go on
            r, c = np.nonzero(kept & (done | going)[:, None])
            found_rows.append(pending[r])
            found_cols.append(new[r, c])
            hits, pending, cand = total[going], pending[going], cand[going]
            checked, upto = upto, min(vocab, 2 * upto)
        return (
            np.concatenate(found_rows or [np.zeros(0)]).astype(np.int64),
            np.concatenate(found_cols or [np.zeros(0)]).astype(np.int64),
            np.concatenate(select or [np.zeros(0)]).astype(np.int64),
        )


def _counts(ranges: Ranges) -> np.ndarray:
    """``ranges.counts`` (occurrences per row), without the reduction for one shard."""
    return ranges.hi[:, 0] - ranges.lo[:, 0] if ranges.lo.shape[1] == 1 else ranges.counts
