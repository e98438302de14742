"""Suffix arrays of token-id sequences, through libdivsufsort (pydivsufsort).

divsufsort sorts bytes. A token sequence becomes a byte string by writing every symbol as a
fixed-width big-endian integer (2 bytes for symbols < 65,536, else 3, up to 16.7M); fixed-width
big-endian bytes compare like the integers they encode, so the byte suffixes that start at a
multiple of the width, in byte order, are the token suffixes in token order. Measured in
../shared/research/dependencies.md (section 4.2): 1.9 s for 10M tokens, 13 s for 50M.
"""

from __future__ import annotations

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
    # keep the suffixes that start at a symbol boundary, in chunks (a whole-array mask would cost
    # another 8 bytes per token at the build's peak)
    out = np.empty(n, dtype=index_dtype)
    filled = 0
    chunk = 1 << 24
    for start in range(0, len(byte_sa), chunk):
        part = byte_sa[start : start + chunk]
        aligned = part[part % width == 0] // width
        out[filled : filled + len(aligned)] = aligned
        filled += len(aligned)
    return out
