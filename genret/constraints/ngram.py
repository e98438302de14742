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
  scores; else, when it is not too wide (``SELECT_WIDTH``), it has few followers: those are
  enumerated and the ``keep_top`` best kept (the same tokens, found faster). Beam search never
  picks more than ``2 * num_beams`` tokens of one row, so with ``keep_top >= 2 * num_beams`` the
  beams equal those of the full mask (tested), at a fraction of the cost: full enumeration of 640
  beams at 50M tokens takes 438 ms a step (dependencies.md, section 4.6); the hybrid's numbers are
  in benchmarks/ngram_index.py's results.

The index lives on the CPU: each step copies the states to the host (for scores on a device, also
the wide rows' top candidates and the scores of enumerated followers; scores on the CPU are read
in place), and the allowed (row, token) pairs back to the device in one copy. ``mask`` returns a
new tensor; ``mask_`` writes into the scores (what ``ConstrainedLogitsProcessor(inplace=True)``
calls): on the CPU a fresh ``[n, vocab]`` tensor costs more than everything else, its pages being
touched for the first time.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import torch

from indexing.ngrams import NgramIndex, Ranges
from indexing.ngrams.followers import FollowerTable

DEAD = -1


class NgramConstraint:
    """N-grams of ``index`` (each ended by ``eos_token_id``), optionally after a fixed ``prefix``.

    ``prefix``: tokens every n-gram starts with, already in the decoder prompt (e.g. the title
    marker of the index's title view); decoding continues from their range.
    """

    def __init__(self, index: NgramIndex, eos_token_id: int, fill_token_id: int, enumerate_width: int = 1000,
                 keep_top: int = 40, prefix: Sequence[int] = (), threads: int = 1) -> None:
        if keep_top < 1 or enumerate_width < 0 or threads < 1:
            raise ValueError(f"keep_top and threads must be >= 1 and enumerate_width >= 0, got {keep_top}, "
                             f"{threads}, {enumerate_width}")
        self.threads = int(threads)
        """Threads for the top-k over wide rows' scores (the step's largest cost, a pass over memory): at
        50M tokens 2 threads take it from 3.3 to 2.1 ms when a core is idle, and 20% longer when the
        other core is busy, so 1 unless the machine has cores to spare while the model waits."""
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
        self._table()  # sa's follower table: built now, not in the first decoding step

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
        first = self._first_row(scores.device, scores.dtype, vocab)
        out = scores if inplace else torch.empty_like(scores)
        host, host_out = _host_view(scores), _host_view(out)
        if host is not None and host_out is not None:  # one pass over the rows, no [n, vocab] temporaries
            _write_kernel(host_out, host, at_start, first.numpy(), pairs[0], pairs[1])
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

    def _allowed(self, state: torch.Tensor, scores: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
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
        host = _host_view(scores)
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
                chosen = _select_best(offsets, tokens, values, np.zeros(len(select), dtype=bool), take,
                                      self.keep_top)
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

    def _occurs(self, ranges: Ranges, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Whether the n-gram of ``ranges`` row ``rows[i]`` followed by ``tokens[i]`` occurs: the shard's
        ``occurs`` where it has one (``sa``: one binary search instead of extend's two), else a
        non-empty ``extend``."""
        found = np.zeros(len(tokens), dtype=bool)
        depth = ranges.depth[rows]
        for s, shard in enumerate(self.index.shards):
            lo, hi = ranges.lo[rows, s], ranges.hi[rows, s]
            occurs = getattr(shard, "occurs", None)
            if occurs is not None:
                found |= occurs(lo, hi, depth, tokens)
            else:
                new_lo, new_hi = shard.extend(lo, hi, depth, tokens)
                found |= new_hi > new_lo
        return found

    def _hits(self, ranges: Ranges, rows: np.ndarray, candidates: np.ndarray, need: np.ndarray) -> np.ndarray:
        """Bool ``[len(rows), k]``: which ``candidates`` continue the n-gram of their row, at least up
        to the ``need``-th that does (later ones may be left unchecked, False). One shard with
        ``first_occurring`` (``sa``) stops each row early; otherwise every candidate is checked."""
        shard = self.index.shards[0]
        if self.shards == 1 and hasattr(shard, "first_occurring"):
            return shard.first_occurring(ranges.lo[rows, 0], ranges.hi[rows, 0], ranges.depth[rows], candidates, need)
        width = candidates.shape[1]
        return self._occurs(ranges, np.repeat(rows, width), candidates.reshape(-1)).reshape(len(rows), width)

    def _table(self) -> FollowerTable | None:
        """The follower table of the index's one ``sa`` shard (None for other indexes)."""
        shard = self.index.shards[0]
        return shard.followers() if self.shards == 1 and hasattr(shard, "followers") else None

    def _follower_rows(self, ranges: Ranges, rows: np.ndarray) -> np.ndarray:
        """Per row, its row of the follower table's bitmaps (-1: none)."""
        table = self._table()
        if table is None:
            return np.full(len(rows), -1, dtype=np.int64)
        return table.rows(ranges.lo[rows, 0], ranges.hi[rows, 0], ranges.depth[rows])

    def _best_known(self, ranges: Ranges, rows: np.ndarray, among: np.ndarray,
                    host: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, tokens, known)``: for the rows ``among`` whose followers the index keeps as a
        bitmap (``sa``), their ``keep_top`` best followers from one pass over their scores, and
        which rows those were."""
        at = np.full(len(rows), -1, dtype=np.int64)
        at[among] = self._follower_rows(ranges, rows[among])
        known = at >= 0
        if not known.any():
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), known
        best = _best_followers(host, rows[known], self._table().bits, at[known], self.keep_top, self.eos_token_id)
        r, c = np.nonzero(best >= 0)
        return rows[known][r], best[r, c], known

    def _top_tokens(self, host: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
        """``_top_tokens`` of ``rows``, split among ``threads`` (the kernel releases the GIL)."""
        parts = min(self.threads, len(rows) // MIN_ROWS_PER_THREAD)
        if parts <= 1:
            return _top_tokens(host, rows, k)
        chunks = np.array_split(rows, parts)
        futures = [_pool(self.threads - 1).submit(_top_tokens, host, chunk, k) for chunk in chunks[1:]]
        first = _top_tokens(host, chunks[0], k)
        return np.concatenate([first] + [f.result() for f in futures])

    def _check_top(self, ranges: Ranges, rows: np.ndarray, scores: torch.Tensor,
                   host: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The allowed tokens of wide rows: candidates in score order, ``keep_top`` found per row.

        Returns ``(rows, tokens, select)``: the pairs found, and the rows left to ``_allowed`` to
        enumerate and cut to their ``keep_top`` best followers (the same tokens, found another way).
        Candidates are checked in rounds, all rows' in one ``_occurs``: the best ``keep_top +
        keep_top // 4`` (at least 8 more) first; a row that falls short and has at most
        ``SELECT_WIDTH[backend]`` occurrences is handed to enumeration (few followers: checking would take
        many rounds), a wider one checks on, twice as many candidates each round. Order: score
        descending, then token ascending (on the host; on a device, torch.topk's order).
        """
        vocab = scores.shape[1]
        occurrences = _counts(ranges)
        select_width = SELECT_WIDTH.get(self.index.backend, 0)
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
            ok = self._hits(ranges, pending, np.where(new == self.eos_token_id, -1, new), self.keep_top - hits)
            kept, total = _first_hits(ok, hits, self.keep_top)  # each row's hits, up to keep_top in all
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
        return (np.concatenate(found_rows or [np.zeros(0)]).astype(np.int64),
                np.concatenate(found_cols or [np.zeros(0)]).astype(np.int64),
                np.concatenate(select or [np.zeros(0)]).astype(np.int64))


# ------------------------------------------------------------------ host kernels (numba)

SELECT_WIDTH = {"sa": 1 << 15, "fm": 1 << 12}
"""Per backend: a wide row of at most this many occurrences whose best candidates were mostly not
followers is enumerated and cut to its ``keep_top`` best followers instead of checked on (the same
tokens). Enumeration costs about one random read per occurrence on ``sa`` and one wavelet descent
per distinct follower on ``fm``; checking on, many rounds of extensions when followers are few.
Measured at 50M tokens (benchmarks/ngram_index.py): enumeration wins below about 32k occurrences
on ``sa``, 4k on ``fm``."""


def _counts(ranges: Ranges) -> np.ndarray:
    """``ranges.counts`` (occurrences per row), without the reduction for one shard."""
    return ranges.hi[:, 0] - ranges.lo[:, 0] if ranges.lo.shape[1] == 1 else ranges.counts


BLOCK = 32  # tokens per block in _top_tokens
MIN_ROWS_PER_THREAD = 16  # fewer wide rows than this per thread: not worth a hand-off


def _pool(workers: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``workers`` threads, shared by every constraint that asks for that many
    (per process id: a forked child gets its own, the parent's threads do not exist there)."""
    return _pool_of(workers, os.getpid())


@functools.cache
def _pool_of(workers: int, pid: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix=f"genret-ngram-{pid}")
SMALL_SORT = 256  # _keep_best sorts up to this many entries by insertion


def _host_view(scores: torch.Tensor) -> np.ndarray | None:
    """``scores`` as a numpy array without a copy (CPU float32 / float64), else None."""
    if scores.device.type != "cpu" or scores.dtype not in (torch.float32, torch.float64):
        return None
    return scores.detach().numpy()


@numba.njit(cache=True, nogil=True)
def _keep_best(values, ids, n, k):  # pragma: no cover - compiled
    """Order the first ``n`` entries by value descending (stable: equal values keep their order); min(n, k)."""
    if n <= SMALL_SORT:  # insertion sort
        for i in range(1, n):
            v, t, p = values[i], ids[i], i
            while p > 0 and values[p - 1] < v:
                values[p] = values[p - 1]
                ids[p] = ids[p - 1]
                p -= 1
            values[p] = v
            ids[p] = t
    else:
        order = np.argsort(-values[:n], kind="mergesort")
        v = values[order].copy()
        t = ids[order].copy()
        values[:n] = v
        ids[:n] = t
    return min(n, k)


@numba.njit(cache=True, nogil=True)
def _kth_largest(buf, n, k):  # pragma: no cover - compiled
    """The ``k``-th largest of ``buf[:n]`` (1 <= k <= n); reorders ``buf`` (quickselect, median of three)."""
    lo, hi, target = 0, n - 1, k - 1
    while hi > lo:
        a, b, c = buf[lo], buf[(lo + hi) >> 1], buf[hi]
        pivot = max(min(a, b), min(max(a, b), c))
        i, j = lo, hi
        while i <= j:
            while buf[i] > pivot:
                i += 1
            while buf[j] < pivot:
                j -= 1
            if i <= j:
                buf[i], buf[j] = buf[j], buf[i]
                i += 1
                j -= 1
        if target <= j:
            hi = j
        elif target >= i:
            lo = i
        else:
            break
    return buf[target]


@numba.njit(cache=True, nogil=True, fastmath={"nnan", "nsz"})
def _block_maxima(row, out):  # pragma: no cover - compiled
    """``out[b]``: the largest score of block ``b`` of ``row`` (``BLOCK`` tokens; the last may be
    shorter). The one full pass over a row: compiled without NaN semantics, so the reductions
    vectorize (about 2x faster, at memory speed); NaN scores make the maxima meaningless, which
    ``_top_tokens`` detects."""
    vocab = len(row)
    full = vocab // BLOCK
    for b in range(full):
        m = row[b * BLOCK]
        for t in range(b * BLOCK + 1, (b + 1) * BLOCK):
            m = max(m, row[t])
        out[b] = m
    if full * BLOCK < vocab:
        m = row[full * BLOCK]
        for t in range(full * BLOCK + 1, vocab):
            m = max(m, row[t])
        out[full] = m


@numba.njit(cache=True, nogil=True, fastmath={"nnan", "nsz"})
def _group_floor(maxima, k):  # pragma: no cover - compiled
    """The smallest of the maxima of ``k`` groups of consecutive blocks: at most the ``k``-th largest
    block maximum (each group holds a block that high), so a cheap first cut for the quickselect."""
    n = len(maxima)
    size = n // k
    floor = maxima[0]
    for g in range(k):
        a = g * size
        b = n if g == k - 1 else a + size
        m = maxima[a]
        for i in range(a + 1, b):
            m = max(m, maxima[i])
        floor = m if g == 0 else min(floor, m)
    return floor


@numba.njit(cache=True, nogil=True)
def _top_tokens(scores, rows, k):  # pragma: no cover - compiled
    """``[len(rows), k]`` token ids: each row's ``k`` best scores, by score descending, then id ascending.

    One pass over each row takes the maxima of blocks of ``BLOCK`` tokens (``_block_maxima``); the
    ``k``-th largest block maximum bounds the ``k``-th best score from below (the ``k`` best blocks
    hold ``k`` tokens at least that high), so only the tokens at or above it, in the few blocks that
    reach it, are collected (branch-free) and sorted (stable, so equal scores keep id order). A row
    where fewer than ``k`` tokens reach the bound (NaN scores) is ordered whole.
    """
    out = np.empty((len(rows), k), dtype=np.int64)
    vocab = scores.shape[1]
    n_blocks = (vocab + BLOCK - 1) // BLOCK
    maxima = np.empty(n_blocks, dtype=scores.dtype)
    buf = np.empty(n_blocks, dtype=scores.dtype)
    values = np.empty(vocab, dtype=np.float64)
    ids = np.empty(vocab, dtype=np.int64)
    for j in range(len(rows)):
        row = scores[rows[j]]
        floor = -np.inf
        if k < n_blocks:
            _block_maxima(row, maxima)
            coarse = _group_floor(maxima, k)
            m = 0
            for b in range(n_blocks):  # the block maxima that may be among the k largest
                buf[m] = maxima[b]
                m += maxima[b] >= coarse
            floor = _kth_largest(buf, m, k) if m >= k else np.nan
        n = 0
        for b in range(n_blocks):
            if k >= n_blocks or maxima[b] >= floor:
                for t in range(b * BLOCK, min((b + 1) * BLOCK, vocab)):
                    values[n] = row[t]
                    ids[n] = t
                    n += row[t] >= floor
        if n < k:  # NaN scores: order the whole row instead
            n = 0
            for t in range(vocab):
                values[n] = row[t]
                ids[n] = t
                n += 1
        _keep_best(values, ids, n, k)
        out[j] = ids[:k]
    return out


_LOW_BIT = np.zeros(256, dtype=np.int64)  # _LOW_BIT[1 << i] = i
for _i in range(8):
    _LOW_BIT[1 << _i] = _i


@numba.njit(cache=True, nogil=True)
def _best_followers(scores, rows, bits, bit_rows, k, eos):  # pragma: no cover - compiled
    """``[len(rows), k]``: the ``k`` best-scoring tokens set in bitmap ``bits[bit_rows[j]]`` (eos
    excluded), by score descending then id ascending; -1 pads a row with fewer. Only the set bits'
    scores are read, in id order, into a buffer cut back to the ``k`` best whenever it fills."""
    vocab = scores.shape[1]
    out = np.full((len(rows), k), -1, dtype=np.int64)
    values = np.empty(2 * k, dtype=np.float64)
    ids = np.empty(2 * k, dtype=np.int64)
    for j in range(len(rows)):
        row = scores[rows[j]]
        bitmap = bits[bit_rows[j]]
        n = 0
        full = False
        threshold = -np.inf
        for at in range(min(len(bitmap), (vocab + 7) // 8)):
            byte = np.int64(bitmap[at])
            while byte:
                low = byte & -byte
                byte ^= low
                t = at * 8 + _LOW_BIT[low]
                if t >= vocab or t == eos:
                    continue
                v = row[t]
                if not full or v > threshold:
                    values[n] = v
                    ids[n] = t
                    n += 1
                    if n == 2 * k:
                        n = _keep_best(values, ids, n, k)
                        threshold = values[k - 1]
                        full = True
        n = _keep_best(values, ids, n, k)
        out[j, :n] = ids[:n]
    return out


@numba.njit(cache=True, nogil=True)
def _first_hits(ok, hits, k):  # pragma: no cover - compiled
    """``(kept, total)``: ``ok``'s marks, per row in order, while the row's ``hits[i]`` plus those kept
    stay within ``k``; and each row's hits after them."""
    kept = np.zeros(ok.shape, dtype=np.bool_)
    total = np.empty(len(hits), dtype=np.int64)
    for i in range(ok.shape[0]):
        t = hits[i]
        for j in range(ok.shape[1]):
            if ok[i, j] and t < k:
                kept[i, j] = True
                t += 1
        total[i] = t
    return kept, total


@numba.njit(cache=True, nogil=True)
def _write_kernel(out, scores, at_start, first, rows, cols):  # pragma: no cover - compiled
    """``out`` = ``scores + first`` in rows ``at_start``, -inf elsewhere but at (``rows``, ``cols``),
    which keep their scores; ``out`` may be ``scores`` itself."""
    kept = np.empty(len(rows), dtype=np.float64)
    for i in range(len(rows)):
        kept[i] = scores[rows[i], cols[i]]
    for r in range(out.shape[0]):
        if at_start[r]:
            for t in range(out.shape[1]):
                out[r, t] = scores[r, t] + first[t]
        else:
            out[r, :] = -np.inf
    for i in range(len(rows)):
        out[rows[i], cols[i]] = kept[i]


@numba.njit(cache=True, nogil=True)
def _select_best(offsets, tokens, values, keep_all, eligible, k):  # pragma: no cover - compiled
    """Which CSR entries stay: every entry of rows with ``keep_all``; elsewhere the ``k`` best eligible
    entries by value (descending, then token ascending: tokens ascend within a row)."""
    chosen = np.zeros(len(tokens), dtype=np.bool_)
    buffer_values = np.empty(2 * k, dtype=np.float64)
    buffer_ids = np.empty(2 * k, dtype=np.int64)
    for r in range(len(offsets) - 1):
        a, b = offsets[r], offsets[r + 1]
        if keep_all[r]:
            chosen[a:b] = True
            continue
        n = 0
        full = False
        threshold = -np.inf
        for e in range(a, b):
            if not eligible[e]:
                continue
            v = values[e]
            if not full or v > threshold:
                buffer_values[n] = v
                buffer_ids[n] = e
                n += 1
                if n == 2 * k:
                    n = _keep_best(buffer_values, buffer_ids, n, k)
                    threshold = buffer_values[k - 1]
                    full = True
        n = _keep_best(buffer_values, buffer_ids, n, k)
        for j in range(n):
            chosen[buffer_ids[j]] = True
    return chosen
