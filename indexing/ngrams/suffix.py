"""Suffix arrays of token-id sequences, through libdivsufsort (pydivsufsort).

divsufsort sorts bytes. A token sequence becomes a byte string by writing every symbol as a
fixed-width big-endian integer (2 bytes for symbols < 65,536, else 3, up to 16.7M); fixed-width
big-endian bytes compare like the integers they encode, so the byte suffixes that start at a
multiple of the width, in byte order, are the token suffixes in token order. Measured in
../shared/research/dependencies.md (section 4.2): 1.9 s for 10M tokens, 13 s for 50M.
"""

from __future__ import annotations

import numba
import numpy as np
from pydivsufsort import divsufsort

MAX_SYMBOL = (1 << 24) - 1


def symbol_width(max_symbol: int) -> int:
    """Bytes per symbol in the encoding: 2 up to 65,535, 3 up to 16,777,215."""
    if max_symbol < 0 or max_symbol > MAX_SYMBOL:
        raise ValueError(f"symbols must lie in [0, {MAX_SYMBOL}], got a largest symbol of {max_symbol}")
    return 2 if max_symbol < (1 << 16) else 3


def suffix_array(symbols: np.ndarray) -> np.ndarray:
    """The suffix array of ``symbols`` (non-negative integers): int32 below 2**31 positions, else int64.

    A shorter suffix sorts before any longer suffix it is a prefix of (end of sequence is smallest).
    """
    symbols = np.asarray(symbols)
    n = len(symbols)
    index_dtype = np.int32 if n < (1 << 31) else np.int64
    if n == 0:
        return np.zeros(0, dtype=index_dtype)
    if symbols.min() < 0:
        raise ValueError("suffix_array: symbols must be non-negative")
    width = symbol_width(int(symbols.max()))
    if width == 2:  # big-endian uint16 bytes, no intermediate copy
        encoded = symbols.astype(">u2").view(np.uint8)
    else:
        values = symbols.astype(np.uint32, copy=False)
        encoded = np.empty((n, width), dtype=np.uint8)
        for byte in range(width):
            encoded[:, byte] = (values >> (8 * (width - 1 - byte))) & 0xFF
        del values
        encoded = encoded.reshape(-1)
    byte_sa = divsufsort(encoded, force64=n * width >= (1 << 31))
    del encoded
    # keep the suffixes that start at a symbol boundary (one pass, no whole-array temporaries)
    out = np.empty(n + 1, dtype=index_dtype)  # one spare slot: _keep_aligned writes one past its count
    filled = _keep_aligned(byte_sa, width, out)
    if filled != n:
        raise RuntimeError(f"suffix_array: {filled} aligned suffixes for {n} symbols")
    return out[:n]


@numba.njit(cache=True, nogil=True)
def _keep_aligned(byte_sa, width, out):  # pragma: no cover - compiled
    """``out[:m]`` = the entries of ``byte_sa`` divisible by ``width``, divided by it, in order; returns m.

    Branch-free: every entry is written to slot ``m`` and kept (``m`` advanced) when aligned, so
    ``out`` needs one slot more than the entries kept (the ``min`` only guards a short ``out``)."""
    m = 0
    last = len(out) - 1
    for i in range(len(byte_sa)):
        p = byte_sa[i]
        out[min(m, last)] = p // width
        m += p % width == 0
    return m
