"""Held-out (k-fold) neighbour lists of a catalog queried against itself.

A projection fitted on the catalog's own labels and then scored on the same labels reports an
optimistic figure: it has seen the answers. Here every labelled item is scored exactly once,
by a space fitted *without* its fold:

1. the labelled items are split into ``folds`` stratified parts (similarity.embedding.projection's
   ``stratified_folds``, seeded); unlabelled items (label ``""`` or None) are never fitted on
   nor scored, but stay in the catalog;
2. for each part, ``fit(train_rows)`` returns the space fitted on the other parts' items;
   every item of the catalog is mapped into it, and each held-out item queries the whole
   catalog (itself excluded) by euclidean distance;
3. the lists are scored with similarity.evaluation.metrics's ``evaluate`` (category = label), like the
   stored lists of a catalog.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence

import numpy as np

from similarity.embedding.projection import stratified_folds
from similarity.evaluation.metrics import QualityReport, evaluate, rank

__all__ = ["Fit", "Transform", "held_out_rank", "kfold_neighbours", "kfold_report", "kfold_spaces"]

Transform = Callable[[np.ndarray], np.ndarray]  # catalog rows -> their vectors in the space
Fit = Callable[[np.ndarray], Transform]  # training rows -> the space fitted on them


def _labelled(labels: Sequence[Hashable | None]) -> np.ndarray:
    return np.asarray([i for i, lab in enumerate(labels) if lab not in ("", None)], dtype=np.int64)


def kfold_spaces(labels: Sequence[Hashable | None], fit: Fit, *, folds: int = 4,
                 seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Per fold, (its labelled rows, every catalog row's vector in the space fitted without
    them), float64 (see the module)."""
    scored = _labelled(labels)
    if scored.size == 0:
        return
    every = np.arange(len(labels))
    for part in stratified_folds([labels[i] for i in scored.tolist()], folds, seed=seed):
        held = scored[part]
        if held.size:
            yield held, np.asarray(fit(np.setdiff1d(scored, held))(every), dtype=np.float64)


def held_out_rank(z: np.ndarray, held: np.ndarray, k: int) -> np.ndarray:
    """(len(held), k) catalog rows nearest each held-out row of ``z`` by euclidean distance,
    itself excluded, ties by row."""
    q = z[held]
    d = np.maximum((q * q).sum(1)[:, None] + (z * z).sum(1)[None, :] - 2.0 * q @ z.T, 0.0)
    d[np.arange(held.size), held] = np.inf  # never its own neighbour
    return rank(d, k)


def kfold_neighbours(labels: Sequence[Hashable | None], fit: Fit, *, k: int, folds: int = 4,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(query rows, (Q, k') ranked catalog rows), each labelled row a query once, ranked in
    the space fitted without its fold (see the module). ``k' = min(k, N - 1)``."""
    k = min(k, len(labels) - 1)
    queries, ranked = [], []
    if k >= 1:
        for held, z in kfold_spaces(labels, fit, folds=folds, seed=seed):
            queries.append(held)
            ranked.append(held_out_rank(z, held, k))
    if not queries:
        return np.empty(0, np.int64), np.empty((0, max(k, 0)), np.int64)
    return np.concatenate(queries), np.concatenate(ranked)


def kfold_report(labels: Sequence[Hashable | None], fit: Fit, *, k: int, folds: int = 4,
                 seed: int = 0) -> QualityReport:
    """Precision@k and mAP@k of the held-out lists (see the module)."""
    queries, ranked = kfold_neighbours(labels, fit, k=k, folds=folds, seed=seed)
    named = [None if lab in ("", None) else lab for lab in labels]
    return evaluate([named[i] for i in queries.tolist()],
                    [[named[j] for j in row] for row in ranked.tolist()],
                    catalog_labels=named, k=k, queries_in_catalog=True)
