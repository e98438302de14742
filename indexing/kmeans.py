"""Seeded k-means and DSI's hierarchical clustering into semantic identifiers (numpy only).

``kmeans`` is k-means++ initialisation followed by Lloyd iterations, deterministic for a seed.
``hierarchical_codes`` is the recursion of DSI (Tay et al. 2022) and NCI: cluster all documents
into ``k`` clusters, recurse into every cluster with more than ``c`` documents, and give each
document of a leaf (``<= c`` documents) its position in the leaf as the last code.
"""

from __future__ import annotations

import numpy as np

# Above this many points, k-means is fitted on a seeded sample of this size and then every
# point is assigned to its nearest center.
SAMPLE_SIZE = 20_000
# Rows per block when computing distances to the centers (bounds memory to CHUNK x k).
CHUNK = 65_536


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def _assign(x: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest center of every row and its squared distance (ties go to the lowest index)."""
    labels = np.empty(len(x), dtype=np.int64)
    dists = np.empty(len(x), dtype=np.float64)
    c_norms = _sq_norms(centers)
    for start in range(0, len(x), CHUNK):
        block = np.asarray(x[start : start + CHUNK], dtype=np.float64)
        d = _sq_norms(block)[:, None] - 2.0 * (block @ centers.T) + c_norms[None, :]
        lab = np.argmin(d, axis=1)
        labels[start : start + len(block)] = lab
        dists[start : start + len(block)] = np.maximum(d[np.arange(len(block)), lab], 0.0)
    return labels, dists


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each new center drawn with probability proportional to D(x)^2."""
    n = len(x)
    idx = [int(rng.integers(n))]
    closest = _sq_norms(x - x[idx[0]])
    for _ in range(1, k):
        total = closest.sum()
        if total <= 0.0:  # every point coincides with a center: take unused points in order
            unused = np.setdiff1d(np.arange(n), idx)
            new = int(unused[0]) if len(unused) else idx[-1]
        else:
            r = rng.random() * total
            new = int(np.searchsorted(np.cumsum(closest), r, side="right"))
            new = min(new, n - 1)
        idx.append(new)
        closest = np.minimum(closest, _sq_norms(x - x[new]))
    return x[idx].copy()


def _lloyd(x: np.ndarray, centers: np.ndarray, n_iter: int) -> tuple[np.ndarray, np.ndarray]:
    k, d = centers.shape
    labels = None
    for _ in range(max(n_iter, 1)):
        new_labels, dists = _assign(x, centers)
        counts = np.bincount(new_labels, minlength=k)
        # Re-seed empty clusters deterministically with the points farthest from their centers.
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            order = np.argsort(-dists, kind="stable")
            order = order[dists[order] > 0.0][: len(empty)]
            if not len(order):  # every point sits on a center: nothing can improve
                labels = new_labels
                break
            for j, point in zip(empty, order, strict=False):
                centers[j] = x[point]
                new_labels[point] = j
            counts = np.bincount(new_labels, minlength=k)
        if labels is not None and np.array_equal(labels, new_labels) and not len(empty):
            break
        labels = new_labels
        order = np.argsort(labels, kind="stable")
        nonempty = np.flatnonzero(counts)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[nonempty]
        sums = np.add.reduceat(x[order], starts, axis=0)
        centers[nonempty] = sums / counts[nonempty, None]
    labels, _ = _assign(x, centers)
    return labels, centers


def kmeans(
    x: np.ndarray, k: int, seed: int = 0, n_iter: int = 50, sample_size: int = SAMPLE_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster the rows of ``x`` into ``k`` clusters; returns ``(labels int64 (n,), centers (k, d))``.

    k-means++ initialisation with ``np.random.default_rng(seed)``, then at most ``n_iter`` Lloyd
    iterations (stopping early when no label changes). Empty clusters are re-seeded with the
    points farthest from their centers. For more than ``sample_size`` points the centers are
    fitted on a seeded sample and every point is then assigned to its nearest center.
    Labels are the nearest center of every point (ties to the lowest index). ``k`` is capped at
    ``n``; when the points have fewer than ``k`` distinct values some clusters may stay empty.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"kmeans needs a 2-d array, got shape {x.shape}")
    n = len(x)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros((0, x.shape[1]))
    k = min(k, n)
    rng = np.random.default_rng(seed)
    if n > sample_size:
        sample = np.sort(rng.choice(n, size=sample_size, replace=False))
        fit = np.asarray(x[sample], dtype=np.float64)
    else:
        fit = np.asarray(x, dtype=np.float64)
    centers = _kmeans_pp(fit, k, rng)
    labels, centers = _lloyd(fit, centers, n_iter)
    if n > sample_size:
        labels, _ = _assign(x, centers)
    return labels, centers


def _split(x: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """Positions (into ``x``) of each non-empty cluster, in cluster order; always >= 2 groups."""
    n = len(x)
    k = min(k, n)
    labels, _ = kmeans(x, k, seed)
    counts = np.bincount(labels, minlength=k)
    if np.count_nonzero(counts) < 2:
        # k-means cannot split (identical points): split evenly by index so recursion terminates.
        return [part for part in np.array_split(np.arange(n), k) if len(part)]
    order = np.argsort(labels, kind="stable")
    bounds = np.cumsum(counts)[:-1]
    return [part for part in np.split(order, bounds) if len(part)]


def hierarchical_codes(
    x: np.ndarray, k: int, c: int, seed: int = 0, max_depth: int | None = None, progress: bool = False
) -> list[list[int]]:
    """DSI's semantic codes: one list of ints per row of ``x``, unique and prefix-free.

    All rows are clustered into ``k`` clusters (codes ``0..k'-1`` numbering the non-empty
    clusters in order); every cluster with more than ``c`` rows is clustered again, and a leaf
    with ``<= c`` rows gives its rows the codes ``0..size-1`` in row order. With ``c >= n`` there
    is a single leaf. ``max_depth`` caps the number of clustering levels: a node at that depth
    becomes a leaf whatever its size (so leaves may then exceed ``c``). When k-means cannot split
    a node (identical embeddings), it is split evenly by row order instead. Iterative, so deep
    trees do not touch the Python stack.
    """
    if k < 2:
        raise ValueError(f"k must be >= 2 (clusters per level), got {k}")
    if c < 1:
        raise ValueError(f"c must be >= 1 (documents per leaf), got {c}")
    if max_depth is not None and max_depth < 0:
        raise ValueError(f"max_depth must be >= 0 or None, got {max_depth}")
    x = np.asarray(x)
    n = len(x)
    codes: list[list[int]] = [[] for _ in range(n)]
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, desc="semantic ids", unit="doc")
        except ImportError:
            bar = None
    stack: list[tuple[np.ndarray, list[int]]] = [(np.arange(n), [])] if n else []
    while stack:
        rows, prefix = stack.pop()
        if len(rows) <= c or (max_depth is not None and len(prefix) >= max_depth):
            for pos, row in enumerate(rows):
                codes[int(row)] = [*prefix, pos]
            if bar is not None:
                bar.update(len(rows))
            continue
        groups = _split(x[rows], k, seed)
        # Pushed in reverse so that clusters are processed in order (only matters for progress).
        for code in range(len(groups) - 1, -1, -1):
            stack.append((rows[groups[code]], [*prefix, code]))
    if bar is not None:
        bar.close()
    return codes
