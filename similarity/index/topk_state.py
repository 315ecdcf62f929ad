"""``TopKState``: a top-k index's per-row arrays and their bookkeeping.

Each row holds a product id, its vector (``VectorRows``), its squared norm, whether it is
alive, its top-k list and, once pruning is on, its low coordinates. Rows are append-only
with tombstones; ids find their live row through the base's ids sorted once and a dict for
the rows appended since.
"""

from __future__ import annotations

import numpy as np

from similarity.index import topk_tuning as tuning
from similarity.index.exact import raw_sq, work_vectors
from similarity.index.prune import Basis, low_coords
from similarity.index.topk_rows import VectorRows, grown


class TopKState:
    """The row arrays every part of ``TopKIndex`` reads and the operations on rows."""

    dim: int
    k: int
    metric: str
    engine: str
    _rows: VectorRows
    _ids: np.ndarray
    _sq: np.ndarray
    _alive: np.ndarray
    _nbr_ids: np.ndarray
    _nbr_dist: np.ndarray
    _n_rows: int
    _n: int
    _sq_max: float
    _n_base: int
    _base_sorted: tuple[np.ndarray, np.ndarray] | None
    _tail_index: dict[int, int]
    _basis: Basis | None
    _low: VectorRows | None
    _low_sq32: np.ndarray
    _low_sq_max: float

    def _set_state(self, ids: np.ndarray, vecs: np.ndarray, sq: np.ndarray,
                   nbr_ids: np.ndarray, nbr_dist: np.ndarray, low: np.ndarray | None = None,
                   basis: Basis | None = None) -> None:
        """Rows = the given arrays, taken over without a copy when they are writeable
        (``vecs`` and ``low`` are kept as they are: they may be read-only memory maps)."""
        self._rows = VectorRows(vecs)
        self._ids = np.require(ids, np.int64, ["C", "W", "O"])
        self._sq = np.require(sq, np.float64, ["C", "W", "O"])
        self._alive = np.ones(ids.size, bool)
        self._nbr_ids = np.require(nbr_ids, np.int64, ["C", "W", "O"])
        self._nbr_dist = np.require(nbr_dist, np.float32, ["C", "W", "O"])
        self._n_rows = self._n = ids.size
        self._sq_max = float(self._sq.max()) if ids.size else 0.0
        # id -> live row: the first ``_n_base`` rows through their ids sorted once (two int64
        # arrays, built on first use), later rows through a dict (a million-entry dict would
        # be ~100 MB private in every web process).
        self._n_base = ids.size
        self._base_sorted = None
        self._tail_index = {}
        self._set_low(low, basis)

    def _set_low(self, low: np.ndarray | None, basis: Basis | None) -> None:
        """The pruning state: a basis and every row's low coordinates (see similarity.index.prune),
        or none (every scan reads all vectors)."""
        self._basis = basis if low is not None else None
        self._low = VectorRows(low) if low is not None else None
        # Squared norms of the low rows as the float32 scan adds them, +inf for dead rows (so
        # their bounds come out +inf without another pass).
        self._low_sq32 = np.full(self._ids.size, np.inf, np.float32)
        self._low_sq_max = 0.0
        if low is not None and low.shape[0]:
            # in blocks: a float64 copy of a million rows would be a private 0.5 GB
            sq = np.concatenate([raw_sq(low[s : s + tuning.LOW_BLOCK])
                                 for s in range(0, low.shape[0], tuning.LOW_BLOCK)])
            n = low.shape[0]
            self._low_sq32[:n] = np.where(self._alive[:n], sq, np.inf)
            self._low_sq_max = float(sq.max())

    def _row_of(self, ids: np.ndarray) -> np.ndarray:
        """Live row of each id, -1 for none."""
        if self._base_sorted is None:
            order = np.argsort(self._ids[: self._n_base], kind="stable")
            self._base_sorted = (self._ids[order], order)
        srt, order = self._base_sorted
        pos = np.minimum(np.searchsorted(srt, ids), max(srt.size - 1, 0))
        rows = order[pos] if srt.size else np.zeros(ids.size, np.int64)
        found = (srt[pos] == ids) & self._alive[rows] if srt.size else np.zeros(ids.size, bool)
        rows = np.where(found, rows, -1)
        if self._tail_index:
            tail = self._tail_index
            rows = np.fromiter((tail.get(i, r) for i, r in zip(ids.tolist(), rows.tolist(),
                                                                strict=True)), np.int64, ids.size)
        return rows

    def _append(self, ids: np.ndarray, vecs: np.ndarray) -> np.ndarray:
        """New live rows for ``ids`` (empty lists); returns them."""
        n0, n1 = self._n_rows, self._n_rows + ids.size
        if n1 > self._ids.size:
            self._grow(n0, n1)
        rows = np.arange(n0, n1)
        self._rows.append(vecs)
        self._ids[rows], self._alive[rows] = ids, True
        self._sq[rows] = raw_sq(vecs)
        if self._low is not None and self._basis is not None:
            self._append_low(self._low, self._basis, rows, vecs)
        self._sq_max = max(self._sq_max, float(self._sq[rows].max()))
        self._nbr_ids[rows], self._nbr_dist[rows] = tuning.NO_ID, np.inf
        self._tail_index.update(zip(ids.tolist(), rows.tolist(), strict=True))
        self._n_rows, self._n = n1, self._n + ids.size
        return rows

    def _grow(self, n0: int, n1: int) -> None:
        """Room for at least ``n1`` rows in the per-row arrays (the first ``n0`` kept)."""
        cap = max(n1, self._ids.size + tuning.MIN_GROWTH, int(1.25 * self._ids.size))
        self._ids = grown(self._ids[:n0], cap, tuning.NO_ID)
        self._sq = grown(self._sq[:n0], cap, 0.0)
        self._alive = grown(self._alive[:n0], cap, False)
        self._nbr_ids = grown(self._nbr_ids[:n0], cap, tuning.NO_ID)
        self._nbr_dist = grown(self._nbr_dist[:n0], cap, np.inf)
        self._low_sq32 = grown(self._low_sq32[:n0], cap, np.inf)

    def _append_low(self, low: VectorRows, basis: Basis, rows: np.ndarray,
                    vecs: np.ndarray) -> None:
        """The low coordinates of appended ``rows`` (their squared norms already set)."""
        z = low_coords(basis, work_vectors(vecs, self._sq[rows], self.metric))
        low.append(z)
        sq = raw_sq(z)
        self._low_sq32[rows] = sq
        self._low_sq_max = max(self._low_sq_max, float(sq.max()))

    def _kill(self, rows: np.ndarray) -> None:
        for i in self._ids[rows].tolist():
            self._tail_index.pop(i, None)
        self._alive[rows] = False
        self._low_sq32[rows] = np.inf
        self._n -= rows.size

    def _work(self, rows: np.ndarray) -> np.ndarray:
        return work_vectors(self._rows.take(rows), self._sq[rows], self.metric)

    def _live(self) -> np.ndarray:
        return np.flatnonzero(self._alive[: self._n_rows])

    def _holders(self, ids: np.ndarray) -> np.ndarray:
        """Live rows whose list holds any of ``ids``."""
        n = self._n_rows
        if ids.size == 0:
            return np.empty(0, np.int64)
        nbr = self._nbr_ids[:n]
        if ids.size <= 4:  # a few comparisons beat isin's sort of N x k ids
            held = np.zeros(nbr.shape, bool)
            for i in ids.tolist():
                held |= nbr == i
        else:
            held = np.isin(nbr, ids)
        hold = held.any(axis=1) & self._alive[:n]
        return np.flatnonzero(hold)
