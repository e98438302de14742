"""suffix_array against sorting every suffix: prefix doubling, and divsufsort for the 2-byte and 3-byte
symbol encodings (the hand-over after too much doubling work, and alphabets too large to count)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexing.ngrams import suffix as suffix_module
from indexing.ngrams.suffix import MAX_SYMBOL, suffix_array, symbol_width


@pytest.mark.parametrize("doubling_work", [0, suffix_module.MAX_DOUBLING_WORK, 10**9])
@settings(max_examples=80, deadline=None)
@given(
    symbols=st.one_of(
        st.lists(st.integers(0, 3), max_size=60),
        st.lists(st.integers(0, 70_000), max_size=40),
        st.lists(st.sampled_from([0, 255, 256, 65_535, 65_536, MAX_SYMBOL]), max_size=30),
    ),
    dtype=st.sampled_from([np.int64, np.uint16, np.int32]),
)
def test_suffix_array_sorts_every_suffix(doubling_work: int, symbols: list[int], dtype: type) -> None:
    """0: divsufsort as soon as two suffixes tie on two symbols; 10**9: prefix doubling to the end."""
    array = np.array(symbols, dtype=np.int64)
    if len(array) and array.max() > np.iinfo(dtype).max:
        dtype = np.int64
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(suffix_module, "MAX_DOUBLING_WORK", doubling_work)
        sa = suffix_array(array.astype(dtype))
    assert sa.tolist() == sorted(range(len(symbols)), key=lambda i: symbols[i:])
    assert sa.dtype == np.int32


def test_long_repeats_hand_over_to_divsufsort_and_stay_right() -> None:
    """A text that is one short pattern repeated needs about log2(n) doubling rounds over one big group;
    past the work budget divsufsort takes over (the result is the same either way)."""
    symbols = np.tile(np.array([2, 1, 2], dtype=np.int64), 700)
    symbols[::97] = 3
    expected = sorted(range(len(symbols)), key=lambda i: symbols[i:].tolist())
    assert suffix_array(symbols).tolist() == expected


def test_symbol_width_and_bad_input() -> None:
    assert symbol_width(65_535) == 2 and symbol_width(65_536) == 3 and symbol_width(MAX_SYMBOL) == 3
    with pytest.raises(ValueError, match="symbols must lie"):
        suffix_array(np.array([MAX_SYMBOL + 1]))
    with pytest.raises(ValueError, match="non-negative"):
        suffix_array(np.array([1, -1]))
    assert suffix_array(np.zeros(0, dtype=np.int64)).tolist() == []
