"""similarity.evaluation.category_vote_cv: the vote a catalog chooses for itself, on synthetic
catalogs where the answer is known (clear categories, two that cannot be told apart, noise),
and that the space is refitted without the fold it scores."""

from __future__ import annotations

import numpy as np
import pytest

from similarity.evaluation.category_vote_cv import (
    CV_TIE,
    choose_category_vote,
    cv_rankings,
    vote_scores,
)

PER_CLASS, DIM = 40, 8


def clusters(classes: int, spread: float, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Categories and vectors around one centre per class (unit centres, ``spread`` noise)."""
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(classes), PER_CLASS)
    centres = rng.normal(size=(classes, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return [f"c{c}" for c in codes.tolist()], centres[codes] + spread * rng.normal(size=(codes.size, DIM))


def fixed(vectors: np.ndarray, queries: np.ndarray | None = None):
    """A space with nothing fitted: the same vectors in every fold."""
    return lambda train: (vectors, vectors if queries is None else queries)


def test_clear_categories_are_predicted_and_lift_category_precision():
    labels, x = clusters(4, 0.3)
    choice = choose_category_vote(labels, np.arange(len(labels)), fixed(x))
    assert choice.vote is not None
    p10, coverage, accuracy = choice.scores[(choice.vote.size, choice.vote.min_share)]
    assert p10 > choice.baseline + CV_TIE and coverage > 0.9 and accuracy > 0.95
    assert choice.queries == len(labels)
    assert "category prediction: vote of the" in choice.summary() and "with it (coverage" in choice.summary()


def test_two_categories_that_cannot_be_told_apart_are_filtered_less_often_than_the_rest():
    labels, x = clusters(4, 0.3)
    rng = np.random.default_rng(5)
    twins = np.asarray([lab in ("c0", "c1") for lab in labels])
    labels = [str(rng.choice(["c0", "c1"])) if twin else lab for lab, twin in zip(labels, twins, strict=True)]
    x[twins] = x[twins].mean(0) + 0.3 * rng.normal(size=(int(twins.sum()), DIM))  # one cloud, two names
    choice = choose_category_vote(labels, np.arange(len(labels)), fixed(x))
    assert choice.vote is not None
    named = np.asarray(labels, dtype=object)
    queries, ranked = cv_rankings(labels, np.arange(len(labels)), fixed(x), k=choice.vote.size)
    sure = np.array([choice.vote.predict(row).confident for row in named[ranked].tolist()])
    assert sure[twins[queries]].mean() < 0.75 < 0.9 < sure[~twins[queries]].mean()
    best = max(p for p, _, _ in choice.scores.values())
    chosen = choice.scores[(choice.vote.size, choice.vote.min_share)]
    assert chosen[0] > best - 0.05 and chosen[1] < 1.0  # as good, filtering fewer lists


def test_categories_that_are_noise_are_never_predicted():
    rng = np.random.default_rng(3)
    labels = [f"c{c}" for c in rng.integers(0, 4, size=400).tolist()]
    choice = choose_category_vote(labels, np.arange(len(labels)), fixed(rng.normal(size=(400, DIM))))
    assert choice.vote is None
    assert "category prediction: none (catalog CV over 400 queries" in choice.summary()


def test_each_fold_is_ranked_in_a_space_fitted_without_it_against_the_other_folds():
    labels, x = clusters(3, 0.3)
    views = x + 0.01  # one view per product, query_of = its product
    seen: list[np.ndarray] = []

    def fold_space(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seen.append(train)
        return x, views

    queries, ranked = cv_rankings(labels, np.arange(len(labels)), fold_space, k=5)
    assert len(seen) == 4 and sorted(queries.tolist()) == list(range(len(labels)))
    for train in seen:
        held = np.setdiff1d(np.arange(len(labels)), train)
        rows = np.isin(queries, held)
        assert not np.isin(ranked[rows], held).any()  # never a product of its own fold
        assert not np.isin(held, train).any()


def test_unlabelled_products_are_neither_scored_nor_ranked():
    labels, x = clusters(3, 0.3)
    labels[:6] = [""] * 3 + [None] * 3  # type: ignore[list-item]
    queries, ranked = cv_rankings(labels, np.arange(len(labels)), fixed(x), k=10)
    assert not np.isin(queries, np.arange(6)).any() and not np.isin(ranked, np.arange(6)).any()


def test_precision_with_the_vote_is_one_or_zero_where_confident():
    truth = np.asarray(["a", "b"], dtype=object)
    ranked = np.asarray([["a"] * 6 + ["b"] * 4, ["a"] * 7 + ["b"] * 3], dtype=object)
    baseline, scores = vote_scores(truth, ranked, [10], [0.6, 0.8])
    assert baseline == pytest.approx((0.6 + 0.3) / 2)
    assert scores[(10, 0.6)] == pytest.approx((0.5, 1.0, 0.5))  # both confident, one right
    assert scores[(10, 0.8)] == pytest.approx((baseline, 0.0, 0.0))  # neither confident


def test_a_bad_grid_is_refused():
    labels, x = clusters(2, 0.3)
    with pytest.raises(ValueError, match="vote sizes"):
        choose_category_vote(labels, np.arange(len(labels)), fixed(x), sizes=(0,))


def test_a_catalog_smaller_than_the_vote_leaves_empty_places():
    labels, x = clusters(2, 0.3)  # 80 products: 60 in each fold's catalog, votes of up to 30
    labels = labels[:22] + labels[40:62]  # 44: folds of 10 or 12, catalogs of 32 or 34
    x = np.vstack([x[:22], x[40:62]])
    _, ranked = cv_rankings(labels, np.arange(len(labels)), fixed(x), k=40)
    assert ranked.shape == (len(labels), 40) and (ranked[:, -1] == -1).all() and (ranked[:, :32] >= 0).all()
    choice = choose_category_vote(labels, np.arange(len(labels)), fixed(x))
    assert choice.scores[(30, 0.0)][1] == 1.0  # the missing places vote for nothing


def test_too_few_products_to_cross_validate_predict_nothing():
    choice = choose_category_vote(["a", "b"], np.arange(2), fixed(np.eye(2)))
    assert choice.vote is None and choice.queries == 0
    assert "too few labelled products" in choice.summary()
