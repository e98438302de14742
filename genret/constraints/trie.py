"""``TrieConstraint``: the identifiers of a :class:`indexing.trie.DocidTrie` as a decoding constraint.

State = the trie node each row has reached (int64, on the model's device); -1 is the dead state.
Every step is a handful of tensor operations over all rows, with shapes known on the host, so
nothing waits on the device:

- ``advance``: the child of node ``s`` along token ``t`` is the node whose key ``parent * V +
  token`` equals ``s * V + t``. Nodes are numbered breadth-first with each child block sorted by
  token, so these keys are strictly increasing in node id and one ``torch.searchsorted`` over
  them finds every row's child at once (``V`` = the trie's vocabulary size; a token outside
  ``[0, V)`` or a dead state gives -1). For 640 rows of a 1M-identifier trie (8M nodes) on CPU
  it took 0.13-0.25 ms, against 1.0-1.5 ms for a bisection inside each child block (15 rounds of
  several small kernels for a 32k-child root). Costs 8 bytes per node on the device, next to the
  trie's own 12.
- ``mask``: each row's child block ``first_child[s] .. first_child[s + 1]`` is gathered padded to
  a fixed width (the largest out-degree of any node but the root, a host int computed once),
  the children's tokens index a gather of the row's scores and a scatter of them into a row of
  ``-inf``. The root usually has far more children than any other node (a whole first-token
  vocabulary), so its row is precomputed once per device, dtype and vocabulary as a 0 / -inf
  bias and added, broadcast, to every row.

Which of the two a state needs is known on the host without looking at it: ``start`` returns
roots only and ``advance`` never returns the root (a root has no parent), so ``mask`` takes the
root path for the tensor ``start`` last returned, the gather path for the tensor ``advance`` last
returned, and for any other tensor (states made by hand, reindexed, mixed) does both and picks
per row with ``torch.where`` (correct for any state, one extra pass over the scores).

The trie's tensors are moved to a device once and kept (one copy per device).
"""

from __future__ import annotations

import math
import threading
import weakref
from typing import Any

import numpy as np
import torch

from indexing.trie import DocidTrie


class TrieConstraint:
    """Decode only identifiers of ``trie``: each followed by its eos, then ``fill_token_id``.

    ``fill_token_id`` is the one token left to a row with no allowed continuation (a finished
    identifier, or a dead state); pass the model's pad token (or eos if it has none). It is also
    let through, like any other allowed token, where the trie allows it.
    """

    def __init__(self, trie: DocidTrie, fill_token_id: int) -> None:
        if fill_token_id < 0:
            raise ValueError(f"fill_token_id must be a token id >= 0, got {fill_token_id}")
        self.trie = trie
        self.fill_token_id = int(fill_token_id)
        self.vocab_size = trie.vocab_size
        self.n_nodes = trie.n_nodes
        degree = np.diff(np.asarray(trie.first_child, dtype=np.int64))
        self.root_degree = int(degree[0]) if len(degree) else 0
        #: gather width of ``mask`` for non-root nodes: their largest out-degree (at least 1)
        self.width = max(1, int(degree[1:].max(initial=0)))
        self._root_fits = self.root_degree <= self.width
        self._device_cache: dict[torch.device, dict[str, torch.Tensor]] = {}
        self._bias_cache: dict[tuple[torch.device, torch.dtype, int], torch.Tensor] = {}
        self._lock = threading.Lock()
        self._roots: weakref.ref[torch.Tensor] | None = None  # last tensor start() returned
        self._children: weakref.ref[torch.Tensor] | None = None  # last tensor advance() returned

    def __repr__(self) -> str:
        return f"TrieConstraint({self.trie!r}, fill_token_id={self.fill_token_id}, width={self.width})"

    # ------------------------------------------------------------ device data

    def tensors(self, device: torch.device | str) -> dict[str, torch.Tensor]:
        """The trie on ``device``: ``first_child``, ``token`` (int32), ``keys`` and ``arange``.

        Built and moved once per device, then cached.
        """
        device = _device(device)
        cached = self._device_cache.get(device)
        if cached is not None:
            return cached
        with self._lock:
            if device not in self._device_cache:
                arrays = self.trie.tensors(device)
                token = np.asarray(self.trie.token, dtype=np.int64)
                parent = self.trie.parents()[1:]  # node j >= 1 has key parent(j) * V + token(j)
                keys = parent * self.vocab_size + token[1:]
                self._device_cache[device] = {
                    "first_child": arrays["first_child"],
                    "token": arrays["token"],
                    "keys": torch.from_numpy(keys).to(device),
                    "arange": torch.arange(self.width, dtype=torch.int64, device=device),
                }
        return self._device_cache[device]

    def _root_bias(self, device: torch.device, dtype: torch.dtype, vocab: int) -> torch.Tensor:
        """``[vocab]``: 0 at the root's children (or at ``fill_token_id`` if it has none), -inf elsewhere."""
        key = (device, dtype, vocab)
        bias = self._bias_cache.get(key)
        if bias is None:
            fc, token = self.trie.first_child, self.trie.token
            allowed = np.asarray(token[int(fc[0]) : int(fc[1])], dtype=np.int64) if self.n_nodes else []
            if len(allowed) == 0:
                allowed = np.array([self.fill_token_id])
            host = torch.full((vocab,), -math.inf, dtype=dtype)
            host[torch.from_numpy(np.asarray(allowed, dtype=np.int64))] = 0
            bias = host.to(device)
            self._bias_cache[key] = bias
        return bias

    # ------------------------------------------------------------- Constraint

    def start(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """``n`` root states (int64 zeros) on ``device``."""
        state = torch.zeros(n, dtype=torch.int64, device=device)
        self._roots = weakref.ref(state)
        return state

    def advance(self, state: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The child of each state along its token; -1 where there is none or the state is dead.

        Same result as ``DocidTrie.step`` (numpy), as one ``searchsorted`` on the state's device.
        """
        data = self.tensors(state.device)
        keys = data["keys"]
        state = state.to(torch.int64)
        tokens = tokens.to(device=state.device, dtype=torch.int64)
        if len(keys) == 0:  # a trie of no identifiers: everything is dead
            out = torch.full_like(state + tokens, -1)
        else:
            ok = (state >= 0) & (state < self.n_nodes) & (tokens >= 0) & (tokens < self.vocab_size)
            query = torch.where(ok, state * self.vocab_size + tokens, -1)
            pos = torch.searchsorted(keys, query).clamp_(max=len(keys) - 1)
            out = torch.where(ok & (keys[pos] == query), pos + 1, -1)
        self._children = weakref.ref(out)
        return out

    def mask(self, state: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """``scores [n, V]`` with every token the trie does not allow after ``state`` set to -inf.

        Dead and leaf states keep ``fill_token_id`` only. ``V`` may exceed the trie's vocabulary
        (a model's padded vocabulary); the extra tokens are never allowed.
        """
        n, vocab = scores.shape
        if state.shape != (n,):
            raise ValueError(f"state has shape {tuple(state.shape)}, scores {tuple(scores.shape)}: one state per row")
        if vocab < self.vocab_size or self.fill_token_id >= vocab:
            raise ValueError(
                f"scores have {vocab} tokens; the trie needs {self.vocab_size} and fill_token_id is "
                f"{self.fill_token_id}"
            )
        if _is(self._roots, state):  # every row is the root
            return scores + self._root_bias(scores.device, scores.dtype, vocab)
        out = self._mask_children(state, scores)
        if _is(self._children, state) or self._root_fits:  # no root row, or the root fits the width
            return out
        root = self._root_bias(scores.device, scores.dtype, vocab)
        return torch.where((state == 0)[:, None], scores + root, out)

    def _mask_children(self, state: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """The mask of every non-root state (a root row gets its first ``width`` children only)."""
        data = self.tensors(scores.device)
        first_child, token = data["first_child"], data["token"]
        state = state.to(device=scores.device, dtype=torch.int64)
        live = (state >= 0) & (state < self.n_nodes)
        s = torch.where(live, state, 0)
        lo = first_child[s]
        hi = torch.where(live, first_child[s + 1], lo)
        idx = lo[:, None] + data["arange"]  # [n, width]: the child block, padded
        children = token[idx.clamp(max=max(self.n_nodes - 1, 0))].to(torch.int64)
        # padding repeats the row's first child (a duplicate write of the same value); a row
        # without children gets fill_token_id
        first = torch.where(hi > lo, children[:, 0], self.fill_token_id)
        children = torch.where(idx < hi[:, None], children, first[:, None])
        out = torch.full_like(scores, -math.inf)
        return out.scatter_(1, children, scores.gather(1, children))


def _is(ref: weakref.ref[torch.Tensor] | None, tensor: torch.Tensor) -> bool:
    return ref is not None and ref() is tensor


def _device(device: Any) -> torch.device:
    """A concrete device (``cuda`` -> ``cuda:<current>``), so cache keys match ``tensor.device``."""
    device = torch.device(device)
    if device.type != "cpu" and device.index is None:
        return torch.empty(0, device=device).device
    return device
