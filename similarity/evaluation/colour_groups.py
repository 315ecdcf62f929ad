"""A catalog's colour groups, found in its own colour descriptors (no colour label needed).

Each product's colour is its descriptor's a*b* distribution (lightness summed out: shading
and lighting move it within one garment), compared by Hellinger distance. The groups are the
k-means clusters of those distributions for the k in 2..``MAX_GROUPS`` with the best mean
silhouette, among the clusterings whose closest two centres are at least ``MIN_SEPARATION``
apart: the Hellinger distance between two plain colours ``MIN_DELTA_E`` apart in a*b*, a
difference a shopper sees at a glance. When no clustering separates its groups that far (a
catalog of grey garments), the catalog is one colour group. A product without
a descriptor (all zeros) is a group of its own kind, -1.
"""

from __future__ import annotations

import numpy as np

from similarity.embedding.colour import COLOUR_DIM, axis_shares

__all__ = ["MAX_GROUPS", "MIN_DELTA_E", "MIN_SEPARATION", "ab_distributions", "colour_groups"]

MAX_GROUPS = 16
MIN_DELTA_E = 10.0
_AB_CELLS = 49  # the descriptor's 7 x 7 a*b* grid (similarity/embedding/colour.py)
_RESTARTS = 4
_ITERATIONS = 50


def ab_distributions(colours: np.ndarray) -> np.ndarray:
    """(N, 49) float64: the square roots of each descriptor's a*b* shares (unit rows, so that
    euclidean distance is the Hellinger distance; all zeros for a missing descriptor)."""
    c = np.asarray(colours, dtype=np.float64).reshape(-1, COLOUR_DIM)
    mass = (c * c).reshape(c.shape[0], -1, _AB_CELLS).sum(axis=1)  # Hellinger: squares are shares
    total = mass.sum(axis=1, keepdims=True)
    return np.sqrt(np.divide(mass, total, out=np.zeros_like(mass), where=total > 0))


def _plain_colour(a: float) -> np.ndarray:
    _, sa, sb = axis_shares(np.array([[50.0, a, 0.0]]))
    return np.sqrt((sa[0][:, None] * sb[0][None, :]).ravel())


MIN_SEPARATION = float(np.linalg.norm(_plain_colour(0.0) - _plain_colour(MIN_DELTA_E)))


def _sq_distances(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(N, k) squared distances of unit rows to the centres."""
    return np.maximum(1.0 - 2.0 * (x @ centres.T) + (centres * centres).sum(axis=1), 0.0)


def _kmeans(x: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """(labels, centres, inertia) of Lloyd's k-means from a k-means++ start."""
    centres = x[[rng.integers(len(x))]]
    for _ in range(1, k):
        d2 = _sq_distances(x, centres).min(axis=1)
        p = d2 / d2.sum() if d2.sum() > 0 else None
        centres = np.vstack([centres, x[rng.choice(len(x), p=p)]])
    for _ in range(_ITERATIONS):
        labels = _sq_distances(x, centres).argmin(axis=1)
        onehot = np.eye(k)[labels]
        counts = onehot.sum(axis=0)[:, None]
        moved = np.where(counts > 0, (onehot.T @ x) / np.maximum(counts, 1), centres)
        if np.allclose(moved, centres):
            break
        centres = moved
    inertia = float(_sq_distances(x, centres)[np.arange(len(x)), labels].sum())
    return labels, centres, inertia


def _silhouette(distances: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Mean silhouette (a product alone in its cluster scores 0)."""
    onehot = np.eye(k)[labels]
    sizes = onehot.sum(axis=0)
    sums = distances @ onehot  # (N, k): summed distance to each cluster
    own = sizes[labels]
    a = sums[np.arange(labels.size), labels] / np.maximum(own - 1, 1)
    other = np.where(onehot > 0, np.inf, sums / np.maximum(sizes, 1))
    other[:, sizes == 0] = np.inf
    b = other.min(axis=1)
    s = np.where(own > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(s.mean())


def _separated(centres: np.ndarray) -> bool:
    gaps = np.sqrt(((centres[:, None] - centres[None]) ** 2).sum(-1))
    return bool(gaps[np.triu_indices(len(centres), 1)].min() >= MIN_SEPARATION)


def _best_kmeans(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, k])
    runs = [_kmeans(x, k, rng) for _ in range(_RESTARTS)]
    labels, centres, _ = min(runs, key=lambda run: run[2])
    return labels, centres


def colour_groups(colours: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """(N,) int64 colour group of each descriptor (see the module): 0 for every product of a
    catalog with one colour group, -1 for a missing descriptor."""
    x = ab_distributions(colours)
    present = np.flatnonzero(x.sum(axis=1) > 0)
    groups = np.full(x.shape[0], -1, dtype=np.int64)
    groups[present] = 0
    points = x[present]
    distances = np.sqrt(np.maximum(2.0 - 2.0 * (points @ points.T), 0.0))
    best = -np.inf
    for k in range(2, min(MAX_GROUPS, points.shape[0] - 1) + 1):
        labels, centres = _best_kmeans(points, k, seed)
        if not _separated(centres):
            continue
        score = _silhouette(distances, labels, k)
        if score > best:
            best, groups[present] = score, labels
    return groups
