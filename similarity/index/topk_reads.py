"""``TopKReads``: what a top-k index answers: its ids and vectors, neighbour lists, queries
by vector, the holders of products and the whole top-k table."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from similarity.index import topk_tuning as tuning
from similarity.index.dense import UnknownProductError, as_ids, check_int, is_int, validate_vectors
from similarity.index.topk_search import TopKSearch


class TopKReads(TopKSearch):
    """Reads of the live rows; none changes the index."""

    def __len__(self) -> int:
        return self._n

    def __contains__(self, product_id: object) -> bool:
        return is_int(product_id) and self._row_of(np.array([int(product_id)]))[0] >= 0

    @property
    def ids(self) -> np.ndarray:
        """Live product ids in row order (a copy, int64)."""
        return self._ids[self._live()]

    @property
    def dead_rows(self) -> int:
        """Rows held for removed or replaced products until the next compaction."""
        return self._n_rows - self._n

    @property
    def vectors(self) -> np.ndarray:
        """Read-only float32 vectors of the live rows in row order (no copy when the rows are
        exactly the base's: a memory map stays a memory map)."""
        if self._rows.n_tail == 0 and self._n == self._n_rows:
            v = self._rows.base[:]
        else:
            v = self._rows.take(self._live())
        v.flags.writeable = False
        return v

    def vector_blocks(self, size: int) -> Iterator[np.ndarray]:
        """The live rows' vectors in row order, ``size`` rows at a time at most."""
        for off, x in self._rows.blocks(size):
            alive = self._alive[off : off + x.shape[0]]
            yield x if alive.all() else x[alive]

    def knn_rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, exact top-k ids, distances) of rows [start, stop), each excluding itself."""
        rows = np.arange(start, min(stop, self._n_rows))
        rows = rows[self._alive[rows]]
        out_ids = np.empty((rows.size, self.k), np.int64)
        out_d = np.empty((rows.size, self.k), np.float32)
        for s in range(0, rows.size, tuning.PASS_ROWS):
            r = rows[s : s + tuning.PASS_ROWS]
            out_ids[s : s + r.size], out_d[s : s + r.size] = self._knn(self._rows.take(r),
                                                                     self.k, r)
        return self._ids[rows], out_ids, out_d

    @property
    def sq_norms(self) -> np.ndarray:
        """float64 squared norms of ``vectors`` (raw, not normalised)."""
        return self._sq[self._live()]

    def index_of(self, product_id: int) -> int:
        """Row of ``product_id``; UnknownProductError (a KeyError) if absent."""
        row = int(self._row_of(np.array([int(product_id)]))[0]) if is_int(product_id) else -1
        if row < 0:
            raise UnknownProductError(f"product {product_id!r} is not in the index")
        return row

    def vector(self, product_id: int) -> np.ndarray:
        return self._rows.take(np.array([self.index_of(product_id)]))[0]

    def neighbours(self, product_id: int, k: int | None = None) -> list[tuple[int, float]]:
        """Top-k (id, distance) of a product, itself excluded, sorted by (distance, id)."""
        row = self.index_of(product_id)
        k = self.k if k is None else check_int(k, "k")
        if k <= self.k:
            nid, nd = self._nbr_ids[row, :k], self._nbr_dist[row, :k]
        else:
            r = np.array([row])
            nid, nd = (a[0] for a in self._knn(self._rows.take(r), k, r))
        keep = nid >= 0
        return list(zip(nid[keep].tolist(), nd[keep].tolist(), strict=True))

    def query(self, vector: Any, k: int = 10, exclude: Iterable[int] = (),
              ) -> list[tuple[int, float]]:
        """Top-k (id, distance) for any vector, same metric, sorted by (distance, id)."""
        k = check_int(k, "k")
        v = validate_vectors(vector, 1, self.dim, self.metric)
        if self._n == 0 or k == 0:
            return []
        excluded = as_ids(list(exclude), what="exclude")
        nid, nd = self._knn(v, k, None, excluded)
        keep = nid[0] >= 0
        return list(zip(nid[0][keep].tolist(), nd[0][keep].tolist(), strict=True))

    def holders(self, ids: Iterable[int] | np.ndarray) -> set[int]:
        """Products whose top-k list holds any of ``ids`` (no copy of the lists)."""
        return set(self._ids[self._holders(as_ids(list(ids)))].tolist())

    def top_k_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids (N,), neighbour ids (N x k, -1 padded), neighbour distances (N x k, inf))."""
        live = self._live()
        return self._ids[live], self._nbr_ids[live], self._nbr_dist[live]
