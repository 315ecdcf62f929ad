"""``TopKMerge``: merging upserted products into the top-k lists of the other rows.

One scan of the upserted vectors against every row (or, when pruned, against the rows whose
bound is within their own k-th distance) finds the rows whose k-th distance an upserted
vector may beat; those pairs are settled canonically and merged.
"""

from __future__ import annotations

import numpy as np

from similarity.index import dense_storage
from similarity.index import topk_tuning as tuning
from similarity.index.exact import approx_s, canonical, rank_error, raw_sq, threshold
from similarity.index.prune import list_limits
from similarity.index.topk_pruning import Bounds
from similarity.index.topk_search import TopKSearch


class TopKMerge(TopKSearch):
    """The other rows' lists an upsert changes, updated without recomputing them."""

    def _kth_s(self, rows: np.ndarray | slice | None = None) -> np.ndarray:
        """The rows' (default: every row's) k-th canonical distance as s (float64; +inf for
        short lists)."""
        rows = slice(0, self._n_rows) if rows is None else rows
        kth_d = self._nbr_dist[rows, -1].astype(np.float64)
        return kth_d**2 if self.metric == "euclidean" else 2 * kth_d

    def _approx_near(self, q32: np.ndarray, qi: np.ndarray, col: np.ndarray) -> np.ndarray:
        """Which pairs (query ``qi[i]``, row ``col[i]``) pass the full scan's test (float32
        s within the row's k-th, widened by the ranking error), on the gathered rows only:
        the canonical distances are then computed for those alone."""
        q_sq = raw_sq(q32)
        e = rank_error(q_sq, self._sq_max, self.dim, self.metric)
        kth_s = self._kth_s(col)
        keep = np.zeros(col.size, bool)
        step = max(256, dense_storage.BLOCK_BYTES // (4 * self.dim))
        for i in np.unique(qi).tolist():
            mine = np.flatnonzero(qi == i)
            for s in range(0, mine.size, step):
                part = mine[s : s + step]
                vals = approx_s(q32[i : i + 1], q_sq[i : i + 1], self._rows.take(col[part]),
                                self._sq[col[part]], self.metric)[0]
                keep[part] = vals <= threshold(kth_s[part], e[i])
        return keep

    def _merge_block(self, rows: np.ndarray, q32: np.ndarray, upserted: np.ndarray,
                     bounds: Bounds | None) -> np.ndarray:
        """Merge the products of ``rows`` into every live list they may enter (lists of
        ``upserted`` rows are computed whole instead)."""
        if bounds is not None:
            lim = list_limits(self._nbr_dist[: self._n_rows, -1], self.metric,
                              float(bounds.d.max()), float(bounds.e.max()))
            near = bounds.lb <= lim[None, :]
            if not np.isfinite(lim).all():
                near &= np.isfinite(bounds.lb)
            near[:, upserted] = False
            qi, col = np.nonzero(near)
            if col.size <= tuning.DENSE_SHARE * self._n_rows:
                keep = self._approx_near(q32, qi, col)
                return self._merge_pairs(rows[qi[keep]], col[keep])
        return self._merge_scanned(rows, q32, upserted)

    def _merge_scanned(self, rows: np.ndarray, q32: np.ndarray,
                       upserted: np.ndarray) -> np.ndarray:
        """``_merge_block`` by a full scan: every pair within the row's k-th is a candidate."""
        kth_s = self._kth_s()
        q_sq = raw_sq(q32)
        e = rank_error(q_sq, self._sq_max, self.dim, self.metric)[:, None]
        pairs: list[tuple[np.ndarray, np.ndarray]] = []
        for off, vals in self._scan(q32, q_sq):
            near = vals <= threshold(kth_s[None, off : off + vals.shape[1]], e)
            qi, c = np.nonzero(near & np.isfinite(vals))  # dead rows are +inf
            pairs.append((qi, c + off))
        qi = np.concatenate([p[0] for p in pairs])
        col = np.concatenate([p[1] for p in pairs])
        outside = ~np.isin(col, upserted)
        return self._merge_pairs(rows[qi[outside]], col[outside])

    def _merge_pairs(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Merge product row ``src[i]`` into the list of row ``dst[i]`` where it beats the
        k-th (canonical distance, then id). Returns the rows that changed."""
        d = np.empty(src.size, np.float32)
        for s in range(0, src.size, tuning.PAIR_CHUNK):  # bounded memory: pairs in chunks
            part = slice(s, s + tuning.PAIR_CHUNK)
            d[part] = canonical(self._work(src[part]), self._work(dst[part]), self.metric)
        sid = self._ids[src]
        kd = self._nbr_dist[dst, -1]
        kid = np.where(self._nbr_ids[dst, -1] < 0, tuning.INT64_MAX, self._nbr_ids[dst, -1])
        win = (d < kd) | ((d == kd) & (sid < kid))
        src, dst, d, sid = src[win], dst[win], d[win], sid[win]
        for r in np.unique(dst).tolist():
            mine = dst == r
            c_ids = np.concatenate([self._nbr_ids[r], sid[mine]])
            c_d = np.concatenate([self._nbr_dist[r], d[mine]])
            order = np.lexsort((np.where(c_ids < 0, tuning.INT64_MAX, c_ids), c_d))[: self.k]
            self._nbr_ids[r], self._nbr_dist[r] = c_ids[order], c_d[order]
        return np.unique(dst)
