"""k-means and DSI hierarchical codes against brute force and known answers."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexing.kmeans import hierarchical_codes, kmeans


def blobs(n_per: int, centers: np.ndarray, scale: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.concatenate([c + scale * rng.standard_normal((n_per, centers.shape[1])) for c in centers])
    return x.astype(np.float32), np.repeat(np.arange(len(centers)), n_per)


def brute_nearest(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    out = []
    for point in x.astype(np.float64):
        dists = [float(((point - c) ** 2).sum()) for c in centers]
        out.append(int(np.argmin(dists)))
    return np.array(out)


def check_codes(codes: list[list[int]], k: int, c: int, max_depth: int | None = None) -> None:
    """Unique, prefix-free; inner codes < k; each leaf (codes sharing all but the last) has last
    codes 0..size-1 and size <= c."""
    tuples = [tuple(code) for code in codes]
    assert len(set(tuples)) == len(tuples)
    as_set = set(tuples)
    for t in tuples:
        for cut in range(1, len(t)):
            assert t[:cut] not in as_set, f"{t[:cut]} is a prefix of {t}"
    leaves: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for t in tuples:
        assert all(0 <= v < k for v in t[:-1])
        if max_depth is not None:
            assert len(t) <= max_depth + 1
        leaves[t[:-1]].append(t[-1])
    for prefix, last in leaves.items():
        assert sorted(last) == list(range(len(last))), prefix
        if max_depth is None or len(prefix) < max_depth:
            assert len(last) <= c, (prefix, len(last))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("n,k,d", [(7, 3, 2), (20, 4, 3), (50, 5, 2), (5, 5, 4)])
def test_kmeans_labels_are_nearest_centers(n, k, d, seed):
    x = np.random.default_rng(100 + seed).standard_normal((n, d))
    labels, centers = kmeans(x, k, seed)
    assert labels.shape == (n,) and centers.shape == (k, d)
    np.testing.assert_array_equal(labels, brute_nearest(x, centers))


def test_kmeans_converged_centers_are_means():
    x, _ = blobs(30, np.array([[0, 0], [5, 5], [0, 5]], dtype=float), scale=0.5)
    labels, centers = kmeans(x, 3, seed=0, n_iter=200)
    for j in range(3):
        np.testing.assert_allclose(centers[j], x[labels == j].mean(0), rtol=1e-5, atol=1e-6)


def test_kmeans_recovers_separated_blobs():
    x, truth = blobs(40, np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]], dtype=float))
    labels, _ = kmeans(x, 4, seed=5)
    # The same partition (up to renaming clusters).
    assert len({(a, b) for a, b in zip(truth, labels, strict=True)}) == 4


def test_kmeans_deterministic_for_seed():
    x = np.random.default_rng(0).standard_normal((300, 8))
    a = kmeans(x, 6, seed=3)
    b = kmeans(x, 6, seed=3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    others = [kmeans(x, 6, seed=s)[1] for s in range(4, 8)]
    assert any(not np.allclose(a[1], o) for o in others)


def test_kmeans_degenerate_inputs():
    same = np.ones((10, 3))
    labels, centers = kmeans(same, 4, seed=0)
    assert labels.shape == (10,) and np.isfinite(centers).all()
    labels, centers = kmeans(np.zeros((2, 3)), 5, seed=0)  # k capped at n
    assert centers.shape == (2, 3)
    labels, centers = kmeans(np.zeros((0, 3)), 3, seed=0)
    assert labels.shape == (0,)


def test_kmeans_sampled_fit_assigns_every_point():
    x = np.random.default_rng(1).standard_normal((400, 4))
    labels, centers = kmeans(x, 5, seed=0, sample_size=60)
    np.testing.assert_array_equal(labels, brute_nearest(x, centers))
    again = kmeans(x, 5, seed=0, sample_size=60)
    np.testing.assert_array_equal(labels, again[0])


def test_hierarchical_blobs_share_first_code():
    x, truth = blobs(25, np.array([[0, 0], [20, 0], [0, 20]], dtype=float))
    codes = hierarchical_codes(x, k=3, c=10, seed=0)
    check_codes(codes, 3, 10)
    first = np.array([code[0] for code in codes])
    for blob in range(3):
        assert len(set(first[truth == blob])) == 1
    assert len(set(first)) == 3


def test_hierarchical_single_leaf_and_small_inputs():
    x = np.random.default_rng(0).standard_normal((12, 3))
    assert hierarchical_codes(x, k=4, c=12) == [[i] for i in range(12)]
    assert hierarchical_codes(x, k=4, c=100) == [[i] for i in range(12)]
    assert hierarchical_codes(x[:1], k=4, c=1) == [[0]]
    assert hierarchical_codes(x[:0], k=4, c=1) == []
    codes = hierarchical_codes(x[:3], k=10, c=1)  # fewer docs than k
    check_codes(codes, 10, 1)


def test_hierarchical_identical_embeddings_split_evenly():
    x = np.zeros((100, 4))
    codes = hierarchical_codes(x, k=3, c=5, seed=0)
    check_codes(codes, 3, 5)
    # Even split by index: the first code is monotone in the row.
    first = [code[0] for code in codes]
    assert first == sorted(first)
    codes = hierarchical_codes(np.zeros((9, 2)), k=2, c=1)
    check_codes(codes, 2, 1)


def test_hierarchical_deep_tree_and_max_depth():
    x = np.random.default_rng(0).standard_normal((600, 2))
    deep = hierarchical_codes(x, k=2, c=1, seed=0)
    check_codes(deep, 2, 1)
    assert max(len(c) for c in deep) >= 10
    capped = hierarchical_codes(x, k=2, c=1, seed=0, max_depth=3)
    check_codes(capped, 2, 1, max_depth=3)
    assert max(len(c) for c in capped) == 4
    assert hierarchical_codes(x[:5], k=2, c=1, max_depth=0) == [[i] for i in range(5)]


def test_hierarchical_deterministic_and_seeded():
    x = np.random.default_rng(7).standard_normal((300, 5))
    a = hierarchical_codes(x, k=4, c=10, seed=1)
    assert a == hierarchical_codes(x, k=4, c=10, seed=1)
    assert a != hierarchical_codes(x, k=4, c=10, seed=2)


def test_hierarchical_rejects_bad_parameters():
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match="k must be"):
        hierarchical_codes(x, k=1, c=2)
    with pytest.raises(ValueError, match="c must be"):
        hierarchical_codes(x, k=2, c=0)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 60),
    d=st.integers(1, 4),
    k=st.integers(2, 6),
    c=st.integers(1, 8),
    levels=st.integers(1, 3),
    seed=st.integers(0, 3),
)
def test_hierarchical_codes_property(n, d, k, c, levels, seed):
    # Few distinct values per coordinate, so duplicates and ties are frequent.
    x = np.random.default_rng(seed).integers(0, levels, size=(n, d)).astype(np.float64)
    codes = hierarchical_codes(x, k, c, seed)
    assert len(codes) == n
    check_codes(codes, k, c)


def test_hierarchical_codes_scifact_sized_input():
    x = np.random.default_rng(0).standard_normal((5183, 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    codes = hierarchical_codes(x, k=10, c=100, seed=0)
    check_codes(codes, 10, 100)
