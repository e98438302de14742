"""``TrieConstraint``: the identifiers of a :class:`indexing.trie.DocidTrie` as a decoding constraint.

State = the trie node each row has reached (int64, on the model's device); -1 is the dead state.
Every step is a handful of tensor operations over all rows, with shapes known on the host, so
nothing waits on the device, and few of them (on a GPU each is a kernel launch, and a step of
``generate`` there is launch-bound):

- ``advance`` (8 operations): the child of node ``s`` along token ``t`` is the node whose key
  ``parent * (V + 1) + token`` equals ``s * (V + 1) + t``. Nodes are numbered breadth-first with
  each child block sorted by token, so these keys are strictly increasing in node id and one
  ``torch.searchsorted`` over them finds every row's child at once (``V`` = the trie's
  vocabulary size). Tokens are clamped to ``[-1, V]`` and states to ``[-1, n_nodes]`` first:
  with the multiplier ``V + 1`` a clamped bad token reads as token ``V``, which no edge carries,
  a dead state gives a negative key and an out-of-range state a key past the last, so no extra
  validity test is needed; a sentinel key past every real one keeps the search's answer a valid
  index. Several times faster than a bisection inside each child block; costs 8 bytes per node.
- ``mask`` (8 operations): each row's child block is looked up in ``bounds`` (``[first, last]``
  child per node; a leaf, and the extra row ``n_nodes`` that dead states read, point at a
  one-entry block holding ``fill_token_id``, so every row has at least one allowed token and no
  test for "no children" is needed), gathered padded to a fixed width (the largest out-degree of
  any node but the root, a host int computed once; padding repeats the block's last child, a
  duplicate write of the same value), and the children's scores are gathered, the scores set to
  ``-inf`` and the gathered scores scattered back. ``bounds`` and the edge tokens (int64, so no
  conversion per step) cost 16 bytes per node. Setting the scores to ``-inf`` is the one pass
  over all of them and, on CPU, nearly all of the time.
- The root usually has far more children than any other node (a whole first-token vocabulary).
  When it does not fit the width, the first step sets the root's *complement* to ``-inf``
  (``index_fill`` of a precomputed column list: for random identifiers over 32k tokens, about 130
  columns instead of 32k) or, when the complement is large too, adds a precomputed 0 / -inf bias.

Which of the paths a state needs is known on the host without looking at it: ``start`` returns
roots only and ``advance`` never returns the root (a root has no parent), so ``mask`` takes the
root path for the tensor ``start`` last returned, the block path for the tensor ``advance`` last
returned, and for any other tensor (states made by hand, reindexed, mixed) checks the range of
every state and, if the root does not fit the width, picks per row with ``torch.where`` (correct
for any state, one extra pass over the scores).

``mask`` returns a new tensor (the ``Constraint`` protocol). ``mask_`` does the same work in the
scores it is given and returns them: no new ``[rows, vocab]`` tensor, which on CPU is most of
the cost (a fresh tensor's pages fault in on first touch, several times the cost of filling one in
place). ``ConstrainedLogitsProcessor(..., inplace=True)`` uses it.

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

_SENTINEL = np.iinfo(np.int64).max


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
        self._root_cache: dict[tuple[torch.device, torch.dtype, int], tuple[str, torch.Tensor]] = {}
        self._lock = threading.Lock()
        self._roots: weakref.ref[torch.Tensor] | None = None  # last tensor start() returned
        self._children: weakref.ref[torch.Tensor] | None = None  # last tensor advance() returned

    def __repr__(self) -> str:
        return f"TrieConstraint({self.trie!r}, fill_token_id={self.fill_token_id}, width={self.width})"

    # ------------------------------------------------------------ device data

    def tensors(self, device: torch.device | str) -> dict[str, torch.Tensor]:
        """The trie on ``device``: ``keys``, ``bounds``, ``token`` and ``arange`` (see the module doc).

        ``keys`` (int64, ``n_nodes`` entries: node ``j >= 1`` at ``j - 1``, then the sentinel);
        ``bounds`` (``[n_nodes + 1, 2]``, int32 below 2**31 nodes): first and last child of each
        node, the fill entry for leaves and for row ``n_nodes`` (the dead state); ``token``
        (int64, ``n_nodes + 1``): the edge token into each node, then ``fill_token_id``;
        ``arange``: ``0 .. width - 1``. Built and moved once per device, then cached.
        """
        # a tensor's device (the common case) is concrete: look it up as it is
        cached = self._device_cache.get(device) if isinstance(device, torch.device) else None
        if cached is not None:
            return cached
        device = _device(device)
        with self._lock:
            if device not in self._device_cache:
                self._device_cache[device] = {
                    name: torch.from_numpy(array).to(device) for name, array in self._host_arrays().items()
                }
        return self._device_cache[device]

    def _host_arrays(self) -> dict[str, np.ndarray]:
        n = self.n_nodes
        first_child = np.asarray(self.trie.first_child, dtype=np.int64)
        token = np.empty(n + 1, dtype=np.int64)
        token[:n] = self.trie.token
        token[n] = self.fill_token_id  # the fill entry: the one child of every leaf and of the dead state
        keys = np.empty(n, dtype=np.int64)  # node j >= 1 has key parent(j) * (V + 1) + token(j)
        keys[:-1] = self.trie.parents()[1:] * (self.vocab_size + 1) + token[1:n]
        keys[-1] = _SENTINEL
        bounds = np.empty((n + 1, 2), dtype=np.int32 if n + 1 < 2**31 else np.int64)
        bounds[:n, 0] = first_child[:-1]
        bounds[:n, 1] = first_child[1:] - 1
        leaf = np.append(first_child[1:] == first_child[:-1], True)
        bounds[leaf] = n
        return {"keys": keys, "bounds": bounds, "token": token, "arange": np.arange(self.width, dtype=np.int64)}

    def nbytes(self, device: torch.device | str = "cpu") -> int:
        """Bytes the trie's tensors take on ``device`` (building them there if needed)."""
        return sum(t.numel() * t.element_size() for t in self.tensors(device).values())

    def _root(self, device: torch.device, dtype: torch.dtype, vocab: int) -> tuple[str, torch.Tensor]:
        """How the root row is masked when it does not fit the width: ``("columns", tokens)`` to set
        to -inf, or ``("bias", [vocab] 0 / -inf)`` when the disallowed columns are many."""
        key = (device, dtype, vocab)
        root = self._root_cache.get(key)
        if root is None:
            fc, token = self.trie.first_child, self.trie.token
            allowed = np.zeros(vocab, dtype=bool)
            allowed[np.asarray(token[int(fc[0]) : int(fc[1])], dtype=np.int64)] = True
            if not allowed.any():
                allowed[self.fill_token_id] = True
            banned = np.flatnonzero(~allowed)
            if len(banned) <= vocab // 8:  # few columns: cheaper than a pass over every score
                root = ("columns", torch.from_numpy(banned.astype(np.int64)).to(device))
            else:
                bias = torch.zeros(vocab, dtype=dtype)
                bias[torch.from_numpy(banned.astype(np.int64))] = -math.inf
                root = ("bias", bias.to(device))
            self._root_cache[key] = root
        return root

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
        keys = self.tensors(state.device)["keys"]
        tokens = _int64(tokens, state.device).clamp(-1, self.vocab_size)
        query = torch.add(tokens, _int64(state, state.device).clamp(-1, self.n_nodes), alpha=self.vocab_size + 1)
        pos = torch.searchsorted(keys, query)  # at most n_nodes - 1: the sentinel is past every query
        out = torch.where(keys[pos] == query, pos + 1, -1)
        self._children = weakref.ref(out)
        return out

    def mask(self, state: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """``scores [n, V]`` with every token the trie does not allow after ``state`` set to -inf.

        Dead and leaf states keep ``fill_token_id`` only. ``V`` may exceed the trie's vocabulary
        (a model's padded vocabulary); the extra tokens are never allowed. Returns a new tensor.
        """
        return self._mask(state, scores, inplace=False)

    def mask_(self, state: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """``mask`` written into ``scores`` (which it returns): no new ``[n, V]`` tensor."""
        return self._mask(state, scores, inplace=True)

    def _mask(self, state: torch.Tensor, scores: torch.Tensor, inplace: bool) -> torch.Tensor:
        n, vocab = scores.shape
        if state.shape != (n,):
            raise ValueError(f"state has shape {tuple(state.shape)}, scores {tuple(scores.shape)}: one state per row")
        if vocab < self.vocab_size or self.fill_token_id >= vocab:
            raise ValueError(
                f"scores have {vocab} tokens; the trie needs {self.vocab_size} and fill_token_id is "
                f"{self.fill_token_id}"
            )
        if _is(self._roots, state) and not self._root_fits:  # every row is the root
            return self._mask_root(scores, inplace)
        if _is(self._roots, state) or _is(self._children, state):  # roots that fit, or no root row
            return self._mask_blocks(torch.where(state < 0, self.n_nodes, state), scores, inplace)
        # any states: out-of-range ones are dead; the root row gets its first `width` children
        # from the block path, so when it has more it is masked separately and picked per row
        row = torch.where((state >= 0) & (state < self.n_nodes), state, self.n_nodes)
        out = self._mask_blocks(row, scores, inplace=False)
        if not self._root_fits:
            out = torch.where((state == 0)[:, None], self._mask_root(scores, inplace=False), out)
        return scores.copy_(out) if inplace else out

    def _mask_root(self, scores: torch.Tensor, inplace: bool) -> torch.Tensor:
        how, value = self._root(scores.device, scores.dtype, scores.shape[1])
        if how == "columns":
            return scores.index_fill_(1, value, -math.inf) if inplace else scores.index_fill(1, value, -math.inf)
        return scores.add_(value) if inplace else scores + value

    def _mask_blocks(self, row: torch.Tensor, scores: torch.Tensor, inplace: bool) -> torch.Tensor:
        """The mask of the nodes ``row`` (``n_nodes`` = dead), each at most ``width`` children."""
        data = self.tensors(scores.device)
        block = data["bounds"][_int64(row, scores.device)]  # [n, 2]: first, last child
        # padded child block; the padding repeats the last child (a duplicate write of the same value)
        children = data["token"][torch.minimum(block[:, :1] + data["arange"], block[:, 1:])]
        kept = scores.gather(1, children)
        out = scores.fill_(-math.inf) if inplace else torch.full_like(scores, -math.inf)
        return out.scatter_(1, children, kept)


def _int64(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` as int64 on ``device`` (as it is when it already is: a no-op ``to`` still costs a few µs)."""
    if tensor.dtype == torch.int64 and tensor.device == device:
        return tensor
    return tensor.to(device=device, dtype=torch.int64)


def _is(ref: weakref.ref[torch.Tensor] | None, tensor: torch.Tensor) -> bool:
    return ref is not None and ref() is tensor


def _device(device: Any) -> torch.device:
    """A concrete device (``cuda`` -> ``cuda:<current>``), so cache keys match ``tensor.device``."""
    device = torch.device(device)
    if device.type != "cpu" and device.index is None:
        return torch.empty(0, device=device).device
    return device
