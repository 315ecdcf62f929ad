"""``TopKFullScan``: a top-k index's exact search by reading every row.

The queries are ranked against blocks of rows in float32 (or by faiss on a plain euclidean
base), and their shortlists settled canonically (``similarity.index.exact``).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from similarity.index import dense_storage
from similarity.index.exact import (
    SHORTLIST_EXTRA,
    approx_s,
    merge_top_m,
    rank_error,
    raw_sq,
    settle_rows,
    work_vectors,
)
from similarity.index.topk_state import TopKState


class TopKFullScan(TopKState):
    """Exact top-k of query vectors among all live rows, with no bounds to prune by."""

    def _block_rows(self, b: int) -> int:
        return max(256, dense_storage.BLOCK_BYTES // (4 * max(b, 1)))

    def _scan(self, q32: np.ndarray, q_sq: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, approx s of the queries against a block of rows); dead rows +inf."""
        for off, x in self._rows.blocks(self._block_rows(q32.shape[0])):
            rows = slice(off, off + x.shape[0])
            vals = approx_s(q32, q_sq, x, self._sq[rows], self.metric)
            vals[:, ~self._alive[rows]] = np.inf
            yield off, vals

    def _candidates(self, q32: np.ndarray, q_sq: np.ndarray, m: int,
                    exclude_rows: np.ndarray | None, exclude_ids: np.ndarray | None,
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Per query, the ``m`` live rows of smallest approx s: (values, rows), blocked."""
        b = q32.shape[0]
        best = (np.full((b, m), np.inf, np.float32), np.zeros((b, m), np.int64))
        for off, vals in self._scan(q32, q_sq):
            if exclude_rows is not None:
                hit = (exclude_rows >= off) & (exclude_rows < off + vals.shape[1])
                vals[np.flatnonzero(hit), exclude_rows[hit] - off] = np.inf
            if exclude_ids is not None and exclude_ids.size:
                vals[:, np.isin(self._ids[off : off + vals.shape[1]], exclude_ids)] = np.inf
            best = merge_top_m(best, vals, off, m)
        return best

    def _use_faiss(self, exclude_ids: np.ndarray | None) -> bool:
        """faiss ranks a plain euclidean base without dead rows, tail or id exclusions."""
        return (self.engine == "faiss" and self.metric == "euclidean"
                and self._rows.n_tail == 0 and self._n == self._n_rows
                and (exclude_ids is None or exclude_ids.size == 0))

    def _candidates_faiss(self, q32: np.ndarray, m: int, exclude_rows: np.ndarray | None,
                          ) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        dist, rows = faiss.knn(np.ascontiguousarray(q32), self._rows.base, min(m + 1,
                                                                             self._n_rows))
        dist = np.where(rows < 0, np.inf, dist).astype(np.float32)
        if exclude_rows is not None:
            dist[rows == exclude_rows[:, None]] = np.inf
        pad = m + 1 - dist.shape[1]
        return (np.pad(dist, ((0, 0), (0, pad)), constant_values=np.inf),
                np.pad(np.maximum(rows, 0), ((0, 0), (0, pad))))

    def _knn_scan(self, q32: np.ndarray, k: int, exclude_rows: np.ndarray | None,
                  exclude_ids: np.ndarray | None = None, m: int | None = None,
                  ) -> tuple[np.ndarray, np.ndarray]:
        """``_knn`` by a full scan of every row, ranked in float32 and settled canonically."""
        m = m or k + SHORTLIST_EXTRA
        q_sq = raw_sq(q32)
        if self._use_faiss(exclude_ids) and m <= k + SHORTLIST_EXTRA:
            best = self._candidates_faiss(q32, m, exclude_rows)
        else:
            best = self._candidates(q32, q_sq, m, exclude_rows, exclude_ids)
        e = rank_error(q_sq, self._sq_max, self.dim, self.metric)
        q_work = work_vectors(q32, q_sq, self.metric)
        nid, nd, complete = settle_rows(q_work, best[0], best[1], e, k, self._ids, self._work,
                                        self.metric)
        for i in np.flatnonzero(~complete):  # rare: too many near-ties for the shortlist
            ex = None if exclude_rows is None else exclude_rows[i : i + 1]
            nid[i], nd[i] = (a[0] for a in self._knn_scan(q32[i : i + 1], k, ex, exclude_ids,
                                                           m=self._n_rows + 1))
        return nid, nd
