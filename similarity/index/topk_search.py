"""``TopKSearch``: a top-k index's exact search, pruned by the lower bounds when it can be.

A query's threshold is the k-th exact distance among its best-bounded rows (its seeds); only
rows whose bound is within it (with rounding slack) are ranked and settled. A pass whose
candidates are too many, or an index without a basis, scans every row instead
(``TopKFullScan``). The results are those of a full scan, exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from similarity.index import dense_storage
from similarity.index import topk_tuning as tuning
from similarity.index.exact import (
    SHORTLIST_EXTRA,
    approx_s,
    merge_top_m,
    pair_s,
    rank_error,
    raw_sq,
    settle_rows,
    threshold,
    work_vectors,
)
from similarity.index.prune import limit
from similarity.index.topk_pruning import Bounds, TopKPruning
from similarity.index.topk_scan import TopKFullScan


def seed_rows(lb: np.ndarray, m: int) -> np.ndarray:
    """Per query, ``m`` distinct rows of small bound: the best row of each of the ``m``
    blocks of ``SEED_BLOCK`` rows with the smallest minima (cheaper than partitioning all
    N bounds; any rows would do, good ones make the threshold tight)."""
    b, n = lb.shape
    nb = n // tuning.SEED_BLOCK
    if nb < 4 * m:
        return np.argpartition(lb, m - 1, axis=1)[:, :m] if n > m else \
            np.broadcast_to(np.arange(n), (b, n))
    blocks = lb[:, : nb * tuning.SEED_BLOCK].reshape(b, nb, tuning.SEED_BLOCK)
    pick = np.argpartition(blocks.min(axis=2), m - 1, axis=1)[:, :m]
    within = blocks[np.arange(b)[:, None], pick].argmin(axis=2)
    return pick * tuning.SEED_BLOCK + within


def seed_threshold(q_work: np.ndarray, lb: np.ndarray, k: int,
                   take: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Per query, an upper bound on the s of its k-th neighbour, widened to include float32
    ties with it: the k-th exact s among the rows of smallest bound ``lb`` (queries x rows;
    +inf when fewer than k rows are left). ``take`` gives the working vectors of rows."""
    b, n = lb.shape
    m = min(max(tuning.SEEDS, k), n)
    if m < k:
        return np.full(b, np.inf)
    cols = seed_rows(lb, m)
    qi, j = np.nonzero(np.isfinite(np.take_along_axis(lb, cols, axis=1)))
    s = np.full((b, m), np.inf)
    s[qi, j] = pair_s(q_work, qi, cols[qi, j], take)
    return threshold(np.partition(s, k - 1, axis=1)[:, k - 1], np.zeros(b))


class TopKSearch(TopKPruning, TopKFullScan):
    """Exact top-k of query vectors among the live rows, and recomputing rows' lists."""

    def _knn(self, q32: np.ndarray, k: int, exclude_rows: np.ndarray | None,
             exclude_ids: np.ndarray | None = None, m: int | None = None,
             bounds: Bounds | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k of query vectors among the live rows (``exclude_rows[i]``: a row query
        i must not list, -1 none): pruned by the lower bounds when the index has a basis
        (``bounds``: the queries' bounds, already scanned), else a full scan."""
        if self._low is None or m is not None:
            return self._knn_scan(q32, k, exclude_rows, exclude_ids, m)
        if bounds is not None:
            return self._knn_pruned(q32, k, exclude_rows, exclude_ids, bounds)
        nid = np.empty((q32.shape[0], k), np.int64)
        nd = np.empty((q32.shape[0], k), np.float32)
        step = self._bound_rows()
        for s in range(0, q32.shape[0], step):
            part = slice(s, s + step)
            ex = None if exclude_rows is None else exclude_rows[part]
            q = q32[part]
            nid[part], nd[part] = self._knn_pruned(q, k, ex, exclude_ids,
                                                   self._lower_bounds(q, raw_sq(q)))
        return nid, nd

    def _knn_pruned(self, q32: np.ndarray, k: int, exclude_rows: np.ndarray | None,
                    exclude_ids: np.ndarray | None, bounds: Bounds,
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k from the rows whose bound is within each query's threshold: the k-th
        exact distance among its best-bounded seeds (every true top-k row, or one tied with
        the k-th, has a bound below it)."""
        lb, n = bounds.lb, self._n_rows
        self._exclude(lb, exclude_rows, exclude_ids)
        q_sq = raw_sq(q32)
        q_work = work_vectors(q32, q_sq, self.metric)
        lim = limit(seed_threshold(q_work, lb, k, self._work), bounds.d, bounds.e)
        cand = lb <= lim[:, None]
        if not np.isfinite(lim).all():
            cand &= np.isfinite(lb)
        cols = np.flatnonzero(cand.any(axis=0) if cand.shape[0] > 1 else cand[0])
        if cols.size > tuning.DENSE_SHARE * n:
            return self._knn_scan(q32, k, exclude_rows, exclude_ids, None)
        b = q32.shape[0]
        if cols.size == 0:
            return (np.full((b, k), tuning.NO_ID, np.int64),
                    np.full((b, k), np.inf, np.float32))
        vals, rows = self._rank_among(q32, q_sq, cols, cand[:, cols], k + SHORTLIST_EXTRA)
        e = rank_error(q_sq, self._sq_max, self.dim, self.metric)
        nid, nd, complete = settle_rows(q_work, vals, rows, e, k, self._ids, self._work,
                                        self.metric)
        redo = np.flatnonzero(~complete)  # rare: too many near-ties for the shortlist
        if redo.size:
            ex = None if exclude_rows is None else exclude_rows[redo]
            nid[redo], nd[redo] = self._knn_scan(q32[redo], k, ex, exclude_ids,
                                                 self._n_rows + 1)
        return nid, nd

    def _exclude(self, lb: np.ndarray, exclude_rows: np.ndarray | None,
                 exclude_ids: np.ndarray | None) -> None:
        """Bounds +inf where a query must not list a row."""
        if exclude_rows is not None:
            hit = np.flatnonzero(exclude_rows >= 0)
            lb[hit, exclude_rows[hit]] = np.inf
        if exclude_ids is not None and exclude_ids.size:
            rows = self._row_of(exclude_ids)
            lb[:, rows[rows >= 0]] = np.inf

    def _rank_among(self, q32: np.ndarray, q_sq: np.ndarray, cols: np.ndarray,
                    cand: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        """Per query, the ``m`` smallest approx s among ``cols`` where ``cand`` (queries x
        cols) is set: (values, rows), +inf padded."""
        b = q32.shape[0]
        best = (np.full((b, m), np.inf, np.float32), np.zeros((b, m), np.int64))
        step = max(256, dense_storage.BLOCK_BYTES // (4 * (b + self.dim)))  # gathered rows, values
        for s in range(0, cols.size, step):
            c = cols[s : s + step]
            vals = approx_s(q32, q_sq, self._rows.take(c), self._sq[c], self.metric)
            vals[~cand[:, s : s + step]] = np.inf
            best = merge_top_m(best, vals, s, m)
        return best[0], cols[best[1]]

    def _recompute(self, rows: np.ndarray) -> None:
        for s in range(0, rows.size, tuning.PASS_ROWS):
            r = rows[s : s + tuning.PASS_ROWS]
            self._nbr_ids[r], self._nbr_dist[r] = self._knn(self._rows.take(r), self.k, r)
