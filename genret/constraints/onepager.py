"""``OnePagerConstraint``: 1-Pager's one decoding pass, a keyword path that narrows the corpus, then an answer.

A sequence is ``kw SEP kw SEP ... [ANS answer] EOS`` where each keyword is an n-gram of the index. Per row the
state holds the mode (keyword or answer), the current n-gram's :class:`~indexing.ngrams.Ranges` row and the
*candidates*: the documents that hold every finished keyword (a bitmap of :mod:`indexing.ngrams.within`; at the
start, every document). The rules, each enforced by ``mask`` and checked again by ``advance``:

- a keyword (or an answer) continues only with tokens that keep it occurring in a candidate document
  (``NgramIndex.followers_within``; while the candidates are the whole corpus, the plain n-gram rules of
  :class:`~genret.constraints.ngram.NgramConstraint`, which this constraint delegates those rows to);
- ``SEP`` closes a non-empty keyword that narrows the candidates (some candidate lacks it): they become those
  that hold it (``NgramIndex.docs_within``). So each keyword shrinks the set and a path cannot loop; a keyword
  held by every candidate must grow until it narrows;
- with ``answers``, ``ANS`` may start the answer once at most ``max_candidates`` documents are left (before a new
  keyword starts); the answer is a non-empty n-gram of a candidate, ended by ``EOS``;
- without ``answers`` (retrieval only), ``EOS`` ends the path once at most ``max_candidates`` are left;
- with ``free_answers`` (the closed-book baseline) the answer is any sequence of the corpus's tokens, not tied to
  the candidates: the same model and path, without the passage constraint on what it answers.

So every keyword and every answer a finished row holds occurs in one of its final candidates, by construction.
``evidence`` follows a decoded sequence again and returns the documents that hold its whole path and answer.

State: int64 ``[n, 2 + 2 * shards + words]``: mode (-1 dead: only ``fill_token_id`` follows), depth, ``lo`` and
``hi`` per shard, then the candidates' bitmap words (uint64 bits stored as int64). The index lives on the CPU;
each step copies the states to the host and the allowed pairs back, as NgramConstraint does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from genret.constraints.ngram import NgramConstraint
from indexing.ngrams import NgramIndex, Ranges
from indexing.ngrams.within import all_docs, doc_lists, set_sizes, words_for

DEAD, KEYWORD, ANSWER = -1, 0, 1


class OnePagerConstraint:
    """Keyword path, then answer, over ``index`` (see the module docstring)."""

    def __init__(
        self,
        index: NgramIndex,
        sep_token_id: int,
        answer_token_id: int,
        eos_token_id: int,
        fill_token_id: int,
        max_candidates: int = 1,
        answers: bool = True,
        enumerate_width: int = 1000,
        keep_top: int = 40,
        free_answers: bool = False,
    ) -> None:
        markers = {int(sep_token_id), int(answer_token_id), int(eos_token_id)}
        if len(markers) != 3 or min(markers) < 0:
            raise ValueError(f"SEP, ANS and EOS must be three different token ids >= 0; got {sorted(markers)}")
        if max_candidates < 1:
            raise ValueError(f"max_candidates must be >= 1, got {max_candidates}")
        tokens, _ = index.forward_tokens()
        clash = sorted(t for t in markers if len(tokens) and np.any(tokens == t))
        if clash:
            raise ValueError(f"token ids {clash} are markers of the path but also occur in the corpus")
        self.index = index
        self.sep_token_id, self.answer_token_id = int(sep_token_id), int(answer_token_id)
        self.eos_token_id, self.fill_token_id = int(eos_token_id), int(fill_token_id)
        self.max_candidates = int(max_candidates)
        self.answers = bool(answers)
        self.free_answers = bool(free_answers)
        self._in_corpus = np.zeros(index.token_bound(), dtype=bool)
        self._in_corpus[tokens] = True
        self.shards = index.n_shards
        self.words = words_for(index.n_docs)
        # rows whose candidates are still the whole corpus: SEP plays eos, ending an n-gram
        self.plain = NgramConstraint(
            index, sep_token_id, fill_token_id, enumerate_width=enumerate_width, keep_top=keep_top
        )

    def __repr__(self) -> str:
        return (
            f"OnePagerConstraint({self.index!r}, sep={self.sep_token_id}, ans={self.answer_token_id}, "
            f"eos={self.eos_token_id}, max_candidates={self.max_candidates}, answers={self.answers})"
        )

    # ------------------------------------------------------------ state <-> host

    def _unpack(self, state: torch.Tensor) -> tuple[np.ndarray, Ranges, np.ndarray]:
        host = state.detach().to("cpu", torch.int64).numpy()
        s = self.shards
        mode = host[:, 0].copy()
        ranges = Ranges(host[:, 2 : 2 + s].copy(), host[:, 2 + s : 2 + 2 * s].copy(), np.maximum(host[:, 1], 0))
        bits = np.ascontiguousarray(host[:, 2 + 2 * s :]).view(np.uint64)
        return mode, ranges, bits

    def _pack(self, mode: np.ndarray, ranges: Ranges, bits: np.ndarray, device: torch.device) -> torch.Tensor:
        host = np.concatenate(
            [mode[:, None], ranges.depth[:, None], ranges.lo, ranges.hi, np.ascontiguousarray(bits).view(np.int64)],
            axis=1,
        )
        return torch.from_numpy(np.ascontiguousarray(host, dtype=np.int64)).to(device)

    # ------------------------------------------------------------- Constraint

    def start(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """``n`` rows in keyword mode at the empty n-gram, every document a candidate."""
        mode = np.full(n, KEYWORD, dtype=np.int64)
        return self._pack(mode, self.index.root(n), all_docs(n, self.index.n_docs), torch.device(device))

    def advance(self, state: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Each row after its token (module docstring); a token ``mask`` would not allow gives a dead row."""
        mode, ranges, bits = self._unpack(state)
        tok = tokens.detach().to("cpu", torch.int64).numpy()
        n = len(tok)
        sizes = set_sizes(bits)
        keyword, answer = mode == KEYWORD, mode == ANSWER
        at_root = ranges.depth == 0
        few = sizes <= self.max_candidates
        new_mode = np.full(n, DEAD, dtype=np.int64)
        new_bits = bits.copy()
        root = self.index.root(n)
        lo, hi, depth = root.lo.copy(), root.hi.copy(), root.depth.copy()
        # markers
        close = keyword & ~at_root & (tok == self.sep_token_id)
        if close.any():
            rows = np.flatnonzero(close)
            held = self.index.docs_within(ranges[rows], bits[rows])
            narrowed = set_sizes(held) < sizes[rows]
            new_bits[rows[narrowed]] = held[narrowed]
            new_mode[rows[narrowed]] = KEYWORD
        begin = keyword & at_root & few & (tok == self.answer_token_id) & self.answers
        new_mode[begin] = ANSWER
        # (EOS ends a path without answers, or a non-empty answer: the row is finished, i.e. dead)
        # n-gram tokens
        markers = (tok == self.sep_token_id) | (tok == self.answer_token_id) | (tok == self.eos_token_id)
        free = answer & self.free_answers & (tok >= 0) & ~markers
        if free.any():  # closed book: any corpus token; the range is not followed
            rows = np.flatnonzero(free)
            known = tok[rows] < len(self._in_corpus)
            ok = rows[known][self._in_corpus[tok[rows][known]]]
            new_mode[ok] = ANSWER
            lo[ok], hi[ok], depth[ok] = ranges.lo[ok], ranges.hi[ok], ranges.depth[ok] + 1
        grow = (keyword | (answer & ~self.free_answers)) & (tok >= 0) & ~markers
        if grow.any():
            rows = np.flatnonzero(grow)
            grown = self.index.extend(ranges[rows], tok[rows])
            whole = sizes[rows] == self.index.n_docs
            ok = grown.counts > 0
            narrowed = rows[~whole & ok]
            if len(narrowed):
                held = self.index.docs_within(grown[np.flatnonzero(~whole & ok)], bits[narrowed])
                ok[np.flatnonzero(~whole & ok)] = set_sizes(held) > 0
            keep = rows[ok]
            new_mode[keep] = mode[keep]
            lo[keep], hi[keep], depth[keep] = grown.lo[ok], grown.hi[ok], grown.depth[ok]
        return self._pack(new_mode, Ranges(lo, hi, depth), new_bits, state.device)

    def mask(self, state: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """``scores`` with every token the path does not allow set to -inf (module docstring)."""
        pairs, at_start = self.allowed_pairs(state, scores)
        return self.plain.write_pairs(scores, pairs, at_start, inplace=False)

    def mask_(self, state: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """``mask`` written into ``scores`` (which it returns)."""
        pairs, at_start = self.allowed_pairs(state, scores)
        return self.plain.write_pairs(scores, pairs, at_start, inplace=True)

    def allowed_pairs(self, state: torch.Tensor, scores: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """``(pairs [2, m], at_start [n])`` as :meth:`NgramConstraint.allowed_pairs` gives them: the allowed
        (row, token) pairs, and the rows that may take any first token of the corpus."""
        n, vocab = scores.shape
        if state.shape != (n, 2 + 2 * self.shards + self.words):
            raise ValueError(f"state has shape {tuple(state.shape)} for scores {tuple(scores.shape)}")
        mode, ranges, bits = self._unpack(state)
        sizes = set_sizes(bits)
        keyword, answer = mode == KEYWORD, mode == ANSWER
        at_root = ranges.depth == 0
        whole = keyword & (sizes == self.index.n_docs)
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []

        def add(where: np.ndarray, token: int) -> None:
            if 0 <= token < vocab and len(where):
                rows.append(where)
                cols.append(np.full(len(where), token, dtype=np.int64))

        closes = self._narrows(keyword & ~at_root, ranges, bits, sizes)
        # keywords over the whole corpus: the plain n-gram rules (its eos is SEP), other rows dead to it
        at_start = np.zeros(n, dtype=bool)
        if whole.any():
            plain = np.concatenate([np.where(whole, ranges.depth, DEAD)[:, None], ranges.lo, ranges.hi], axis=1)
            pairs, at_start = self.plain.allowed_pairs(torch.from_numpy(np.ascontiguousarray(plain)), scores)
            mine = whole[pairs[0]] & (pairs[1] != self.sep_token_id)
            rows.append(pairs[0][mine])
            cols.append(pairs[1][mine])
        if self.free_answers:  # closed book: any corpus token (the first-token row of the whole corpus)
            at_start = at_start | answer
        # keywords and answers inside fewer documents: every follower there
        narrow = np.flatnonzero((keyword & ~whole) | (answer & ~self.free_answers))
        if len(narrow):
            offsets, tokens, _ = self.index.followers_within(ranges[narrow], bits[narrow])
            owner = np.repeat(narrow, np.diff(offsets))
            keep = tokens < vocab
            rows.append(owner[keep])
            cols.append(tokens[keep])
        add(np.flatnonzero(closes), self.sep_token_id)
        few = sizes <= self.max_candidates
        if self.answers:
            add(np.flatnonzero(keyword & at_root & few), self.answer_token_id)
            add(np.flatnonzero(answer & ~at_root), self.eos_token_id)
        else:
            add(np.flatnonzero(keyword & at_root & few), self.eos_token_id)
        # dead rows, and stuck ones (a keyword every candidate holds, at their ends): only the fill token
        has = np.zeros(n, dtype=bool)
        for r in rows:
            has[r] = True
        add(np.flatnonzero(~has & ~at_start), self.fill_token_id)
        pairs = np.empty((2, sum(len(r) for r in rows)), dtype=np.int64)
        if rows:
            np.concatenate(rows, out=pairs[0])
            np.concatenate(cols, out=pairs[1])
        return pairs, at_start

    def _narrows(self, rows: np.ndarray, ranges: Ranges, bits: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """Bool per row (of those flagged in ``rows``): some candidate lacks the row's n-gram, so SEP may close it.
        Fewer occurrences than candidates settles it without locating anything."""
        out = rows & (ranges.counts < sizes)
        check = np.flatnonzero(rows & ~out)
        if len(check):
            out[check] = set_sizes(self.index.docs_within(ranges[check], bits[check])) < sizes[check]
        return out

    # ------------------------------------------------------------- reading a path

    def evidence(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """The documents (ascending) that hold every keyword and the answer of each decoded sequence (tokens
        after the decoder prompt; ``EOS`` and what follows are ignored), all sequences followed together. A
        sequence the constraint would not allow gives no document; a closed-book answer is not matched."""
        cut = [[int(t) for t in seq] for seq in sequences]
        cut = [seq[: seq.index(self.eos_token_id)] if self.eos_token_id in seq else seq for seq in cut]
        n = len(cut)
        if not n:
            return []
        state = self.start(n)
        for step in range(max(len(seq) for seq in cut)):
            going = torch.tensor([step < len(seq) for seq in cut])
            tokens = torch.tensor([seq[step] if step < len(seq) else 0 for seq in cut])
            state = torch.where(going[:, None], self.advance(state, tokens), state)
        mode, ranges, bits = self._unpack(state)
        if self.free_answers:  # the answer is not an n-gram of the index: the candidates alone
            ranges = Ranges(ranges.lo, ranges.hi, np.where(mode == ANSWER, 0, ranges.depth))
        held = doc_lists(self.index.docs_within(ranges, bits))
        return [held[i] if mode[i] != DEAD else np.zeros(0, dtype=np.int64) for i in range(n)]
