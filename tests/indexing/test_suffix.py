"""suffix_array against sorting every suffix, for the 2-byte and 3-byte symbol encodings."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexing.ngrams.suffix import MAX_SYMBOL, suffix_array, symbol_width


@settings(max_examples=80, deadline=None)
@given(st.one_of(st.lists(st.integers(0, 3), max_size=60), st.lists(st.integers(0, 70_000), max_size=40),
                 st.lists(st.sampled_from([0, 255, 256, 65_535, 65_536, MAX_SYMBOL]), max_size=30)))
def test_suffix_array_sorts_every_suffix(symbols: list[int]) -> None:
    sa = suffix_array(np.array(symbols, dtype=np.int64))
    assert sa.tolist() == sorted(range(len(symbols)), key=lambda i: symbols[i:])
    assert sa.dtype == np.int32


def test_symbol_width_and_bad_input() -> None:
    assert symbol_width(65_535) == 2 and symbol_width(65_536) == 3 and symbol_width(MAX_SYMBOL) == 3
    with pytest.raises(ValueError, match="symbols must lie"):
        suffix_array(np.array([MAX_SYMBOL + 1]))
    with pytest.raises(ValueError, match="non-negative"):
        suffix_array(np.array([1, -1]))
    assert suffix_array(np.zeros(0, dtype=np.int64)).tolist() == []
