"""similarity.evaluation.kfold on small catalogs with known answers: every labelled item is scored once,
in a space fitted without its fold, against the whole catalog."""

from __future__ import annotations

import numpy as np
import pytest

from similarity.embedding.projection import stratified_folds
from similarity.evaluation.kfold import kfold_neighbours, kfold_report

LABELS = ["a", "a", "a", "a", "b", "b", "b", "b"]


def memorising_fit(labels, calls):
    """A 'projection' that knows only what it was fitted on: a fitted item maps to its
    category's one-hot, an item it never saw to the origin (it has learned nothing about it)."""
    cats = sorted(set(labels))

    def fit(train: np.ndarray):
        calls.append(set(train.tolist()))

        def transform(rows: np.ndarray) -> np.ndarray:
            z = np.zeros((rows.size, len(cats)))
            for i, row in enumerate(rows.tolist()):
                if row in calls[-1]:
                    z[i, cats.index(labels[row])] = 1.0
            return z

        return transform

    return fit


def test_the_fold_is_never_fitted_on_and_scores_what_a_held_out_item_gets():
    calls: list[set[int]] = []
    report = kfold_report(LABELS, memorising_fit(LABELS, calls), k=3, folds=2)
    folds = [set(f.tolist()) for f in stratified_folds(LABELS, 2, seed=0)]
    # Each fit saw exactly the other fold.
    assert calls == [set(range(8)) - f for f in folds]
    # A held-out item sits at the origin with the other 3 of its fold (distance 0), 1 away from
    # the 4 fitted ones: its 3 neighbours are the rest of its fold, 1 of its own category
    # (folds are stratified: 2 a + 2 b each). P@3 = 1/3; AP@3 with R = 3: the one relevant
    # item's rank r gives (1/r) / 3.
    assert report.n == 8
    assert report.precision == pytest.approx(1 / 3)
    queries, ranked = kfold_neighbours(LABELS, memorising_fit(LABELS, []), k=3, folds=2)
    assert sorted(queries.tolist()) == list(range(8))
    for q, row in zip(queries.tolist(), ranked.tolist(), strict=True):
        fold = next(f for f in folds if q in f)
        assert set(row) == fold - {q}  # ties in catalog order, never itself


def test_fitted_on_everything_the_same_fit_is_perfect_in_sample():
    """The contrast the held-out figure exists for: fitted on all labels, the same 'projection'
    scores 1.0 on them."""
    calls: list[set[int]] = [set(range(8))]
    fit = memorising_fit(LABELS, calls)
    transform = fit(np.arange(8))
    z = transform(np.arange(8))
    d = ((z[:, None] - z[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    top = np.argsort(d, axis=1, kind="stable")[:, :3]
    assert all(LABELS[j] == LABELS[i] for i in range(8) for j in top[i])


def test_unlabelled_items_stay_in_the_catalog_but_are_neither_fitted_nor_scored():
    labels = ["a", "a", "b", "b", ""]
    seen: list[set[int]] = []

    def fit(train: np.ndarray):
        seen.append(set(train.tolist()))
        pts = np.array([[0.0], [0.1], [5.0], [5.1], [0.05]])  # the unlabelled one amid the a's
        return lambda rows: pts[rows]

    queries, ranked = kfold_neighbours(labels, fit, k=1, folds=2)
    assert 4 not in queries.tolist() and all(4 not in s for s in seen)
    first = dict(zip(queries.tolist(), ranked[:, 0].tolist(), strict=True))
    assert first[0] == 4 and first[1] == 4  # the unlabelled item is still a neighbour
    report = kfold_report(labels, fit, k=1, folds=2)
    assert report.n == 4 and report.precision == pytest.approx(0.5)  # a's lose place 1 to it
