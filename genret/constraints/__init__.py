"""Constrained decoding: a ``Constraint`` says which tokens may come next for all rows at once;
``ConstrainedLogitsProcessor`` plugs any constraint into ``model.generate`` (no fork).

- :class:`Constraint` (``base``): the protocol, ``start`` / ``advance`` / ``mask``.
- :class:`TrieConstraint` (``trie``): the identifiers of an ``indexing.trie.DocidTrie``.
- :class:`ConstrainedLogitsProcessor` (``processor``): a ``transformers.LogitsProcessor`` that
  follows beams as ``generate`` reorders them.
"""

from __future__ import annotations

from genret.constraints.base import Constraint
from genret.constraints.processor import ConstrainedLogitsProcessor
from genret.constraints.trie import TrieConstraint

__all__ = ["ConstrainedLogitsProcessor", "Constraint", "TrieConstraint"]
