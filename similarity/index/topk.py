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

``TopKIndex`` is composed of one class per role, each in its own module:
``topk_rows`` (vector rows, base and tail), ``topk_state`` (the per-row arrays), ``topk_pruning``
(the basis and the bounds scan), ``topk_scan`` and ``topk_search`` (exact search, full and
pruned), ``topk_merge`` and ``topk_changes`` (upserts and removals), ``topk_reads`` (reads);
``topk_tuning`` holds the sizes of their passes. This module holds the constructors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from similarity.errors import MatrixError
from similarity.index import topk_tuning as tuning
from similarity.index.dense import (
    METRICS,
    DistanceMatrix,
    as_ids,
    check_int,
    last_wins,
    validate_vectors,
)
from similarity.index.exact import raw_sq
from similarity.index.inplace import adopt_state
from similarity.index.prune import Basis
from similarity.index.topk_changes import ListChange, TopKChanges
from similarity.index.topk_reads import TopKReads
from similarity.index.topk_tuning import PRUNE_MIN_ROWS
from similarity.model.spec import EMBEDDING_DIM

__all__ = ["PRUNE_MIN_ROWS", "ListChange", "TopKIndex"]


def _empty_lists(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` lists of ``k`` slots with no neighbour yet (ids -1, distances +inf)."""
    return np.full((n, k), tuning.NO_ID, np.int64), np.full((n, k), np.inf, np.float32)


class TopKIndex(TopKChanges, TopKReads):
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
        self.last_change = None
        self._set_state(np.empty(0, np.int64), np.empty((0, self.dim), np.float32),
                        np.empty(0, np.float64), *_empty_lists(0, self.k))

    def __repr__(self) -> str:
        return (f"TopKIndex(n={self._n}, rows={self._n_rows}, dim={self.dim}, "
                f"metric={self.metric!r}, k={self.k}, version={self.version})")

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
            nbr_ids, nbr_dist = _empty_lists(n, t.k)
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
        if len(t) >= tuning.PRUNE_MIN_ROWS:
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
        t._set_state(ids_arr, vecs, raw_sq(vecs), *_empty_lists(n, t.k))
        if n >= tuning.PRUNE_MIN_ROWS:
            t.enable_pruning()
        t._recompute(np.arange(n))
        return t

    def replace_state(self, other: Any) -> None:
        """Make this object hold ``other``'s state (used to reload in place)."""
        adopt_state(self, other)
