"""Exact top-k neighbour lists without an N x N matrix: vectors, lists and k-th distances.

``TopKIndex`` keeps, per row, a product id, its float32 vector, its squared norm, and its
exact top-k list (ids and canonical distances, sorted by (distance, id); see
``similarity.index.exact``). Rows are append-only with tombstones: an add appends a row, a removal
kills one, an update kills the old row and appends a new one, so a base's vectors can stay a
read-only memory map (``similarity.index.store`` writes them as an uncompressed ``.npy``) while the
rows added since live in memory. Compaction (a new base) drops the dead rows.

Maintenance, all exact:

- upsert: one blocked pass of the upserted vectors against every row ranks, in float32 BLAS,
  (a) the new rows' own lists and (b) every other row whose k-th distance an upserted vector
  may beat: those candidates are settled canonically and merged; (c) rows whose list held an
  updated product are recomputed;
- remove: rows whose list held a removed product are recomputed.

Scans are pruned once the index has a basis (``enable_pruning``; builds and bases of at least
``PRUNE_MIN_ROWS`` rows fit one): every row also has low coordinates (``similarity.index.prune``,
d' + 1 floats: memory-mapped for a base, computed on append for the tail) whose distance is
a lower bound of the true one. A pass scans only those (N x (d' + 1)); a query's threshold
is the k-th exact distance among its best-bounded rows, and only rows whose bound is within
it (with rounding slack) are ranked and settled; an upsert rechecks only the rows whose
bound is within their own k-th distance. The results are those of a full scan, exactly.

``apply_*`` return exactly the products whose list changed plus those added, like
``DistanceMatrix``, and record the lists they wrote in ``last_change`` so the store can log
them: replaying a delta then just writes lists, it never recomputes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from similarity.errors import MatrixError
from similarity.index import dense as _matrix
from similarity.index.dense import (
    METRICS,
    DistanceMatrix,
    UnknownProductError,
    as_ids,
    check_int,
    is_int,
    last_wins,
    validate_vectors,
)
from similarity.index.exact import (
    SHORTLIST_EXTRA,
    approx_s,
    canonical,
    merge_top_m,
    pair_s,
    rank_error,
    raw_sq,
    settle_rows,
    threshold,
    work_vectors,
)
from similarity.index.inplace import adopt_state
from similarity.index.prune import (
    DIMS,
    FIT_SAMPLE,
    Basis,
    coord_blocks,
    fit_basis,
    limit,
    list_limits,
    low_coords,
    slack,
)
from similarity.model.spec import EMBEDDING_DIM

_NO_ID = -1
_INT64_MAX = int(np.iinfo(np.int64).max)
_MIN_GROWTH = 64
_LOW_BLOCK = 16_384
_PAIR_CHUNK = 4096
# Rows whose lists are recomputed (or products merged) per blocked pass over the vectors.
_PASS_ROWS = 1024
#: A build (or a base written) of at least this many rows fits a basis and prunes its scans.
PRUNE_MIN_ROWS = 4096
# Bytes of lower bounds (queries x rows, float32) held at once by a pruned pass.
_BOUND_BYTES = 256 * 2**20
# Seeds per query: the rows of smallest bound whose exact distances set the threshold.
_SEEDS = 48
_SEED_BLOCK = 32
# A pruned pass whose candidates exceed this share of the rows scans them all instead.
_DENSE_SHARE = 0.25


@dataclass(frozen=True)
class _Bounds:
    """Lower bounds of s (queries x rows, float32) and each query's slack (d, e)."""

    lb: np.ndarray
    d: np.ndarray
    e: np.ndarray


@dataclass(frozen=True)
class ListChange:
    """Lists written by one operation: ``ids[i]``'s list is now (nbr_ids[i], nbr_dist[i])."""

    ids: np.ndarray
    nbr_ids: np.ndarray
    nbr_dist: np.ndarray


def _grown(arr: np.ndarray, cap: int, fill: Any) -> np.ndarray:
    out = np.full((cap, *arr.shape[1:]), fill, arr.dtype)
    out[: arr.shape[0]] = arr
    return out


def _seed_rows(lb: np.ndarray, m: int) -> np.ndarray:
    """Per query, ``m`` distinct rows of small bound: the best row of each of the ``m``
    blocks of ``_SEED_BLOCK`` rows with the smallest minima (cheaper than partitioning all
    N bounds; any rows would do, good ones make the threshold tight)."""
    b, n = lb.shape
    nb = n // _SEED_BLOCK
    if nb < 4 * m:
        return np.argpartition(lb, m - 1, axis=1)[:, :m] if n > m else \
            np.broadcast_to(np.arange(n), (b, n))
    blocks = lb[:, : nb * _SEED_BLOCK].reshape(b, nb, _SEED_BLOCK)
    pick = np.argpartition(blocks.min(axis=2), m - 1, axis=1)[:, :m]
    within = blocks[np.arange(b)[:, None], pick].argmin(axis=2)
    return pick * _SEED_BLOCK + within


class _Rows:
    """float32 vector rows: a read-only base (often a memory map) and an in-memory tail."""

    def __init__(self, base: np.ndarray) -> None:
        self.base = base
        self.tail = np.empty((0, base.shape[1]), np.float32)
        self.n_tail = 0

    def __len__(self) -> int:
        return self.base.shape[0] + self.n_tail

    def append(self, vecs: np.ndarray) -> None:
        need = self.n_tail + vecs.shape[0]
        if need > self.tail.shape[0]:
            self.tail = _grown(self.tail[: self.n_tail],
                               max(need, _MIN_GROWTH, int(1.5 * self.tail.shape[0])), 0)
        self.tail[self.n_tail : need] = vecs
        self.n_tail = need

    def take(self, rows: np.ndarray) -> np.ndarray:
        nb = self.base.shape[0]
        out = np.empty((rows.size, self.base.shape[1]), np.float32)
        in_base = rows < nb
        out[in_base] = self.base[np.sort(rows[in_base])][np.argsort(np.argsort(rows[in_base]))]
        out[~in_base] = self.tail[rows[~in_base] - nb]
        return out

    def blocks(self, size: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, rows) in blocks of at most ``size`` rows, base then tail."""
        nb = self.base.shape[0]
        for s in range(0, nb, size):
            yield s, self.base[s : s + size]
        for s in range(0, self.n_tail, size):
            yield nb + s, self.tail[s : min(self.n_tail, s + size)]


class TopKIndex:
    """Vectors and exact top-k lists; the catalog-facing interface of ``DistanceMatrix``."""

    layout = "topk"

    def __init__(self, *, dim: int = EMBEDDING_DIM, metric: str = "euclidean", k: int = 10,
                 engine: str = "numpy") -> None:
        if metric not in METRICS:
            raise MatrixError(f"metric must be one of {METRICS}, got {metric!r}")
        self.dim = check_int(dim, "dim", minimum=1)
        self.k = check_int(k, "k", minimum=1)
        self.metric = metric
        self.engine = engine
        self.version: tuple[int, int] | None = None
        self.sealed = False
        self.last_change: ListChange | None = None
        self._set_state(np.empty(0, np.int64), np.empty((0, self.dim), np.float32),
                        np.empty(0, np.float64), np.full((0, self.k), _NO_ID, np.int64),
                        np.full((0, self.k), np.inf, np.float32))

    def _set_state(self, ids: np.ndarray, vecs: np.ndarray, sq: np.ndarray,
                   nbr_ids: np.ndarray, nbr_dist: np.ndarray, low: np.ndarray | None = None,
                   basis: Basis | None = None) -> None:
        """Rows = the given arrays, taken over without a copy when they are writeable
        (``vecs`` and ``low`` are kept as they are: they may be read-only memory maps)."""
        self._rows = _Rows(vecs)
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
        self._base_sorted: tuple[np.ndarray, np.ndarray] | None = None
        self._tail_index: dict[int, int] = {}
        self._set_low(low, basis)

    def _set_low(self, low: np.ndarray | None, basis: Basis | None) -> None:
        """The pruning state: a basis and every row's low coordinates (see similarity.index.prune),
        or none (every scan reads all vectors)."""
        self._basis = basis if low is not None else None
        self._low = _Rows(low) if low is not None else None
        # Squared norms of the low rows as the float32 scan adds them, +inf for dead rows (so
        # their bounds come out +inf without another pass).
        self._low_sq32 = np.full(self._ids.size, np.inf, np.float32)
        self._low_sq_max = 0.0
        if low is not None and low.shape[0]:
            # in blocks: a float64 copy of a million rows would be a private 0.5 GB
            sq = np.concatenate([raw_sq(low[s : s + _LOW_BLOCK])
                                 for s in range(0, low.shape[0], _LOW_BLOCK)])
            n = low.shape[0]
            self._low_sq32[:n] = np.where(self._alive[:n], sq, np.inf)
            self._low_sq_max = float(sq.max())

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_arrays(cls, ids: np.ndarray, vectors: np.ndarray, nbr_ids: np.ndarray | None,
                    nbr_dist: np.ndarray | None, *, sq: np.ndarray | None = None,
                    metric: str = "euclidean", k: int = 10, dim: int = EMBEDDING_DIM,
                    engine: str = "numpy", low: np.ndarray | None = None,
                    basis: Basis | None = None) -> TopKIndex:
        """Restore persisted arrays (``vectors`` and ``low`` may be read-only memory maps,
        kept as they are; ``low``: the rows' coordinates in ``basis``, to prune scans)."""
        t = cls(dim=dim, metric=metric, k=k, engine=engine)
        ids = as_ids(ids)
        n = ids.size
        if vectors.shape != (n, t.dim) or vectors.dtype != np.float32:
            raise MatrixError(f"vectors must be float32 ({n}, {t.dim}), got "
                              f"{vectors.dtype} {vectors.shape}")
        if nbr_ids is None or nbr_dist is None:  # lists to be computed (knn_rows)
            nbr_ids = np.full((n, t.k), _NO_ID, np.int64)
            nbr_dist = np.full((n, t.k), np.inf, np.float32)
        if nbr_ids.shape != (n, t.k) or nbr_dist.shape != (n, t.k):
            raise MatrixError(f"top-k tables must be ({n}, {t.k})")
        if np.unique(ids).size != n:
            raise MatrixError("ids contain duplicates")
        if low is not None and (basis is None or low.shape != (n, basis.dims)
                                or low.dtype != np.float32 or basis.axes.shape[1] != t.dim):
            raise MatrixError(f"low coordinates must be float32 ({n}, basis dims + 1)")
        t._set_state(ids, vectors, raw_sq(vectors) if sq is None else sq, nbr_ids, nbr_dist,
                     low, basis)
        return t

    @classmethod
    def from_matrix(cls, matrix: DistanceMatrix, *, engine: str = "numpy") -> TopKIndex:
        """The dense matrix's state in this layout: its lists are already exact, none is
        recomputed (the vectors are copied)."""
        ids, nbr_ids, nbr_dist = matrix.top_k_table()
        t = cls.from_arrays(ids, np.array(matrix.vectors), nbr_ids, nbr_dist,
                            metric=matrix.metric, k=matrix.k, dim=matrix.dim, engine=engine)
        if len(t) >= PRUNE_MIN_ROWS:
            t.enable_pruning()
        return t

    @classmethod
    def build(cls, ids: Sequence[int] | np.ndarray, vectors: Any, *,
              metric: str = "euclidean", k: int = 10, dim: int = EMBEDDING_DIM,
              engine: str = "numpy", **_ignored: Any) -> TopKIndex:
        """Full build: every row's exact list (``max_items``/``headroom`` are ignored)."""
        t = cls(dim=dim, metric=metric, k=k, engine=engine)
        ids_arr = as_ids(ids)
        vecs = validate_vectors(vectors, ids_arr.size, t.dim, t.metric)
        keep = last_wins(ids_arr)
        ids_arr, vecs = ids_arr[keep], vecs[keep]
        n = ids_arr.size
        t._set_state(ids_arr, vecs, raw_sq(vecs), np.full((n, t.k), _NO_ID, np.int64),
                     np.full((n, t.k), np.inf, np.float32))
        if n >= PRUNE_MIN_ROWS:
            t.enable_pruning()
        t._recompute(np.arange(n))
        return t

    # ------------------------------------------------------------------ pruning

    @property
    def basis(self) -> Basis | None:
        """The basis whose low coordinates prune this index's scans (None: no pruning)."""
        return self._basis

    def enable_pruning(self, dims: int = DIMS) -> None:
        """Fit a basis (PCA of a sample of the live rows) and give every row its low
        coordinates; from now on scans are pruned (exactly, see similarity.index.prune)."""
        live = self._live()
        if live.size == 0:
            self._set_low(None, None)
            return
        pick = np.random.default_rng(0).choice(live, min(FIT_SAMPLE, live.size), replace=False)
        basis = fit_basis(self._work(np.sort(pick)), dims)
        blocks = (work_vectors(x, self._sq[off : off + x.shape[0]], self.metric)
                  for off, x in self._rows.blocks(_LOW_BLOCK))
        low = np.concatenate([np.empty((0, basis.dims), np.float32),
                              *coord_blocks(basis, blocks)])
        self._set_low(low, basis)

    def disable_pruning(self) -> None:
        """Drop the basis: every scan reads all vectors again (the reference the pruned
        scans are measured against)."""
        self._set_low(None, None)

    def refit_for_base(self) -> None:
        """Before this state is written as a base: refit the basis on the live rows unless
        it was fitted on exactly them (no tail, no dead rows); below ``PRUNE_MIN_ROWS`` an
        index without a basis stays without."""
        if self._low is None and self._n < PRUNE_MIN_ROWS:
            return
        if self._low is not None and self._rows.n_tail == 0 and self._n == self._n_rows:
            return
        self.enable_pruning(DIMS if self._basis is None else self._basis.dims - 1)

    def low_blocks(self, size: int) -> Iterator[np.ndarray]:
        """The live rows' low coordinates in row order (like ``vector_blocks``)."""
        if self._low is None:
            return
        for off, z in self._low.blocks(size):
            alive = self._alive[off : off + z.shape[0]]
            yield z if alive.all() else z[alive]

    def _lower_bounds(self, q32: np.ndarray, q_sq: np.ndarray) -> _Bounds:
        """Scanned lower bounds of s between the queries and every row (dead rows +inf),
        with the queries' slack (see similarity.index.prune)."""
        assert self._low is not None and self._basis is not None
        zq = low_coords(self._basis, work_vectors(q32, q_sq, self.metric))
        zq_sq = raw_sq(zq)
        n = self._n_rows
        # approx_s's euclidean steps, without copies: one GEMV/GEMM over the low rows
        parts = [zq @ z.T for _, z in self._low.blocks(max(n, 1))]
        lb = (parts[0] if len(parts) == 1 else
              np.concatenate(parts, axis=1) if parts else np.empty((q32.shape[0], 0), np.float32))
        lb *= -2.0
        lb += zq_sq.astype(np.float32)[:, None]
        lb += self._low_sq32[None, :n]
        d, e = slack(zq_sq, self._low_sq_max, self._basis.dims)
        return _Bounds(lb, d, e)

    def _bound_rows(self) -> int:
        """Queries per pruned pass (their bounds against every row fit ``_BOUND_BYTES``)."""
        return max(1, min(_PASS_ROWS, _BOUND_BYTES // (4 * max(self._n_rows, 1))))

    def replace_state(self, other: Any) -> None:
        """Make this object hold ``other``'s state (used to reload in place)."""
        adopt_state(self, other)

    # ------------------------------------------------------------------ rows

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
        n0, n1 = self._n_rows, self._n_rows + ids.size
        if n1 > self._ids.size:
            cap = max(n1, self._ids.size + _MIN_GROWTH, int(1.25 * self._ids.size))
            self._ids = _grown(self._ids[:n0], cap, _NO_ID)
            self._sq = _grown(self._sq[:n0], cap, 0.0)
            self._alive = _grown(self._alive[:n0], cap, False)
            self._nbr_ids = _grown(self._nbr_ids[:n0], cap, _NO_ID)
            self._nbr_dist = _grown(self._nbr_dist[:n0], cap, np.inf)
            self._low_sq32 = _grown(self._low_sq32[:n0], cap, np.inf)
        rows = np.arange(n0, n1)
        self._rows.append(vecs)
        self._ids[rows], self._alive[rows] = ids, True
        self._sq[rows] = raw_sq(vecs)
        if self._low is not None and self._basis is not None:
            z = low_coords(self._basis, work_vectors(vecs, self._sq[rows], self.metric))
            self._low.append(z)
            sq = raw_sq(z)
            self._low_sq32[rows] = sq
            self._low_sq_max = max(self._low_sq_max, float(sq.max()))
        self._sq_max = max(self._sq_max, float(self._sq[rows].max()))
        self._nbr_ids[rows], self._nbr_dist[rows] = _NO_ID, np.inf
        self._tail_index.update(zip(ids.tolist(), rows.tolist(), strict=True))
        self._n_rows, self._n = n1, self._n + ids.size
        return rows

    def _kill(self, rows: np.ndarray) -> None:
        for i in self._ids[rows].tolist():
            self._tail_index.pop(i, None)
        self._alive[rows] = False
        self._low_sq32[rows] = np.inf
        self._n -= rows.size

    def _work(self, rows: np.ndarray) -> np.ndarray:
        return work_vectors(self._rows.take(rows), self._sq[rows], self.metric)

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

    # ------------------------------------------------------------------ ranking

    def _block_rows(self, b: int) -> int:
        return max(256, _matrix.BLOCK_BYTES // (4 * max(b, 1)))

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

    def _knn(self, q32: np.ndarray, k: int, exclude_rows: np.ndarray | None,
             exclude_ids: np.ndarray | None = None, m: int | None = None,
             bounds: _Bounds | None = None) -> tuple[np.ndarray, np.ndarray]:
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
                    exclude_ids: np.ndarray | None, bounds: _Bounds,
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k from the rows whose bound is within each query's threshold: the k-th
        exact distance among its best-bounded seeds (every true top-k row, or one tied with
        the k-th, has a bound below it)."""
        lb, n = bounds.lb, self._n_rows
        self._exclude(lb, exclude_rows, exclude_ids)
        q_sq = raw_sq(q32)
        q_work = work_vectors(q32, q_sq, self.metric)
        lim = limit(self._seed_threshold(q_work, lb, k), bounds.d, bounds.e)
        cand = lb <= lim[:, None]
        if not np.isfinite(lim).all():
            cand &= np.isfinite(lb)
        cols = np.flatnonzero(cand.any(axis=0) if cand.shape[0] > 1 else cand[0])
        if cols.size > _DENSE_SHARE * n:
            return self._knn_scan(q32, k, exclude_rows, exclude_ids, None)
        b = q32.shape[0]
        if cols.size == 0:
            return np.full((b, k), _NO_ID, np.int64), np.full((b, k), np.inf, np.float32)
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

    def _seed_threshold(self, q_work: np.ndarray, lb: np.ndarray, k: int) -> np.ndarray:
        """Per query, an upper bound on the s of its k-th neighbour, widened to include
        float32 ties with it: the k-th exact s among the rows of smallest bound (+inf when
        fewer than k rows are left)."""
        b, n = lb.shape
        m = min(max(_SEEDS, k), n)
        if m < k:
            return np.full(b, np.inf)
        cols = _seed_rows(lb, m)
        qi, j = np.nonzero(np.isfinite(np.take_along_axis(lb, cols, axis=1)))
        s = np.full((b, m), np.inf)
        s[qi, j] = pair_s(q_work, qi, cols[qi, j], self._work)
        return threshold(np.partition(s, k - 1, axis=1)[:, k - 1], np.zeros(b))

    def _rank_among(self, q32: np.ndarray, q_sq: np.ndarray, cols: np.ndarray,
                    cand: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        """Per query, the ``m`` smallest approx s among ``cols`` where ``cand`` (queries x
        cols) is set: (values, rows), +inf padded."""
        b = q32.shape[0]
        best = (np.full((b, m), np.inf, np.float32), np.zeros((b, m), np.int64))
        step = max(256, _matrix.BLOCK_BYTES // (4 * (b + self.dim)))  # gathered rows, values
        for s in range(0, cols.size, step):
            c = cols[s : s + step]
            vals = approx_s(q32, q_sq, self._rows.take(c), self._sq[c], self.metric)
            vals[~cand[:, s : s + step]] = np.inf
            best = merge_top_m(best, vals, s, m)
        return best[0], cols[best[1]]

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

    def _recompute(self, rows: np.ndarray) -> None:
        for s in range(0, rows.size, _PASS_ROWS):
            r = rows[s : s + _PASS_ROWS]
            self._nbr_ids[r], self._nbr_dist[r] = self._knn(self._rows.take(r), self.k, r)

    # ------------------------------------------------------------------ changes

    def plan_upsert(self, ids: Sequence[int] | np.ndarray, vectors: Any,
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Validate; drop duplicates (last wins) and vectors identical to the stored ones."""
        ids_arr = as_ids(ids)
        vecs = validate_vectors(vectors, ids_arr.size, self.dim, self.metric)
        if ids_arr.size == 0:
            return ids_arr, vecs
        keep = last_wins(ids_arr)
        ids_arr, vecs = ids_arr[keep], vecs[keep]
        rows = self._row_of(ids_arr)
        same = np.zeros(ids_arr.size, bool)
        old = rows >= 0
        same[old] = (self._rows.take(rows[old]) == vecs[old]).all(axis=1)
        return ids_arr[~same], vecs[~same]

    def plan_remove(self, ids: Iterable[int] | np.ndarray) -> np.ndarray:
        """Validate a removal; return the distinct ids that are present (sorted)."""
        ids_arr = np.unique(as_ids(ids))
        return ids_arr[self._row_of(ids_arr) >= 0]

    def upsert(self, ids: Sequence[int] | np.ndarray, vectors: Any) -> set[int]:
        """Add or update products; returns the products whose list changed, plus new ones."""
        return self.apply_upsert(*self.plan_upsert(ids, vectors))

    def remove(self, ids: Iterable[int] | np.ndarray) -> set[int]:
        """Remove products (unknown ids ignored); returns the products whose list changed."""
        return self.apply_remove(self.plan_remove(ids))

    def apply_upsert(self, ids: np.ndarray, vecs: np.ndarray) -> set[int]:
        """Apply the output of ``plan_upsert``."""
        self.last_change = None
        if ids.size == 0:
            return set()
        old_rows = self._row_of(ids)
        old = old_rows[old_rows >= 0]
        holders = self._holders(ids[old_rows >= 0])
        before = self._lists_by_id(np.union1d(holders, old))
        self._kill(old)
        rows = self._append(ids, vecs)
        merged = self._place_upserted(rows)
        holders = holders[self._alive[holders]]
        self._recompute(holders)
        touched = np.union1d(np.union1d(merged, holders), rows)
        return self._finish(touched, before, set(ids[old_rows < 0].tolist()))

    def apply_remove(self, present: np.ndarray) -> set[int]:
        """Apply the output of ``plan_remove``."""
        self.last_change = None
        if present.size == 0:
            return set()
        self._kill(self._row_of(present))
        holders = self._holders(present)
        before = self._lists_by_id(holders)
        self._recompute(holders)
        return self._finish(holders, before, set())

    def _lists_by_id(self, rows: np.ndarray) -> dict[int, tuple[bytes, bytes]]:
        return {int(self._ids[r]): (self._nbr_ids[r].tobytes(), self._nbr_dist[r].tobytes())
                for r in rows.tolist()}

    def _finish(self, touched: np.ndarray, before: dict[int, tuple[bytes, bytes]],
                added: set[int]) -> set[int]:
        """Record ``last_change`` (the lists of the touched rows); return the changed set."""
        self.last_change = ListChange(self._ids[touched].copy(), self._nbr_ids[touched].copy(),
                                      self._nbr_dist[touched].copy())
        changed = set(added)
        for r in touched.tolist():
            pid = int(self._ids[r])
            now = (self._nbr_ids[r].tobytes(), self._nbr_dist[r].tobytes())
            if before.get(pid) != now:
                changed.add(pid)
        return changed

    def _place_upserted(self, rows: np.ndarray) -> np.ndarray:
        """Lists of the upserted ``rows`` and merges into the others; returns merged rows.
        One scan per block of upserted rows serves both (the lower bounds when pruned)."""
        merged: list[np.ndarray] = []
        step = _PASS_ROWS if self._low is None else self._bound_rows()
        for s in range(0, rows.size, step):
            r = rows[s : s + step]
            q32 = self._rows.take(r)
            bounds = None if self._low is None else self._lower_bounds(q32, raw_sq(q32))
            merged.append(self._merge_block(r, q32, rows, bounds))
            self._nbr_ids[r], self._nbr_dist[r] = self._knn(q32, self.k, r, bounds=bounds)
        out = np.unique(np.concatenate(merged)) if merged else np.empty(0, np.int64)
        return np.setdiff1d(out, rows)

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
        step = max(256, _matrix.BLOCK_BYTES // (4 * self.dim))
        for i in np.unique(qi).tolist():
            mine = np.flatnonzero(qi == i)
            for s in range(0, mine.size, step):
                part = mine[s : s + step]
                vals = approx_s(q32[i : i + 1], q_sq[i : i + 1], self._rows.take(col[part]),
                                self._sq[col[part]], self.metric)[0]
                keep[part] = vals <= threshold(kth_s[part], e[i])
        return keep

    def _merge_block(self, rows: np.ndarray, q32: np.ndarray, upserted: np.ndarray,
                     bounds: _Bounds | None) -> np.ndarray:
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
            if col.size <= _DENSE_SHARE * self._n_rows:
                keep = self._approx_near(q32, qi, col)
                return self._merge_pairs(rows[qi[keep]], col[keep])
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
        for s in range(0, src.size, _PAIR_CHUNK):  # bounded memory: pairs gathered in chunks
            part = slice(s, s + _PAIR_CHUNK)
            d[part] = canonical(self._work(src[part]), self._work(dst[part]), self.metric)
        sid = self._ids[src]
        kd = self._nbr_dist[dst, -1]
        kid = np.where(self._nbr_ids[dst, -1] < 0, _INT64_MAX, self._nbr_ids[dst, -1])
        win = (d < kd) | ((d == kd) & (sid < kid))
        src, dst, d, sid = src[win], dst[win], d[win], sid[win]
        for r in np.unique(dst).tolist():
            mine = dst == r
            c_ids = np.concatenate([self._nbr_ids[r], sid[mine]])
            c_d = np.concatenate([self._nbr_dist[r], d[mine]])
            order = np.lexsort((np.where(c_ids < 0, _INT64_MAX, c_ids), c_d))[: self.k]
            self._nbr_ids[r], self._nbr_dist[r] = c_ids[order], c_d[order]
        return np.unique(dst)

    def apply_lists(self, change: ListChange) -> None:
        """Write lists computed elsewhere (replaying a logged delta)."""
        rows = self._row_of(change.ids)
        if (rows < 0).any():
            raise MatrixError("a logged list belongs to a product not in the index")
        self._nbr_ids[rows], self._nbr_dist[rows] = change.nbr_ids, change.nbr_dist

    def apply_vectors(self, op: str, ids: np.ndarray, vecs: np.ndarray) -> None:
        """Replay the row changes of a logged upsert/remove (lists come from ``apply_lists``)."""
        rows = self._row_of(ids)
        self._kill(rows[rows >= 0])
        if op == "upsert":
            self._append(ids, vecs)

    # ------------------------------------------------------------------ reads

    def __len__(self) -> int:
        return self._n

    def __contains__(self, product_id: object) -> bool:
        return is_int(product_id) and self._row_of(np.array([int(product_id)]))[0] >= 0

    def __repr__(self) -> str:
        return (f"TopKIndex(n={self._n}, rows={self._n_rows}, dim={self.dim}, "
                f"metric={self.metric!r}, k={self.k}, version={self.version})")

    def _live(self) -> np.ndarray:
        return np.flatnonzero(self._alive[: self._n_rows])

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
        for s in range(0, rows.size, _PASS_ROWS):
            r = rows[s : s + _PASS_ROWS]
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

