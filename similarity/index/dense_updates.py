"""Changes to the dense layout: upserts and removals, planned (validated, reduced to what
changes) then applied incrementally, returning the products whose neighbour list changed."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from similarity.errors import MatrixFullError
from similarity.index.dense_distances import DenseDistances
from similarity.index.dense_inputs import INT64_MAX, as_ids, last_wins
from similarity.index.dense_storage import NO_ID, format_bytes, memory_needed

# Upserts of more products than this recompute every list instead of merging candidates
# (merging holds up to N x (k + m) candidates; the index takes batches of up to ~300).
_MERGE_MAX = 512


class DenseUpdates(DenseDistances):
    """Upsert and removal, each as a ``plan_*`` that changes nothing and an ``apply_*``."""

    def plan_upsert(self, ids: Sequence[int] | np.ndarray, vectors: Any) -> tuple[
        np.ndarray, np.ndarray
    ]:
        """Validate an upsert and reduce it to the rows that would change something.

        Returns (ids int64, vectors float32): duplicates resolved (last wins), rows whose
        vector is identical to the stored one dropped. Raises MatrixError on bad input and
        MatrixFullError when the new products would exceed ``max_items``. Changes nothing.
        """
        ids_arr = as_ids(ids)
        vecs = self._as_vectors(vectors, ids_arr.size)
        if ids_arr.size == 0:
            return ids_arr, vecs
        keep = last_wins(ids_arr)
        ids_arr, vecs = ids_arr[keep], vecs[keep]
        idx = np.fromiter((self._index.get(i, -1) for i in ids_arr.tolist()), np.int64,
                          ids_arr.size)
        existing = idx >= 0
        if existing.any():
            same = np.zeros(ids_arr.size, bool)
            same[existing] = (self._vecs[idx[existing]] == vecs[existing]).all(axis=1)
            ids_arr, vecs, existing = ids_arr[~same], vecs[~same], existing[~same]
        n_new = int((~existing).sum())
        if self._n + n_new > self.max_items:
            total = self._n + n_new
            raise MatrixFullError(
                f"cannot add {n_new} product(s) to a matrix holding {self._n}: the limit is "
                f"max_items={self.max_items}; {total} products would need about "
                f"{format_bytes(memory_needed(total, self.dim))} of memory "
                f"({total}x{total} float32 distances plus vectors)"
            )
        return ids_arr, vecs

    def plan_remove(self, ids: Iterable[int] | np.ndarray) -> np.ndarray:
        """Validate a removal; return the distinct ids that are present (sorted)."""
        ids_arr = as_ids(ids)
        present = [i for i in np.unique(ids_arr).tolist() if i in self._index]
        return np.asarray(present, dtype=np.int64)

    def upsert(self, ids: Sequence[int] | np.ndarray, vectors: Any) -> set[int]:
        """Add new products or replace the vectors of existing ones.

        Only the affected rows/columns are computed. Returns the ids of exactly the products
        whose top-k list changed, plus the products added by this call.
        """
        ids_arr, vecs = self.plan_upsert(ids, vectors)
        return self.apply_upsert(ids_arr, vecs)

    def apply_upsert(self, ids: np.ndarray, vecs: np.ndarray) -> set[int]:
        """Apply the output of ``plan_upsert`` (distinct ids, validated float32 vectors)."""
        if ids.size == 0:
            return set()
        n_old = self._n
        old_nbr_ids = self._nbr_ids[:n_old].copy()
        old_nbr_d = self._nbr_dist[:n_old].copy()
        idx, new_ids = self._place(ids, vecs)
        full = self._rows_to_recompute(idx, ids[~np.isin(ids, new_ids)], old_nbr_ids)
        others = np.flatnonzero(~full[:n_old])
        merged = self._merge_upserted(ids, idx, others, old_nbr_ids[others], old_nbr_d[others])
        full_rows = np.flatnonzero(full)
        self._recompute_rows(full_rows)
        touched = np.union1d(full_rows[full_rows < n_old], merged)
        diff = (self._nbr_ids[touched] != old_nbr_ids[touched]).any(axis=1) | (
            self._nbr_dist[touched] != old_nbr_d[touched]
        ).any(axis=1)
        return set(self._ids[touched[diff]].tolist()) | set(new_ids.tolist())

    def _place(self, ids: np.ndarray, vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Store the upserted vectors (new ones in new rows) and their distance rows/columns.

        Returns (row of every upserted id, the ids that are new).
        """
        m, n_old = ids.size, self._n
        idx = np.fromiter((self._index.get(i, -1) for i in ids.tolist()), np.int64, m)
        is_new = idx < 0
        new_ids = ids[is_new]
        n = n_old + new_ids.size
        self._reserve(n)
        new_rows = np.arange(n_old, n)
        idx[is_new] = new_rows
        self._ids[new_rows] = new_ids
        for i, row in zip(new_ids.tolist(), new_rows.tolist(), strict=True):
            self._index[i] = row
        self._vecs[idx] = vecs
        self._work[idx], self._sq[idx] = self._prepare_work(vecs)
        self._n = n
        self._nbr_ids[new_rows] = NO_ID
        self._nbr_dist[new_rows] = np.inf
        self._write_rows(idx)
        return idx, new_ids

    def _rows_to_recompute(self, idx: np.ndarray, updated: np.ndarray,
                           old_nbr_ids: np.ndarray) -> np.ndarray:
        """Mask of rows whose list is recomputed from scratch: the upserted ones, and those
        whose list held an updated product (its distance changed, possibly for the worse);
        every row when the batch is large."""
        full = np.zeros(self._n, bool)
        full[idx] = True
        n_old = old_nbr_ids.shape[0]
        if idx.size > _MERGE_MAX:
            full[:] = True
        elif updated.size and n_old:
            full[:n_old] |= np.isin(old_nbr_ids, updated).any(axis=1)
        return full

    def _merge_upserted(self, ids: np.ndarray, idx: np.ndarray, others: np.ndarray,
                        o_ids: np.ndarray, o_d: np.ndarray) -> np.ndarray:
        """Rows ``others`` can only gain upserted products: merge those that beat the k-th.

        ``o_ids``/``o_d`` are the rows' lists before the upsert. Returns the merged rows.
        """
        if others.size == 0:
            return others
        kth_id = np.where(o_ids[:, -1] < 0, INT64_MAX, o_ids[:, -1])
        cand = self._d[idx][:, others]
        beats = (cand < o_d[:, -1]) | ((cand == o_d[:, -1]) & (ids[:, None] < kth_id))
        hit = beats.any(axis=0)
        merged = others[hit]
        if merged.size:
            c_ids = np.concatenate(
                [o_ids[hit], np.broadcast_to(ids, (merged.size, ids.size))], axis=1)
            c_d = np.concatenate([o_d[hit], cand[:, hit].T], axis=1)
            key = np.where(c_ids < 0, INT64_MAX, c_ids)
            order = np.lexsort((key, c_d), axis=1)[:, : self.k]
            self._nbr_ids[merged] = np.take_along_axis(c_ids, order, axis=1)
            self._nbr_dist[merged] = np.take_along_axis(c_d, order, axis=1)
        return merged

    def remove(self, ids: Iterable[int] | np.ndarray) -> set[int]:
        """Remove products; unknown ids are ignored. Returns the products whose list changed."""
        return self.apply_remove(self.plan_remove(ids))

    def apply_remove(self, present: np.ndarray) -> set[int]:
        """Apply the output of ``plan_remove`` (distinct ids that are present)."""
        if present.size == 0:
            return set()
        for pid in present.tolist():
            self._swap_remove(self._index.pop(pid))
        n = self._n
        holders = np.flatnonzero(np.isin(self._nbr_ids[:n], present).any(axis=1))
        self._recompute_rows(holders)
        return set(self._ids[holders].tolist())
