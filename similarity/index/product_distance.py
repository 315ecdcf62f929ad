"""Distances between products that hold one or more photos, from their photos' vectors.

Photos are stored product by product: product ``i`` owns the rows ``starts[i]`` to
``starts[i] + counts[i] - 1`` of the photo array (:class:`PhotoGroups`), at least one each.
A photo-to-photo distance matrix (query photos x catalog photos, squared euclidean as the
index compares) reduces to a product-to-product one:

- :func:`min_pair`: the smallest distance over the two products' photo pairs (a one-photo
  query: its distance to the product's nearest photo);
- :func:`mean_pair`: the mean of the pairwise distances;
- :func:`chamfer`: each photo's distance to the other product's nearest photo, averaged over
  the photos, both ways (symmetric); for a one-photo query, the mean of the two above;
- :func:`first_photo`: the first photo's only (a product as one photo, the baseline);
- :func:`mean_vectors`: one vector per product, the L2-normalised mean of its photos, compared
  as one photo; :func:`product_vectors`, the catalog's definition, scales that mean direction
  to the mean length of the photos' vectors, so a one-photo product keeps its photo's vector
  exactly and, in a space of unit vectors, it is the L2-normalised mean.

Mean pairwise squared distance needs no photo pairs: it is ``|mean_a - mean_b|^2 + spread_a +
spread_b`` (:func:`mean_pair_from_centroids`, ``spread`` = mean squared distance of a
product's photos to their unnormalised mean), so one vector and one number per product keep
it exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "PhotoGroups",
    "centroids",
    "chamfer",
    "first_photo",
    "mean_pair",
    "mean_pair_from_centroids",
    "mean_vectors",
    "min_pair",
    "product_vectors",
    "spreads",
]


@dataclass(frozen=True)
class PhotoGroups:
    """Which rows of a photo array belong to which product (consecutive rows, >= 1 each)."""

    starts: np.ndarray  # (N,) int64
    counts: np.ndarray  # (N,) int64

    @classmethod
    def from_counts(cls, counts: Sequence[int] | np.ndarray) -> PhotoGroups:
        c = np.asarray(counts, dtype=np.int64)
        if c.ndim != 1 or (c < 1).any():
            raise ValueError("every product needs at least one photo")
        return cls(np.concatenate([[0], np.cumsum(c)[:-1]]).astype(np.int64), c)

    @classmethod
    def single(cls, n: int) -> PhotoGroups:
        """``n`` products of one photo each (e.g. photo queries)."""
        return cls.from_counts(np.ones(n, dtype=np.int64))

    @property
    def n_photos(self) -> int:
        return int(self.counts.sum())

    def __len__(self) -> int:
        return int(self.counts.size)


def _check(d: np.ndarray, rows: PhotoGroups, cols: PhotoGroups) -> np.ndarray:
    d = np.asarray(d, dtype=np.float64)
    if d.shape != (rows.n_photos, cols.n_photos):
        raise ValueError(f"distances {d.shape} for {rows.n_photos} x {cols.n_photos} photos")
    return d


def min_pair(d: np.ndarray, rows: PhotoGroups, cols: PhotoGroups) -> np.ndarray:
    """(rows x cols products) smallest photo-pair distance."""
    d = _check(d, rows, cols)
    return np.minimum.reduceat(np.minimum.reduceat(d, cols.starts, axis=1), rows.starts, axis=0)


def mean_pair(d: np.ndarray, rows: PhotoGroups, cols: PhotoGroups) -> np.ndarray:
    """(rows x cols products) mean photo-pair distance."""
    d = _check(d, rows, cols)
    sums = np.add.reduceat(np.add.reduceat(d, cols.starts, axis=1), rows.starts, axis=0)
    return sums / (rows.counts[:, None] * cols.counts[None, :])


def chamfer(d: np.ndarray, rows: PhotoGroups, cols: PhotoGroups) -> np.ndarray:
    """(rows x cols products) half the sum of: the mean over the row product's photos of their
    nearest col-product photo, and the same the other way."""
    d = _check(d, rows, cols)
    row_side = np.add.reduceat(np.minimum.reduceat(d, cols.starts, axis=1), rows.starts, axis=0)
    col_side = np.add.reduceat(np.minimum.reduceat(d, rows.starts, axis=0), cols.starts, axis=1)
    return (row_side / rows.counts[:, None] + col_side / cols.counts[None, :]) / 2


def first_photo(d: np.ndarray, rows: PhotoGroups, cols: PhotoGroups) -> np.ndarray:
    """(rows x cols products) distance between the products' first photos."""
    return _check(d, rows, cols)[np.ix_(rows.starts, cols.starts)]


def centroids(vectors: np.ndarray, groups: PhotoGroups) -> np.ndarray:
    """(N, D) unnormalised mean of every product's photo vectors."""
    v = np.asarray(vectors, dtype=np.float64)
    if v.shape[0] != groups.n_photos:
        raise ValueError(f"{v.shape[0]} vectors for {groups.n_photos} photos")
    return np.add.reduceat(v, groups.starts, axis=0) / groups.counts[:, None]


def mean_vectors(vectors: np.ndarray, groups: PhotoGroups) -> np.ndarray:
    """(N, D) L2-normalised mean of every product's photo vectors: one vector per product."""
    m = centroids(vectors, groups)
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)


def product_vectors(vectors: np.ndarray, groups: PhotoGroups) -> np.ndarray:
    """(N, D) one vector per product: the direction of its photos' mean at their mean length
    (float64; a one-photo product's row is its photo's vector)."""
    v = np.asarray(vectors, dtype=np.float64)
    m = centroids(v, groups)
    length = np.add.reduceat(np.linalg.norm(v, axis=1), groups.starts) / groups.counts
    norm = np.linalg.norm(m, axis=1)
    scale = np.divide(length, norm, out=np.zeros_like(norm), where=norm > 1e-12)
    out = m * scale[:, None]
    single = groups.counts == 1
    out[single] = v[groups.starts[single]]
    return out


def spreads(vectors: np.ndarray, groups: PhotoGroups) -> np.ndarray:
    """(N,) mean squared distance of every product's photos to their unnormalised mean."""
    v = np.asarray(vectors, dtype=np.float64)
    own = np.repeat(centroids(v, groups), groups.counts, axis=0)
    return np.add.reduceat(((v - own) ** 2).sum(1), groups.starts) / groups.counts


def mean_pair_from_centroids(a: np.ndarray, spread_a: np.ndarray, b: np.ndarray, spread_b: np.ndarray
                             ) -> np.ndarray:
    """:func:`mean_pair` of squared euclidean distances from one centroid and one spread per
    product (the variance decomposition)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    d = np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)
    return d + np.asarray(spread_a)[:, None] + np.asarray(spread_b)[None, :]
