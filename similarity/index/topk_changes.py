"""``TopKChanges``: upserts and removals that keep every top-k list exact, and their replay.

- upsert: the upserted rows get their own lists and are merged into every other list they
  may enter (``TopKMerge``); rows whose list held an updated product are recomputed;
- remove: rows whose list held a removed product are recomputed.

``apply_*`` return exactly the products whose list changed plus those added, like
``DistanceMatrix``, and record the lists they wrote in ``last_change`` (a ``ListChange``) so
the store can log them: replaying a delta then just writes lists, it never recomputes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from similarity.errors import MatrixError
from similarity.index import topk_tuning as tuning
from similarity.index.dense import as_ids, last_wins, validate_vectors
from similarity.index.exact import raw_sq
from similarity.index.topk_merge import TopKMerge


@dataclass(frozen=True)
class ListChange:
    """Lists written by one operation: ``ids[i]``'s list is now (nbr_ids[i], nbr_dist[i])."""

    ids: np.ndarray
    nbr_ids: np.ndarray
    nbr_dist: np.ndarray


class TopKChanges(TopKMerge):
    """Planning and applying upserts and removals; writing logged rows and lists."""

    last_change: ListChange | None

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
        step = tuning.PASS_ROWS if self._low is None else self._bound_rows()
        for s in range(0, rows.size, step):
            r = rows[s : s + step]
            q32 = self._rows.take(r)
            bounds = None if self._low is None else self._lower_bounds(q32, raw_sq(q32))
            merged.append(self._merge_block(r, q32, rows, bounds))
            self._nbr_ids[r], self._nbr_dist[r] = self._knn(q32, self.k, r, bounds=bounds)
        out = np.unique(np.concatenate(merged)) if merged else np.empty(0, np.int64)
        return np.setdiff1d(out, rows)

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
