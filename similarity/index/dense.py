"""In-memory symmetric distance matrix with incrementally maintained top-k neighbour lists.

``DistanceMatrix`` holds, for N products:

- ``ids``: int64 product ids (non-negative, unique);
- ``vectors``: the raw float32 embeddings (N x dim);
- ``distances``: a symmetric float32 N x N matrix with an exact zero diagonal;
- every product's top-k neighbour list (ids and distances, sorted by (distance, id)).

Distances are computed the vectorised way in float64 (squared norms + one matrix product)
and stored as float32; every stored value equals the canonical distance of
``similarity.index.exact`` (entries the norm formula cannot decide are recomputed from the
difference vectors), so identical vectors are at distance exactly 0, exact ties stay exact
ties, and the top-k layout (``similarity.index.topk``) reports the very same lists.
``metric="cosine"`` means 1 - cosine similarity, computed on L2-normalised copies (the raw
vectors are what is stored and returned).

Ordering everywhere is by (float32 distance, product id): ties are broken by the smaller id.

Storage is capacity based: a built or loaded matrix keeps ``headroom`` (5 %, at least 64
rows) of spare rows, and grows geometrically (x1.25) up to ``max_items`` when they run out,
so adding one product does not copy the N x N matrix; removal moves the last row/column
into the hole (O(N)). The float64 working copy of the vectors (normalised for
cosine) is kept next to the raw float32 ones, so one addition costs one matrix-vector
product against the N stored vectors.

Changed sets: ``upsert`` and ``remove`` return the ids of exactly the products whose
neighbour list changed, where a list is the ordered sequence of (neighbour id, distance)
pairs. Products added by the call are always in the set (even a lone product whose list
stays empty); upserting a vector bit-identical to the stored one is a no-op.

Duplicated ids within one ``upsert`` call: the last occurrence wins.

This module holds the class and its constructors (``build``, ``from_arrays``); its parts are
``dense_inputs`` (checking ids and vectors), ``dense_storage`` (the arrays and their growth),
``dense_distances`` (computing distances and top-k lists), ``dense_updates`` (upsert and
removal) and ``dense_reads`` (neighbours, queries and the other reads).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO, Any

import numpy as np

from similarity.errors import MatrixError, MatrixFullError
from similarity.index.dense_inputs import (
    METRICS,
    UnknownProductError,
    as_ids,
    check_int,
    is_int,
    last_wins,
    validate_vectors,
)
from similarity.index.dense_reads import DenseReads
from similarity.index.dense_storage import format_bytes, memory_needed, read_exact
from similarity.index.dense_updates import DenseUpdates
from similarity.index.inplace import adopt_state
from similarity.model.spec import EMBEDDING_DIM

__all__ = [
    "METRICS",
    "DistanceMatrix",
    "UnknownProductError",
    "as_ids",
    "check_int",
    "is_int",
    "last_wins",
    "memory_needed",
    "read_exact",
    "validate_vectors",
]


class DistanceMatrix(DenseUpdates, DenseReads):
    """Symmetric float32 distance matrix over product vectors, with top-k lists kept current.

    ``version`` and ``sealed`` are bookkeeping for ``similarity.index.store.MatrixStore``: the
    (generation, seq) of the persisted state this object reflects, or None when it was not
    loaded from a store.
    """

    layout = "dense"

    def __repr__(self) -> str:
        return (
            f"DistanceMatrix(n={self._n}, dim={self.dim}, metric={self.metric!r}, k={self.k}, "
            f"max_items={self.max_items}, capacity={self._cap}, version={self.version})"
        )

    @classmethod
    def build(
        cls,
        ids: Sequence[int] | np.ndarray,
        vectors: Any,
        *,
        metric: str = "euclidean",
        k: int = 10,
        max_items: int = 20_000,
        dim: int = EMBEDDING_DIM,
        headroom: float = 0.05,
    ) -> DistanceMatrix:
        """Full rebuild from scratch, vectorised in row blocks.

        Peak memory is the final matrix (with its ``headroom`` spare rows) plus the float64
        working vectors plus one block of rows (``BLOCK_BYTES`` of float64 and its
        by-products); only the upper triangle is computed, then mirrored. Duplicate ids: the
        last wins.
        """
        m = cls(dim=dim, metric=metric, k=k, max_items=max_items, headroom=headroom)
        ids_arr = as_ids(ids)
        vecs = m._as_vectors(vectors, ids_arr.size)
        keep = last_wins(ids_arr)
        ids_arr, vecs = ids_arr[keep], vecs[keep]
        n = ids_arr.size
        if n > m.max_items:
            raise MatrixFullError(
                f"cannot build a matrix of {n} products: the limit is max_items={m.max_items}; "
                f"it would need about {format_bytes(memory_needed(n, m.dim))} of memory"
            )
        m._set_rows(ids_arr, vecs)
        del vecs
        m._fill_distances(n)
        m._n = n
        m._recompute_rows(np.arange(n))
        return m

    @classmethod
    def from_arrays(
        cls,
        ids: np.ndarray,
        vectors: np.ndarray,
        distances: np.ndarray | IO[bytes],
        nbr_ids: np.ndarray | None = None,
        nbr_dist: np.ndarray | None = None,
        *,
        metric: str = "euclidean",
        k: int = 10,
        max_items: int = 20_000,
        dim: int = EMBEDDING_DIM,
        headroom: float = 0.05,
    ) -> DistanceMatrix:
        """Restore persisted arrays without recomputing distances.

        ``distances`` is a float32 N x N array, or a binary stream positioned at N x N
        little-endian float32 values in C order (read straight into the matrix's storage,
        so loading never holds two copies). The top-k tables are recomputed when missing or
        built for another k.
        """
        m = cls(dim=dim, metric=metric, k=k, max_items=max_items, headroom=headroom)
        ids_arr = as_ids(ids)
        n = ids_arr.size
        vecs = m._as_vectors(vectors, n)
        if np.unique(ids_arr).size != n:
            raise MatrixError("ids contain duplicates")
        m._set_rows(ids_arr, vecs)
        del vecs
        m._restore_distances(distances, n)
        m._n = n
        m._restore_tables(nbr_ids, nbr_dist)
        return m

    def _restore_distances(self, distances: np.ndarray | IO[bytes], n: int) -> None:
        if isinstance(distances, np.ndarray):
            if distances.shape != (n, n) or distances.dtype != np.float32:
                raise MatrixError(
                    f"distances must be float32 of shape ({n}, {n}), "
                    f"got {distances.dtype} {distances.shape}"
                )
            self._d[:n, :n] = distances
        else:
            self._read_distances(distances, n)
        if n and (np.diagonal(self._d[:n, :n]) != 0).any():
            raise MatrixError("distances must have a zero diagonal")

    def _restore_tables(self, nbr_ids: np.ndarray | None, nbr_dist: np.ndarray | None) -> None:
        """Take the stored top-k tables if they fit this matrix's k, else recompute them."""
        n = self._n
        if (
            nbr_ids is not None
            and nbr_dist is not None
            and nbr_ids.shape == (n, self.k)
            and nbr_dist.shape == (n, self.k)
            and nbr_ids.dtype == np.int64
            and nbr_dist.dtype == np.float32
        ):
            self._nbr_ids[:n] = nbr_ids
            self._nbr_dist[:n] = nbr_dist
        else:
            self._recompute_rows(np.arange(n))

    def replace_state(self, other: Any) -> None:
        """Make this object hold ``other``'s state (used to reload in place)."""
        adopt_state(self, other)
