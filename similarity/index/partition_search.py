"""Search across the partitions too small to prune, as one pruned scan of them all.

A partition below ``PRUNE_MIN_ROWS`` has no basis, so searching each one reads all its
vectors, and ten such searches read the whole catalog. ``ScanBounds`` keeps one basis for
all of them and every row's low coordinates in it (``similarity.index.prune``), grown as
rows are appended: a partition's rows are append-only for as long as its ``VectorRows``
object lives (a reload or a rebuild makes a new one, whose coordinates are computed anew).
A search then does what a catalog-wide index does (``similarity.index.topk_search``): bounds
of every row, a threshold from the exact distances of the best-bounded seeds, and the rows
whose bound is within it settled canonically and ordered by (distance, id); any basis gives
valid bounds, so the answer is exact whatever the basis was fitted on. Too many candidates,
or too few rows for a basis, and ``nearest_in_scan`` ranks every row in float32 as one
shortlist, settled once.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import TypeGuard

import numpy as np

from similarity.index import topk_tuning as tuning
from similarity.index.exact import (
    SHORTLIST_EXTRA,
    approx_s,
    rank_error,
    raw_sq,
    settle_pairs,
    settle_rows,
    top_m,
    work_vectors,
)
from similarity.index.prune import DIMS, FIT_SAMPLE, Basis, fit_basis, limit, low_coords, slack
from similarity.index.topk import TopKIndex
from similarity.index.topk_rows import VectorRows
from similarity.index.topk_search import seed_threshold
from similarity.index.topk_tuning import PRUNE_MIN_ROWS  # a global here: tests lower it

Neighbours = list[tuple[int, float]]
Take = Callable[[np.ndarray], np.ndarray]


def scanned_whole(part: object) -> TypeGuard[TopKIndex]:
    """Whether a partition's search reads every row (a top-k index without a basis)."""
    return isinstance(part, TopKIndex) and part.basis is None and len(part) > 0


def _take_work(parts: Sequence[TopKIndex], owner: np.ndarray, rows: np.ndarray,
               vectors: bool = False) -> Take:
    """Working vectors (or with ``vectors`` the float32 vectors) of columns that stand for
    (``owner[c]``, ``rows[c]``)."""

    def take(c: np.ndarray) -> np.ndarray:
        out = np.empty((c.size, parts[0].dim), np.float32 if vectors else np.float64)
        for p in np.unique(owner[c]).tolist():
            sel = owner[c] == p
            part = parts[p]
            out[sel] = (part._rows.take if vectors else part._work)(rows[c[sel]])
        return out

    return take


def _as_list(nid: np.ndarray, nd: np.ndarray) -> Neighbours:
    keep = nid >= 0
    return list(zip(nid[keep].tolist(), nd[keep].tolist(), strict=True))


def nearest_in_scan(parts: Sequence[TopKIndex], q32: np.ndarray, k: int,
                    exclude_ids: np.ndarray) -> Neighbours | None:
    """The exact ``k`` nearest of one query (1 x dim float32) among ``parts``' live rows by
    a float32 ranking of every row; None when near-ties overflow the shortlist. The union's
    m-th value is at most any partition's m-th, so a row left out of its partition's
    shortlist is never within the settled threshold unless the union's shortlist is too."""
    if not parts or k == 0:
        return []
    m = k + SHORTLIST_EXTRA
    q_sq = raw_sq(q32)
    lists = [part._candidates(q32, q_sq, m, None, exclude_ids) for part in parts]
    vals, cols = top_m(np.concatenate([v for v, _ in lists], axis=1), m)
    rows = np.concatenate([r[0] for _, r in lists])
    ids = np.concatenate([part._ids[r[0]] for part, (_, r) in zip(parts, lists, strict=True)])
    metric = parts[0].metric
    e = rank_error(q_sq, max(part._sq_max for part in parts), q32.shape[1], metric)
    take = _take_work(parts, np.repeat(np.arange(len(parts)), m), rows)
    nid, nd, complete = settle_rows(work_vectors(q32, q_sq, metric), vals, cols, e, k, ids,
                                    take, metric)
    return _as_list(nid[0], nd[0]) if complete[0] else None


class _PartLow:
    """One partition's low coordinates (rows appended since are added on the next search)."""

    def __init__(self, part: TopKIndex, basis: Basis) -> None:
        self.rows: weakref.ref[VectorRows] = weakref.ref(part._rows)
        self.low = np.empty((0, basis.dims), np.float32)
        self.sq = np.empty(0, np.float64)

    def grown(self, part: TopKIndex, basis: Basis) -> _PartLow:
        """Coordinates of every row of ``part``: this entry grown, or a fresh one when the
        partition's rows are other rows now."""
        entry = self if self.rows() is part._rows else _PartLow(part, basis)
        done, n = entry.low.shape[0], part._n_rows
        if n > done:
            new = np.arange(done, n)
            z = low_coords(basis, part._work(new))
            entry.low = np.concatenate([entry.low, z])
            entry.sq = np.concatenate([entry.sq, raw_sq(z)])
        return entry


class ScanBounds:
    """A basis shared by the partitions searched whole, and their rows' low coordinates."""

    def __init__(self) -> None:
        self.basis: Basis | None = None
        self._fitted_on = 0
        self._parts: dict[int, _PartLow] = {}

    def lows(self, parts: Sequence[TopKIndex]) -> list[_PartLow] | None:
        """Each partition's coordinates, up to date; None below ``PRUNE_MIN_ROWS`` rows."""
        n = sum(len(part) for part in parts)
        if n < PRUNE_MIN_ROWS:
            return None
        if self.basis is None or n >= 2 * self._fitted_on:
            self.basis, self._fitted_on, self._parts = _fit(parts, n), n, {}
        fresh = {}
        for part in parts:
            old = self._parts.get(id(part._rows))
            fresh[id(part._rows)] = (old or _PartLow(part, self.basis)).grown(part, self.basis)
        self._parts = fresh
        return [fresh[id(part._rows)] for part in parts]


def _fit(parts: Sequence[TopKIndex], n: int) -> Basis:
    """PCA basis of a sample of the partitions' live rows (as ``enable_pruning`` fits)."""
    share = min(1.0, FIT_SAMPLE / n)
    rng = np.random.default_rng(0)
    work = []
    for part in parts:
        live = part._live()
        pick = rng.choice(live, max(1, round(share * live.size)), replace=False)
        work.append(part._work(np.sort(pick)))
    return fit_basis(np.concatenate(work), DIMS)


def nearest_pruned(parts: Sequence[TopKIndex], q32: np.ndarray, k: int,
                   exclude_ids: np.ndarray, bounds: ScanBounds) -> Neighbours | None:
    """The exact ``k`` nearest among ``parts``' live rows, pruned by ``bounds``; None when
    it does not prune (too few rows for a basis, or too many candidates)."""
    lows = bounds.lows(parts)
    if lows is None or bounds.basis is None or k == 0:
        return None
    metric = parts[0].metric
    q_sq = raw_sq(q32)
    q_work = work_vectors(q32, q_sq, metric)
    zq = low_coords(bounds.basis, q_work)
    zq_sq = raw_sq(zq)
    lb = np.concatenate([(zq @ entry.low.T)[0] for entry in lows]) * np.float32(-2.0)
    lb += zq_sq.astype(np.float32)
    lb += np.concatenate([np.where(part._alive[: part._n_rows], entry.sq, np.inf)
                          for part, entry in zip(parts, lows, strict=True)])
    starts = np.cumsum([0] + [part._n_rows for part in parts])
    owner = np.repeat(np.arange(len(parts)), np.diff(starts))
    rows = np.arange(starts[-1]) - starts[owner]
    for p, part in enumerate(parts):
        held = part._row_of(exclude_ids) if exclude_ids.size else np.empty(0, np.int64)
        lb[starts[p] + held[held >= 0]] = np.inf
    take = _take_work(parts, owner, rows)
    lim = limit(seed_threshold(q_work, lb[None, :], k, take), *slack(
        zq_sq, max(float(entry.sq.max(initial=0.0)) for entry in lows), bounds.basis.dims))
    cand = np.flatnonzero((lb <= lim[0]) & np.isfinite(lb))
    if cand.size > tuning.DENSE_SHARE * lb.size:
        return None
    ids = np.concatenate([part._ids[: part._n_rows] for part in parts])
    x32 = _take_work(parts, owner, rows, vectors=True)(cand)
    vals, best = top_m(approx_s(q32, q_sq, x32, raw_sq(x32), metric), k + SHORTLIST_EXTRA)
    e = rank_error(q_sq, max(part._sq_max for part in parts), q32.shape[1], metric)
    nid, nd, complete = settle_rows(q_work, vals, cand[best], e, k, ids, take, metric)
    if not complete[0]:  # rare: too many near-ties for the shortlist; settle every candidate
        nid, nd = settle_pairs(q_work, np.zeros(cand.size, np.int64), cand, 1, k, ids, take,
                               metric)
    return _as_list(nid[0], nd[0])


def nearest_across(parts: Sequence[TopKIndex], q32: np.ndarray, k: int,
                   exclude_ids: np.ndarray, bounds: ScanBounds) -> Neighbours | None:
    """The exact ``k`` nearest among ``parts``: pruned when it prunes, else by one float32
    ranking; None when neither settles (search each partition then)."""
    found = nearest_pruned(parts, q32, k, exclude_ids, bounds)
    return found if found is not None else nearest_in_scan(parts, q32, k, exclude_ids)
