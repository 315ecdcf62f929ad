"""Reads of the dense layout: membership, ids, vectors and distances, a product's neighbours,
queries by vector, the holders of products, and the whole top-k table."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from similarity.index.dense_distances import DenseDistances, topk_block
from similarity.index.dense_inputs import UnknownProductError, as_ids, check_int, is_int


class DenseReads(DenseDistances):
    """Everything that reads the matrix without changing it."""

    def __len__(self) -> int:
        return self._n

    def __contains__(self, product_id: object) -> bool:
        if not is_int(product_id):
            return False
        return int(product_id) in self._index

    @property
    def ids(self) -> np.ndarray:
        """Product ids in row order (a copy, int64)."""
        return self._ids[: self._n].copy()

    @property
    def vectors(self) -> np.ndarray:
        """Read-only view of the raw float32 vectors (N x dim), in row order."""
        v = self._vecs[: self._n]
        v.flags.writeable = False
        return v

    @property
    def distances(self) -> np.ndarray:
        """Read-only view of the N x N float32 distance matrix, in row order."""
        d = self._d[: self._n, : self._n]
        d.flags.writeable = False
        return d

    def index_of(self, product_id: int) -> int:
        """Row of ``product_id``; UnknownProductError (a KeyError) if absent."""
        if is_int(product_id):
            row = self._index.get(int(product_id))
            if row is not None:
                return row
        raise UnknownProductError(f"product {product_id!r} is not in the matrix")

    def vector(self, product_id: int) -> np.ndarray:
        """The stored float32 vector of ``product_id`` (a copy)."""
        return self._vecs[self.index_of(product_id)].copy()

    def neighbours(self, product_id: int, k: int | None = None) -> list[tuple[int, float]]:
        """Top-k (id, distance) of a product, itself excluded, sorted by (distance, id)."""
        i = self.index_of(product_id)
        k = self.k if k is None else self._check_k(k)
        if k <= self.k:
            nid, nd = self._nbr_ids[i, :k], self._nbr_dist[i, :k]
        else:
            n = self._n
            block = self._d[i : i + 1, :n].copy()
            block[0, i] = np.inf
            nid, nd = (a[0] for a in topk_block(block, self._ids[:n], min(k, n - 1)))
        keep = nid >= 0
        return list(zip(nid[keep].tolist(), nd[keep].tolist(), strict=True))

    def query(
        self, vector: Any, k: int = 10, exclude: Iterable[int] = ()
    ) -> list[tuple[int, float]]:
        """Top-k (id, distance) for any vector, same metric, sorted by (distance, id)."""
        k = self._check_k(k)
        v = self._as_vectors(vector, 1)
        n = self._n
        if n == 0 or k == 0:
            return []
        work, sq = self._prepare_work(v)
        d = self._pair_distances(work, sq, self._work[:n], self._sq[:n])[0]
        ids = self._ids[:n]
        excluded = as_ids(list(exclude), what="exclude")
        if excluded.size:
            cols = np.flatnonzero(~np.isin(ids, excluded))
            d, ids = d[cols], ids[cols]
        nid, nd = topk_block(d[None, :], ids, min(k, ids.size))
        return list(zip(nid[0].tolist(), nd[0].tolist(), strict=True))

    def holders(self, ids: Iterable[int] | np.ndarray) -> set[int]:
        """Products whose top-k list holds any of ``ids`` (no copy of the lists)."""
        wanted, n = as_ids(list(ids)), self._n
        if wanted.size == 0 or n == 0:
            return set()
        return set(self._ids[:n][np.isin(self._nbr_ids[:n], wanted).any(axis=1)].tolist())

    def top_k_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids (N,), neighbour ids (N x k, -1 padded), neighbour distances (N x k, inf padded))."""
        n = self._n
        return self._ids[:n].copy(), self._nbr_ids[:n].copy(), self._nbr_dist[:n].copy()

    @staticmethod
    def _check_k(k: int) -> int:
        return check_int(k, "k")
