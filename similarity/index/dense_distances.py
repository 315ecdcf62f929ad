"""Distances and top-k lists of the dense layout: canonical pair distances between working
vectors, written into the square (all pairs, or the rows of changed products) so it stays
exactly symmetric, and the per-row top-k selection ordered by (distance, id)."""

from __future__ import annotations

import numpy as np

from similarity.index.dense_storage import NO_ID, DenseStorage
from similarity.index.exact import settle_dense


def symmetrise_square(sq: np.ndarray) -> None:
    """Make a square block symmetric in place (upper triangle wins), zero its diagonal."""
    upper = np.triu_indices(sq.shape[0], 1)
    sq[upper[1], upper[0]] = sq[upper]
    np.fill_diagonal(sq, 0)


def topk_block(block: np.ndarray, ids: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``block`` (b x n float32), the ``kk`` smallest entries by (distance, id).

    Entries to exclude must already be +inf and ``kk`` must not exceed the number of finite
    entries of any row. Ties at the k-th boundary keep the smaller ids.
    """
    b, n = block.shape
    if kk == 0 or b == 0:
        return np.empty((b, 0), np.int64), np.empty((b, 0), np.float32)
    if kk < n:
        part = np.argpartition(block, kk - 1, axis=1)[:, :kk]
    else:
        part = np.broadcast_to(np.arange(n), (b, n)).copy()
    vals = np.take_along_axis(block, part, axis=1)
    cand_ids = ids[part]
    order = np.lexsort((cand_ids, vals), axis=1)
    out_ids = np.take_along_axis(cand_ids, order, axis=1)
    out_d = np.take_along_axis(vals, order, axis=1)
    if kk < n:
        kth = out_d[:, -1]
        counts = np.count_nonzero(block <= kth[:, None], axis=1)
        # Rows with more entries equal to the k-th value than places: argpartition picked an
        # arbitrary subset of the tied entries; redo them keeping the smallest ids.
        for r in np.flatnonzero(counts > kk):
            row = block[r]
            cand = np.flatnonzero(row <= kth[r])
            o = np.lexsort((ids[cand], row[cand]))[:kk]
            out_ids[r] = ids[cand[o]]
            out_d[r] = row[cand[o]]
    return out_ids, out_d


class DenseDistances(DenseStorage):
    """Computes the stored distances and recomputes top-k lists from them."""

    def _pair_distances(
        self, a: np.ndarray, a_sq: np.ndarray, b: np.ndarray, b_sq: np.ndarray
    ) -> np.ndarray:
        """Canonical float32 (len(a) x len(b)) distances between working vectors
        (see ``similarity.index.exact``): a float64 norm formula, settled exactly where needed."""
        g = a @ b.T
        if g.size == 0:
            return g.astype(np.float32)
        g *= -2.0
        if self.metric == "euclidean":
            g += a_sq[:, None]
            g += b_sq[None, :]
        else:
            g += 2.0  # unit working vectors: s = 2 - 2 a.b
        np.maximum(g, 0.0, out=g)
        return settle_dense(g, a, a_sq, b, b_sq, self.metric)

    def _fill_distances(self, n: int) -> None:
        """All pairwise distances of rows [0, n), upper triangle by row blocks, mirrored."""
        step = self._rows_block(n)
        for s in range(0, n, step):
            e = min(n, s + step)
            blk = self._pair_distances(self._work[s:e], self._sq[s:e], self._work[s:n],
                                       self._sq[s:n])
            symmetrise_square(blk[:, : e - s])
            self._d[s:e, s:n] = blk
            self._d[s:n, s:e] = blk.T

    def _write_rows(self, idx: np.ndarray) -> None:
        """Distances of rows ``idx`` to every row, in row blocks.

        Each block's square part is made symmetric; a later block overwrites the pairs it
        shares with an earlier one on both sides (its row and its column), so the matrix stays
        exactly symmetric.
        """
        n = self._n
        step = self._rows_block(n)
        for s in range(0, idx.size, step):
            rows = idx[s : s + step]
            blk = self._pair_distances(self._work[rows], self._sq[rows], self._work[:n],
                                       self._sq[:n])
            square = blk[:, rows]
            symmetrise_square(square)
            blk[:, rows] = square
            self._d[rows, :n] = blk
            self._d[:n, rows] = blk.T

    def _recompute_rows(self, rows: np.ndarray) -> None:
        """Recompute the top-k lists of ``rows`` from the stored distances."""
        n = self._n
        kk = min(self.k, n - 1)
        ids = self._ids[:n]
        step = self._rows_block(n)
        for s in range(0, rows.size, step):
            r = rows[s : s + step]
            block = self._d[r, :n]  # fancy indexing: a copy
            block[np.arange(r.size), r] = np.inf
            nid, nd = topk_block(block, ids, kk)
            self._nbr_ids[r, :kk] = nid
            self._nbr_dist[r, :kk] = nd
            self._nbr_ids[r, kk:] = NO_ID
            self._nbr_dist[r, kk:] = np.inf
