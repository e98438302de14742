"""NgramConstraint against brute force (tests/indexing/ngram_reference.py) and the hybrid policy against
the full mask: same beams and scores from ``generate``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LogitsProcessorList

from genret.constraints import ConstrainedLogitsProcessor, Constraint
from genret.constraints.ngram import NgramConstraint
from indexing.ngrams import NgramIndex, backend_class
from tests.genret.constraints.test_constraints import EOS, MODEL_VOCAB, PAD, encoder_inputs, t5
from tests.indexing.ngrams.ngram_reference import next_counts, occurrences

FULL = 10**9  # an enumerate_width no range exceeds: every row enumerated (the full mask)


def corpus(seed: int, n_docs: int = 30, vocab: int = 12) -> list[list[int]]:
    """Documents over tokens 3..vocab+2 (pad 0, eos 1 and token 2 never occur): wide ranges guaranteed."""
    rng = np.random.default_rng(seed)
    return [(3 + rng.integers(0, vocab, rng.integers(0, 20))).tolist() for _ in range(n_docs)]


def state_of(constraint: NgramConstraint, ngrams: list[list[int]]) -> torch.Tensor:
    state = constraint.start(len(ngrams))
    longest = max(len(g) for g in ngrams)
    for step in range(longest):
        tokens = torch.tensor([g[step] if step < len(g) else PAD for g in ngrams])
        grown = constraint.advance(state, tokens)
        keep = torch.tensor([step < len(g) for g in ngrams])[:, None]
        state = torch.where(keep, grown, state)
    return state


def allowed(row: torch.Tensor) -> set[int]:
    return set(torch.isfinite(row).nonzero().flatten().tolist())


@pytest.mark.parametrize("backend", ["sa", "fm"])
def test_full_mask_is_exactly_what_follows_in_the_corpus(backend: str) -> None:
    docs = corpus(0)
    index = NgramIndex.from_token_lists(docs, backend=backend, shard_tokens=120)
    constraint = NgramConstraint(index, eos_token_id=EOS, fill_token_id=PAD, enumerate_width=FULL)
    assert isinstance(constraint, Constraint)
    rng = np.random.default_rng(1)
    present = [d[s : s + m] for d in docs for m in (1, 2, 3) for s in range(len(d) - m + 1)]
    ngrams = [[]] + [present[i] for i in rng.integers(0, len(present), 40)] + [[3, 3, 3, 3, 3, 3], [2], [60]]
    state = state_of(constraint, ngrams)
    scores = torch.randn(len(ngrams), MODEL_VOCAB)
    masked = constraint.mask(state, scores)
    for i, g in enumerate(ngrams):
        if g and not occurrences(docs, g):
            assert allowed(masked[i]) == {PAD}, g  # dead: only the fill token
        elif not g:
            assert allowed(masked[i]) == {t for d in docs for t in d}  # no empty n-gram: no eos
        else:
            assert allowed(masked[i]) == set(next_counts(docs, g)) | {EOS}, g
        kept = torch.isfinite(masked[i])
        assert torch.equal(masked[i][kept], scores[i][kept])


@pytest.mark.parametrize("keep_top", [1, 2, 5])
def test_wide_rows_keep_their_best_scoring_allowed_tokens(keep_top: int) -> None:
    docs = corpus(2)
    index = NgramIndex.from_token_lists(docs)
    constraint = NgramConstraint(index, eos_token_id=EOS, fill_token_id=PAD, enumerate_width=0, keep_top=keep_top)
    ngrams = [[t] for t in range(3, 15)] + [[3, 4], [5, 6, 7]]
    state = state_of(constraint, ngrams)
    scores = torch.randn(len(ngrams), MODEL_VOCAB, generator=torch.Generator().manual_seed(3))
    masked = constraint.mask(state, scores)
    for i, g in enumerate(ngrams):
        follow = set(next_counts(docs, g))
        if not occurrences(docs, g):
            assert allowed(masked[i]) == {PAD}
            continue
        ranked = [t for t in scores[i].argsort(descending=True).tolist() if t in follow]
        assert allowed(masked[i]) == set(ranked[:keep_top]) | {EOS}, g


def run(model, constraint: NgramConstraint, inputs: dict, beams: int, length: int):
    processor = ConstrainedLogitsProcessor(constraint, num_beams=beams)
    with torch.no_grad():
        return model.generate(
            **inputs,
            max_new_tokens=length,
            num_beams=beams,
            num_return_sequences=beams,
            do_sample=False,
            length_penalty=0.0,
            output_scores=True,
            return_dict_in_generate=True,
            logits_processor=LogitsProcessorList([processor]),
        )


@pytest.mark.parametrize("backend", ["sa", "fm"])
@pytest.mark.parametrize("beams", [2, 5])
def test_hybrid_policy_gives_the_beams_of_the_full_mask(backend: str, beams: int) -> None:
    docs = corpus(4, n_docs=60, vocab=40)
    index = NgramIndex.from_token_lists(docs, backend=backend)
    model = t5(0)
    inputs = encoder_inputs(7, 3)
    full = run(model, NgramConstraint(index, EOS, PAD, enumerate_width=FULL), inputs, beams, 6)
    hybrid = run(model, NgramConstraint(index, EOS, PAD, enumerate_width=0, keep_top=2 * beams), inputs, beams, 6)
    assert torch.equal(full.sequences, hybrid.sequences)
    torch.testing.assert_close(full.sequences_scores, hybrid.sequences_scores)
    assert torch.isfinite(hybrid.sequences_scores).all()
    for row in hybrid.sequences[:, 1:].tolist():  # every output is an n-gram of the corpus, then eos / pad
        ngram = row[: row.index(EOS)] if EOS in row else row
        assert ngram and PAD not in ngram and occurrences(docs, ngram), row


def test_prefix_starts_every_ngram_inside_the_title_view() -> None:
    begin = 60
    docs = [[begin, 5, 6, 61, 7, 8, 9], [begin, 5, 9, 61, 5, 6], [7, 5, 6]]
    index = NgramIndex.from_token_lists(docs)
    constraint = NgramConstraint(index, EOS, PAD, prefix=[begin])
    state = constraint.start(1)
    assert allowed(constraint.mask(state, torch.zeros(1, MODEL_VOCAB))[0]) == {5}
    state = constraint.advance(state, torch.tensor([5]))
    assert allowed(constraint.mask(state, torch.zeros(1, MODEL_VOCAB))[0]) == {6, 9, EOS}
    dead = NgramConstraint(index, EOS, PAD, prefix=[62]).start(2)
    assert allowed(constraint.mask(dead, torch.zeros(2, MODEL_VOCAB))[1]) == {PAD}


def test_eos_and_invalid_tokens_end_a_row() -> None:
    index = NgramIndex.from_token_lists([[3, 4, 5], [4, 4]])
    constraint = NgramConstraint(index, EOS, PAD)
    state = constraint.advance(constraint.start(4), torch.tensor([4, 4, 9, -1]))
    state = constraint.advance(state, torch.tensor([EOS, 4, 4, 4]))
    masked = constraint.mask(state, torch.zeros(4, MODEL_VOCAB))
    assert [allowed(r) for r in masked] == [{PAD}, {EOS}, {PAD}, {PAD}]
    with pytest.raises(ValueError, match="state has shape"):
        constraint.mask(state[:, :2], torch.zeros(4, MODEL_VOCAB))


@pytest.mark.parametrize("backend", ["sa", "fm"])
@pytest.mark.parametrize("select_width", [0, 10**9])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_both_wide_row_routes_and_dtypes_keep_the_best_allowed_tokens(
    backend: str, select_width: int, dtype, monkeypatch
) -> None:
    """Wide rows either check candidates by extension or hand over to enumeration (the backend's select_width);
    in-place masking (mask_) gives what mask returns. Scores are distinct in every dtype, so the ranking is unique."""
    monkeypatch.setattr(backend_class(backend), "select_width", select_width)
    docs = corpus(5, n_docs=50, vocab=30)
    index = NgramIndex.from_token_lists(docs, backend=backend, shard_tokens=200)
    present = sorted({tuple(d[s : s + m]) for d in docs for m in (1, 2) for s in range(len(d) - m + 1)})
    ngrams = [[]] + [list(g) for g in present[:: max(1, len(present) // 60)]] + [[61]]
    gen = torch.Generator().manual_seed(9)
    scores = torch.stack([torch.randperm(MODEL_VOCAB, generator=gen) for _ in ngrams]).to(dtype) * 0.01
    for keep_top in (1, 3, 8):
        constraint = NgramConstraint(index, EOS, PAD, enumerate_width=0, keep_top=keep_top)
        state = state_of(constraint, ngrams)
        masked = constraint.mask(state, scores)
        assert masked.dtype == dtype
        inplace = scores.clone()
        assert torch.equal(constraint.mask_(state, inplace), masked) and torch.equal(inplace, masked)
        for i, g in enumerate(ngrams):
            if g and not occurrences(docs, g):
                assert allowed(masked[i]) == {PAD}
                continue
            if not g:
                assert allowed(masked[i]) == {t for d in docs for t in d}
                continue
            follow = set(next_counts(docs, g))
            ranked = [t for t in scores[i].float().argsort(descending=True).tolist() if t in follow]
            assert allowed(masked[i]) == set(ranked[:keep_top]) | {EOS}, (g, keep_top)


@pytest.mark.parametrize("min_count", [1, 3, 10**9])
def test_rows_with_known_followers_keep_the_best_allowed_tokens(min_count: int) -> None:
    """One ``sa`` shard with follower bitmaps for its n-grams of 1-2 tokens seen >= min_count times:
    rows that fall short of keep_top in the first round take their best followers from one pass over
    the bitmap (``_best_known``); the mask equals brute force whichever route a row takes."""
    docs = corpus(11, n_docs=60, vocab=40)
    index = NgramIndex.from_token_lists(docs, backend="sa")
    index.shards[0].follower_bitmap_min = min_count
    present = sorted({tuple(d[s : s + m]) for d in docs for m in (1, 2, 3) for s in range(len(d) - m + 1)})
    ngrams = [list(g) for g in present[:: max(1, len(present) // 80)]]
    gen = torch.Generator().manual_seed(3)
    scores = torch.stack([torch.randperm(MODEL_VOCAB, generator=gen) for _ in ngrams]).float() * 0.01
    for keep_top in (1, 4, 30):  # 30: more than most rows have followers
        constraint = NgramConstraint(index, EOS, PAD, enumerate_width=0, keep_top=keep_top)
        masked = constraint.mask(state_of(constraint, ngrams), scores)
        for i, g in enumerate(ngrams):
            follow = set(next_counts(docs, g))
            ranked = [t for t in scores[i].argsort(descending=True).tolist() if t in follow]
            assert allowed(masked[i]) == set(ranked[:keep_top]) | {EOS}, (g, keep_top)


def test_threads_split_the_top_k_and_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """With threads > 1 the wide rows' top-k runs in chunks on a thread pool: the same mask as one thread."""
    import genret.constraints.ngram as ngram_module

    monkeypatch.setattr(ngram_module, "MIN_ROWS_PER_THREAD", 2)
    docs = corpus(4, n_docs=80, vocab=25)
    index = NgramIndex.from_token_lists(docs, backend="sa")
    present = sorted({tuple(d[s : s + m]) for d in docs for m in (1, 2) for s in range(len(d) - m + 1)})
    ngrams = [list(g) for g in present[:: max(1, len(present) // 90)]]
    gen = torch.Generator().manual_seed(5)
    scores = torch.randn(len(ngrams), MODEL_VOCAB, generator=gen)
    masks = []
    for threads in (1, 3):
        constraint = NgramConstraint(index, EOS, PAD, enumerate_width=0, keep_top=5, threads=threads)
        masks.append(constraint.mask(state_of(constraint, ngrams), scores))
    assert torch.equal(masks[0], masks[1])
    with pytest.raises(ValueError, match="threads"):
        NgramConstraint(index, EOS, PAD, threads=0)


def test_best_followers_are_the_bitmaps_best_scores_then_lowest_ids() -> None:
    """The one-pass kernel against a sort: ties broken by id, eos and ids past the scores skipped, -1 pads."""
    from genret.constraints.topk import best_followers as _best_followers

    rng = np.random.default_rng(0)
    vocab = 70
    scores = np.round(rng.standard_normal((4, vocab)), 1).astype(np.float32)  # many ties
    bits = rng.integers(0, 256, (3, 10), dtype=np.uint8)  # 80 bits: ids 70-79 are past the scores
    bits[2] = 0
    bits[2, 0] = 0b00100110  # ids 1, 2, 5
    rows, bit_rows, eos = np.array([3, 0, 1]), np.array([0, 1, 2]), 2
    for k in (1, 5, 40):
        got = _best_followers(scores, rows, bits, bit_rows, k, eos)
        for j in range(3):
            ids = [u for u in range(vocab) if bits[bit_rows[j], u >> 3] >> (u & 7) & 1 and u != eos]
            ranked = sorted(ids, key=lambda u: (-scores[rows[j], u], u))[:k]
            assert got[j].tolist() == ranked + [-1] * (k - len(ranked))


@pytest.mark.parametrize("vocab", [31, 32, 1000, 32_003])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_top_tokens_are_the_best_scores_then_the_lowest_ids(vocab: int, dtype) -> None:
    """The host top-k (block maxima, then a quickselect) against a full sort: score descending, then
    id ascending, with ties, -inf and a short last block; k below and above the number of blocks."""
    from genret.constraints.topk import top_tokens as _top_tokens

    rng = np.random.default_rng(vocab)
    scores = rng.standard_normal((6, vocab)).astype(dtype)
    scores[1] = np.round(scores[1])  # many ties
    scores[2, rng.integers(0, vocab, vocab // 2)] = -np.inf
    scores[3] = -np.inf
    scores[4, -1] = 50.0  # the best token in the last (short) block
    rows = np.array([5, 0, 1, 2, 3, 4])
    for k in sorted({1, 7, min(vocab, 40), min(vocab, 200), vocab}):
        expected = [np.lexsort((np.arange(vocab), -scores[r]))[:k].tolist() for r in rows]
        assert _top_tokens(scores, rows, k).tolist() == expected, k


def test_top_tokens_with_nan_scores_still_returns_k_distinct_tokens() -> None:
    """NaN scores have no order; the kernel must still return k distinct tokens (the best finite ones
    when only some are NaN)."""
    from genret.constraints.topk import top_tokens as _top_tokens

    scores = np.random.default_rng(0).standard_normal((2, 5000)).astype(np.float32)
    scores[0, ::3] = np.nan
    scores[1] = np.nan
    out = _top_tokens(scores, np.array([0, 1]), 40)
    assert all(len(set(row)) == 40 and min(row) >= 0 and max(row) < 5000 for row in out.tolist())
    finite = np.where(np.isnan(scores[0]), -np.inf, scores[0])
    assert set(out[0].tolist()) == set(np.argsort(-finite, kind="stable")[:40].tolist())
