"""DocidTrie: the set of valid identifier token sequences, as CSR arrays, for constrained decoding.

Every identifier is its token-id sequence followed by the end-of-id token (``eos_token_id``), so
an identifier that is a prefix of another still ends in a node of its own (a leaf). Nodes are
numbered breadth-first, root = 0, and the children of a node form one contiguous block sorted by
token::

    first_child  int32 (int64 above 2**31 nodes), len n_nodes + 1: children of u are the node ids
                 first_child[u] .. first_child[u + 1] - 1
    token        uint16 when vocab_size <= 65535 else int32, len n_nodes: the edge token into a node
                 (0 for the root, which has no incoming edge)
    leaf_nodes   int32, sorted: the nodes reached by the end-of-id token
    leaf_docs    int32: the document index of each leaf

A decoding state is a node id (int64); the dead state is -1. Batched operations work on all
states at once: vectorised numpy, with ``step`` and ``allowed_mask`` as small numba kernels
(a binary search / a scatter per state; ``cache=True``). The build is numpy only: one sort of
the padded identifiers, then one pass per depth. ``tensors()`` hands the arrays to torch (imported lazily:
``indexing`` never imports torch at import time) so a logits processor can do the same index
operations on the model's device.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from indexing.artifacts import ArtifactError, load_npy, save_npy
from indexing.trie_kernels import broadcast_flat, check_ids, mask_kernel, sort_rows, step_kernel

if TYPE_CHECKING:  # pragma: no cover
    import torch

DEAD = -1
TRIE_JSON = "trie.json"
TRIE_FILES = {
    "first_child": "trie_first_child.npy",
    "token": "trie_token.npy",
    "leaf_nodes": "trie_leaf_nodes.npy",
    "leaf_docs": "trie_leaf_docs.npy",
}
TRIE_FORMAT = 1


class DocidTrie:
    """Valid identifiers as a breadth-first CSR trie; states are node ids, -1 is the dead state."""

    def __init__(
        self,
        first_child: np.ndarray,
        token: np.ndarray,
        leaf_nodes: np.ndarray,
        leaf_docs: np.ndarray,
        eos_token_id: int,
        vocab_size: int,
        max_depth: int,
    ) -> None:
        self.first_child = first_child
        self.token = token
        self.leaf_nodes = leaf_nodes
        self.leaf_docs = leaf_docs
        self.eos_token_id = int(eos_token_id)
        self.vocab_size = int(vocab_size)
        self.max_depth = int(max_depth)
        self.n_nodes = len(token)
        self.n_docs = len(leaf_nodes)
        self._max_degree: int | None = None

    # ------------------------------------------------------------------ build

    @classmethod
    def build(
        cls,
        offsets: np.ndarray,
        values: np.ndarray,
        eos_token_id: int,
        vocab_size: int,
        progress: bool = False,
    ) -> DocidTrie:
        """Build the trie of ragged identifiers ``values[offsets[i]:offsets[i+1]]`` (document i).

        Raises ``ValueError`` if an identifier is empty, contains ``eos_token_id`` or a token
        outside ``[0, vocab_size)``, or if two identifiers are equal (naming the documents).
        """
        offsets = np.asarray(offsets, dtype=np.int64)
        values = np.asarray(values)
        eos, vocab = int(eos_token_id), int(vocab_size)
        if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or np.any(np.diff(offsets) < 0):
            raise ValueError("offsets must be a non-decreasing 1-d array starting at 0")
        if values.ndim != 1 or len(values) != offsets[-1]:
            raise ValueError(f"values has {values.size} tokens, offsets[-1] says {int(offsets[-1])}")
        if vocab < 1 or not 0 <= eos < vocab:
            raise ValueError(f"eos_token_id {eos} must lie in [0, vocab_size={vocab})")
        n = len(offsets) - 1
        lens = np.diff(offsets)
        check_ids(offsets, values, lens, eos, vocab)
        width = int(lens.max(initial=0)) + 1  # longest id + eos

        # Column-major padded matrix: cols[c][i] = token c of id i, eos at c == len, -1 after.
        cols: list[Any] = []
        for c in range(width):
            col = np.full(n, -1, dtype=np.int32)
            has = lens > c
            col[has] = values[offsets[:-1][has] + c]
            col[lens == c] = eos
            cols.append(col)

        order = sort_rows(cols, vocab)
        lens = lens[order]
        for c in range(width):
            cols[c] = cols[c][order]

        # first[i]: first column where sorted row i differs from row i - 1 (0 for row 0).
        first = np.full(n, width, dtype=np.int32)
        if n:
            first[0] = 0
        for c in range(width - 1, -1, -1):
            col = cols[c]
            first[1:][col[1:] != col[:-1]] = c
        dup = np.flatnonzero(first == width)
        if len(dup):
            a, b = sorted((int(order[dup[0] - 1]), int(order[dup[0]])))
            raise ValueError(
                f"documents {a} and {b} have the same identifier "
                f"{values[offsets[a] : offsets[a + 1]].tolist()} ({len(dup)} duplicate pair(s) in all)"
            )

        # Row i starts a node at column c (tree depth c + 1) iff first[i] <= c <= lens[i]. The
        # nodes of one depth in sorted-row order are breadth-first order with sorted children.
        n_nodes = 1 + int((lens - first + 1).sum())
        tok_dtype = np.uint16 if vocab <= 65535 else np.int32
        fc_dtype = np.int32 if n_nodes + 1 < 2**31 else np.int64
        token = np.zeros(n_nodes, dtype=tok_dtype)
        # first_child[u + 1] holds u's child count until the cumulative sum at the end
        first_child = np.zeros(n_nodes + 1, dtype=fc_dtype)
        leaf_nodes, leaf_docs = [], []
        prev_rows = np.zeros(min(n, 1), dtype=np.int64)  # the root covers every row
        prev_base, base = 0, 1
        columns: Any = range(width)
        if progress:
            from tqdm.auto import tqdm

            columns = tqdm(columns, desc="trie depths", unit="depth")
        for c in columns:
            starts = (first <= c) & (lens >= c)
            rows = np.flatnonzero(starts)
            k = len(rows)
            token[base : base + k] = cols[c][rows]
            # children of each previous-depth node: the new starts within its run of rows
            before = np.cumsum(starts, dtype=np.int64)[prev_rows] - starts[prev_rows]
            counts = np.diff(np.append(before, k))
            first_child[prev_base + 1 : prev_base + 1 + len(prev_rows)] = counts
            ends = lens[rows] == c
            leaf_nodes.append(base + np.flatnonzero(ends))
            leaf_docs.append(order[rows[ends]])
            cols[c] = None  # free as we go
            prev_rows, prev_base, base = rows, base, base + k
        assert base == n_nodes
        first_child[0] = 1
        np.cumsum(first_child, out=first_child)
        return cls(
            first_child=first_child,
            token=token,
            leaf_nodes=np.concatenate(leaf_nodes or [np.zeros(0, np.int64)]).astype(np.int32),
            leaf_docs=np.concatenate(leaf_docs or [np.zeros(0, np.int64)]).astype(np.int32),
            eos_token_id=eos,
            vocab_size=vocab,
            max_depth=width if n else 0,
        )

    @classmethod
    def from_docids(cls, docids: Any, progress: bool = False) -> DocidTrie:
        """The trie of an ``indexing.docids.base.Docids``; leaf docs are its row indexes."""
        return cls.build(docids.offsets, docids.values, docids.eos_token_id, docids.vocab_size, progress)

    # ------------------------------------------------------------ batched ops

    @property
    def max_degree(self) -> int:
        """The largest number of children of any node."""
        if self._max_degree is None:
            self._max_degree = int(np.diff(self.first_child).max(initial=0))
        return self._max_degree

    def start(self, n: int) -> np.ndarray:
        """``n`` root states."""
        return np.zeros(n, dtype=np.int64)

    def _live(self, states: np.ndarray) -> np.ndarray:
        return (states >= 0) & (states < self.n_nodes)

    def _blocks(self, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Child block ``[lo, hi)`` of every state; empty for dead or out-of-range states."""
        live = self._live(states)
        s = np.where(live, states, 0)
        lo = self.first_child[s].astype(np.int64)
        hi = np.where(live, self.first_child[s + 1], lo).astype(np.int64)
        return lo, hi

    def step(self, states: Any, tokens: Any) -> np.ndarray:
        """The child of each state along its token; -1 where there is none or the state is dead.

        ``tokens`` broadcasts against ``states``; the result (int64) has the broadcast shape.
        Tokens out of range simply give -1. A binary search inside each state's child block
        (numba; far faster than the same search vectorised in numpy).
        """
        states, tokens = np.asarray(states, dtype=np.int64), np.asarray(tokens, dtype=np.int64)
        shape = np.broadcast_shapes(states.shape, tokens.shape)
        flat_states, flat_tokens = broadcast_flat(states, shape), broadcast_flat(tokens, shape)
        out = step_kernel(np.asarray(self.first_child), np.asarray(self.token), flat_states, flat_tokens)
        return out.reshape(shape)

    def allowed(self, states: Any) -> tuple[np.ndarray, np.ndarray]:
        """Allowed next tokens of each state, CSR: ``(row_offsets [n + 1], tokens int64)``.

        Tokens of a row are sorted; rows of dead and leaf states are empty.
        """
        states = np.asarray(states, dtype=np.int64).ravel()
        lo, hi = self._blocks(states)
        counts = hi - lo
        row_offsets = np.zeros(len(states) + 1, dtype=np.int64)
        np.cumsum(counts, out=row_offsets[1:])
        total = int(row_offsets[-1])
        idx = np.repeat(lo - row_offsets[:-1], counts) + np.arange(total, dtype=np.int64)
        return row_offsets, self.token[idx].astype(np.int64)

    def allowed_mask(self, states: Any, vocab_size: int | None = None) -> np.ndarray:
        """Boolean ``[n, vocab_size]`` mask of the allowed next tokens of each state.

        ``vocab_size`` defaults to the trie's; a larger one (a model's padded vocabulary) is fine.
        Repeated states (all beams at the root on the first step) are filled once and copied.
        """
        width = self.vocab_size if vocab_size is None else int(vocab_size)
        if width < self.vocab_size:
            raise ValueError(f"vocab_size {width} is smaller than the trie's vocabulary ({self.vocab_size})")
        states = np.ascontiguousarray(np.asarray(states, dtype=np.int64).reshape(-1))
        if len(states) > 1:
            _, first, inverse = np.unique(states, return_index=True, return_inverse=True)
            source = first[inverse.reshape(-1)].astype(np.int64)
        else:
            source = np.arange(len(states), dtype=np.int64)
        mask = np.zeros((len(states), width), dtype=bool)
        mask_kernel(np.asarray(self.first_child), np.asarray(self.token), states, source, mask)
        repeated = np.flatnonzero(source != np.arange(len(states)))
        if len(repeated):
            mask[repeated] = mask[source[repeated]]
        return mask

    def is_leaf(self, states: Any) -> np.ndarray:
        """Whether each state is a leaf (reached by the end-of-id token)."""
        states = np.asarray(states, dtype=np.int64)
        live = self._live(states) & (states > 0)
        return live & (self.token[np.where(live, states, 0)] == self.eos_token_id)

    def doc(self, states: Any) -> np.ndarray:
        """The document index at each leaf state; -1 for any other state."""
        states = np.asarray(states, dtype=np.int64)
        if self.n_docs == 0:
            return np.full(states.shape, DEAD, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.leaf_nodes, states), self.n_docs - 1)
        hit = self.leaf_nodes[pos] == states
        return np.where(hit, self.leaf_docs[pos], DEAD).astype(np.int64)

    def lookup(self, tokens: Sequence[int]) -> int:
        """Document index of a full identifier (trailing eos optional); -1 if it is not one."""
        seq = [int(t) for t in tokens]
        if not seq or seq[-1] != self.eos_token_id:
            seq.append(self.eos_token_id)
        fc, tok = self.first_child, self.token
        node = 0
        for t in seq:
            if not 0 <= t < self.vocab_size:
                return DEAD
            lo, hi = int(fc[node]), int(fc[node + 1])
            j = lo + int(np.searchsorted(tok[lo:hi], t))
            if j >= hi or int(tok[j]) != t:
                return DEAD
            node = j
        return int(self.doc(np.array([node]))[0])

    def lookup_batch(self, tokens: np.ndarray) -> np.ndarray:
        """Document index of each row of ``tokens [n, L]``, -1 where a row is not an identifier.

        A row ends at its first eos (anything after it is ignored) or at its first -1 (padding);
        a row with neither is a full identifier without its eos.
        """
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.ndim != 2:
            raise ValueError(f"lookup_batch takes a 2-d [n, L] array, got shape {tokens.shape}")
        n = tokens.shape[0]
        states = self.start(n)
        done = np.zeros(n, dtype=bool)
        for c in range(tokens.shape[1]):
            if done.all():
                break
            t = tokens[:, c]
            t = np.where(t == -1, self.eos_token_id, t)
            states = np.where(done, states, self.step(states, t))
            done |= (t == self.eos_token_id) | (states < 0)
        states = np.where(done, states, self.step(states, self.eos_token_id))
        return self.doc(states)

    # ------------------------------------------------------- whole-trie views

    def parents(self) -> np.ndarray:
        """Parent node of every node (int64; -1 for the root), computed on demand."""
        parent = np.empty(self.n_nodes, dtype=np.int64)
        parent[0] = DEAD
        parent[1:] = np.repeat(np.arange(self.n_nodes, dtype=np.int64), np.diff(self.first_child))
        return parent

    def depths(self) -> np.ndarray:
        """Depth of every node (root 0), from the breadth-first level boundaries."""
        bounds = [0, 1]
        while bounds[-1] > bounds[-2]:
            bounds.append(int(self.first_child[bounds[-1]]) if bounds[-1] < self.n_nodes else bounds[-1])
        level_starts = np.array(bounds[:-1], dtype=np.int64)
        return np.searchsorted(level_starts, np.arange(self.n_nodes), side="right") - 1

    def sequences(self) -> tuple[np.ndarray, np.ndarray]:
        """All identifiers (without eos) in document order, as ``(offsets int64, values int32)``."""
        leaf = np.full(self.n_docs, DEAD, dtype=np.int64)
        leaf[self.leaf_docs] = self.leaf_nodes
        if np.any(leaf < 0):
            raise ArtifactError("trie documents are not numbered 0 .. n_docs - 1")
        parent = self.parents()
        lengths = self.depths()[leaf] - 1
        offsets = np.zeros(self.n_docs + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = np.empty(int(offsets[-1]), dtype=np.int32)
        cur, pos, left = parent[leaf], offsets[1:] - 1, lengths.copy()
        while np.any(left > 0):
            act = left > 0
            values[pos[act]] = self.token[cur[act]]
            cur = np.where(act, parent[np.maximum(cur, 0)], cur)
            pos, left = pos - 1, left - 1
        return offsets, values

    def nbytes(self) -> int:
        """Bytes held by the trie's arrays."""
        return sum(int(a.nbytes) for a in (self.first_child, self.token, self.leaf_nodes, self.leaf_docs))

    def __repr__(self) -> str:
        return (
            f"DocidTrie(n_docs={self.n_docs}, n_nodes={self.n_nodes}, max_depth={self.max_depth}, "
            f"vocab_size={self.vocab_size}, eos_token_id={self.eos_token_id}, "
            f"nbytes={self.nbytes() / 2**20:.1f} MiB)"
        )

    # ------------------------------------------------------------ persistence

    def info(self) -> dict[str, int]:
        return {
            "format": TRIE_FORMAT,
            "n_nodes": self.n_nodes,
            "n_docs": self.n_docs,
            "eos_token_id": self.eos_token_id,
            "vocab_size": self.vocab_size,
            "max_depth": self.max_depth,
        }

    def save(self, folder: Path) -> None:
        """Write the arrays (.npy) and ``trie.json`` into an existing folder."""
        folder = Path(folder)
        for name, file in TRIE_FILES.items():
            save_npy(folder, file, getattr(self, name))
        (folder / TRIE_JSON).write_text(json.dumps(self.info(), sort_keys=True) + "\n")

    @classmethod
    def load(cls, folder: Path, mmap: bool = False) -> DocidTrie:
        """Read what ``save`` wrote; ``mmap=True`` maps the arrays read-only instead of reading them."""
        folder = Path(folder)
        rebuild = "rebuild the trie"
        try:
            info = json.loads((folder / TRIE_JSON).read_text())
            arrays = {name: load_npy(folder, file, mmap=mmap) for name, file in TRIE_FILES.items()}
        except FileNotFoundError as err:
            raise ArtifactError(f"{folder}: trie file missing ({Path(err.filename).name}); {rebuild}") from None
        except (ValueError, json.JSONDecodeError) as err:
            raise ArtifactError(f"{folder}: damaged trie file ({err}); {rebuild}") from None
        if info.get("format") != TRIE_FORMAT:
            raise ArtifactError(f"{folder}: trie format {info.get('format')}, this genret reads {TRIE_FORMAT}")
        n_nodes, n_docs = int(info["n_nodes"]), int(info["n_docs"])
        fc, tok = arrays["first_child"], arrays["token"]
        problems = []
        if fc.shape != (n_nodes + 1,) or not np.issubdtype(fc.dtype, np.integer):
            problems.append(f"first_child has shape {fc.shape} {fc.dtype}, expected ({n_nodes + 1},) integers")
        elif n_nodes and (int(fc[0]) != 1 or int(fc[-1]) != n_nodes):
            problems.append("first_child does not start at 1 and end at n_nodes")
        if tok.shape != (n_nodes,) or not np.issubdtype(tok.dtype, np.integer):
            problems.append(f"token has shape {tok.shape} {tok.dtype}, expected ({n_nodes},) integers")
        for name in ("leaf_nodes", "leaf_docs"):
            if arrays[name].shape != (n_docs,):
                problems.append(f"{name} has shape {arrays[name].shape}, expected ({n_docs},)")
        if problems:
            raise ArtifactError(f"{folder}: inconsistent trie files: " + "; ".join(problems) + f"; {rebuild}")
        return cls(
            eos_token_id=info["eos_token_id"],
            vocab_size=info["vocab_size"],
            max_depth=info["max_depth"],
            **arrays,
        )

    def tensors(self, device: Any = "cpu") -> dict[str, torch.Tensor]:
        """The arrays as torch tensors on ``device``.

        ``first_child``, ``leaf_nodes``, ``leaf_docs`` are int64 (they mix with int64 states in
        index arithmetic and ``torch.searchsorted``); ``token`` is int32 (uint16 has little torch
        support; int32 is valid as an index and compares with int64 tokens).
        """
        import torch

        def put(a: np.ndarray, dtype: Any) -> torch.Tensor:
            return torch.from_numpy(np.array(a, dtype=dtype)).to(device)

        return {
            "first_child": put(self.first_child, np.int64),
            "token": put(self.token, np.int32),
            "leaf_nodes": put(self.leaf_nodes, np.int64),
            "leaf_docs": put(self.leaf_docs, np.int64),
        }
