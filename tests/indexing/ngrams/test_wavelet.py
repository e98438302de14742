"""The wavelet matrix (indexing/ngrams/wavelet.py) against brute force: access, rank, distinct with counts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexing.ngrams.wavelet import (
    WaveletMatrix,
    access_descend,
    descend,
    levels_for,
    pack_bits,
    rank1,
    rank_directory,
)

HYPOTHESIS = settings(max_examples=60, deadline=None)
SIGMAS = st.one_of(st.just(1), st.sampled_from([2, 4, 8, 64, 256, 1 << 16]), st.integers(1, 300))


@st.composite
def sequences(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    """``(codes, sigma)``: uniform or skewed codes, empty to a few 512-bit blocks long."""
    sigma = draw(SIGMAS)
    n = draw(st.one_of(st.integers(0, 40), st.integers(0, 2100)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):
        codes = rng.integers(0, sigma, n)
    else:  # Zipf-like: a few codes dominate, the rest are rare or absent
        codes = np.minimum(rng.zipf(1.3, n) - 1, sigma - 1)
    return codes.astype(np.int64), sigma


def symbols_to_check(codes: np.ndarray, sigma: int, levels: int) -> list[int]:
    """Every symbol for small alphabets; present ones plus some absent ones for large ones; out-of-range ids."""
    inside = range(sigma) if sigma <= 300 else sorted(set(codes.tolist()) | {0, 1, sigma // 2, sigma - 1})
    return [*inside, -1, sigma, 1 << levels, (1 << levels) + 1]


@HYPOTHESIS
@given(data=sequences())
def test_access_and_rank_match_brute_force(data: tuple[np.ndarray, int]) -> None:
    codes, sigma = data
    wm = WaveletMatrix.build(codes, sigma)
    n = len(codes)
    assert len(wm) == n and wm.levels == levels_for(sigma)
    assert wm.access(np.arange(n)).tolist() == codes.tolist()
    positions = np.arange(n + 1)
    for c in symbols_to_check(codes, sigma, wm.levels):
        expected = np.concatenate([[0], np.cumsum(codes == c)])
        assert wm.rank(c, positions).tolist() == expected.tolist(), c


@HYPOTHESIS
@given(
    data=sequences(),
    bounds=st.lists(st.tuples(st.integers(0, 2100), st.integers(0, 2100)), max_size=12),
    min_code=st.integers(0, 300),
)
def test_distinct_matches_brute_force(
    data: tuple[np.ndarray, int], bounds: list[tuple[int, int]], min_code: int
) -> None:
    codes, sigma = data
    wm = WaveletMatrix.build(codes, sigma)
    n = len(codes)
    ranges = [(0, n), (n // 3, n // 3), (n, n)] + [(min(a, n), min(b, n)) for a, b in bounds]
    for lo, hi in ranges:
        for floor in (0, min_code):
            values, counts = np.unique(codes[lo:hi], return_counts=True)
            keep = values >= floor
            found_codes, found_counts = wm.distinct(lo, hi, floor)
            assert found_codes.tolist() == values[keep].tolist(), (lo, hi, floor)
            assert found_counts.tolist() == counts[keep].tolist(), (lo, hi, floor)


@HYPOTHESIS
@given(data=sequences())
def test_one_descent_kernels_agree_with_rank(data: tuple[np.ndarray, int]) -> None:
    """``access_descend(i)`` is ``(S[i], bottom + rank)`` and ``descend(c, x) - descend(c, 0)`` is ``rank_c(x)``
    (what an LF step and the FM-index's C shifts rely on)."""
    codes, sigma = data
    wm = WaveletMatrix.build(codes, sigma)
    arrays = (wm.words, wm.dirs, wm.zeros)
    for i in range(min(len(codes), 300)):
        c, x = access_descend(*arrays, i)
        assert c == codes[i]
        assert x == descend(*arrays, c, 0) + int(np.sum(codes[:i] == c))
    present = sorted(set(codes.tolist()))
    for c in present[:20]:
        for x in {0, len(codes) // 2, len(codes)}:
            assert descend(*arrays, c, x) - descend(*arrays, c, 0) == int(np.sum(codes[:x] == c))


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 511, 512, 513, 1023, 1024, 1025, 4097])
def test_rank_across_word_and_block_boundaries(n: int) -> None:
    rng = np.random.default_rng(n)
    for mask in (np.ones(n, dtype=bool), np.zeros(n, dtype=bool), rng.random(n) < 0.5):
        words = pack_bits(mask)
        dirs = rank_directory(words, n)
        expected = np.concatenate([[0], np.cumsum(mask)])
        assert [rank1(words, dirs, 0, i) for i in range(n + 1)] == expected.tolist()


def test_single_symbol_and_empty_sequences() -> None:
    wm = WaveletMatrix.build(np.zeros(1000, dtype=np.int64), 1)
    assert wm.levels == 0 and wm.access(np.array([0, 999])).tolist() == [0, 0]
    assert wm.rank(0, np.array([0, 1, 1000])).tolist() == [0, 1, 1000]
    assert wm.rank(1, np.array([1000])).tolist() == [0]
    assert [a.tolist() for a in wm.distinct(10, 20)] == [[0], [10]]
    empty = WaveletMatrix.build(np.zeros(0, dtype=np.int64), 5)
    assert len(empty) == 0 and empty.rank(3, np.array([0])).tolist() == [0]
    assert [a.tolist() for a in empty.distinct(0, 0)] == [[], []]


def test_build_rejects_codes_outside_the_alphabet() -> None:
    with pytest.raises(ValueError):
        WaveletMatrix.build(np.array([0, 4]), 4)
    with pytest.raises(ValueError):
        WaveletMatrix.build(np.array([-1, 2]), 4)
    with pytest.raises(IndexError):
        WaveletMatrix.build(np.array([1, 2]), 4).access(np.array([2]))
