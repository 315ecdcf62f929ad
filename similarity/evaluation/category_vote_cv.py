"""Choosing the category vote (its size and confidence) by cross-validation inside a catalog.

Search by photo may show only the category a vote of the query's nearest products predicts
(similarity/index/category_vote.py). Whether, and from which share of the vote, that pays is
measured inside the catalog, never on shoppers' queries:

1. the labelled products are split into stratified folds; for each fold, ``fold_space(train
   rows)`` gives every catalog row's and every query's vector in the space fitted *without*
   the fold (a fitted projection must not have seen the products it is scored on);
2. the queries showing a held-out product (a shopper-style view of it, or its own photo)
   are ranked against the other folds' products;
3. for every vote size and minimum share of the grid, a query's category P@10 is 1 or 0 when
   the vote is confident (the list then holds only the predicted category: right or wrong),
   and its P@10 without the vote otherwise.

Predicting is chosen only when the best vote beats not predicting by more than ``CV_TIE``
and ``Z_PAYS`` standard errors of their per-query difference (the queries are the same, so
the difference is paired; the margin also covers picking the best of a grid): noise does not
buy a filter. Then the votes not clearly worse than the best (trailing it by less than
``CV_TIE`` or ``Z_TIE`` standard errors) are as good, and of those the one confident on the
fewest queries is chosen (fewer lists limited to a possibly wrong category), then the smallest
vote, then the highest minimum share.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from similarity.embedding.projection import stratified_folds
from similarity.evaluation.metrics import rank
from similarity.index.category_vote import CategoryVote, vote

__all__ = ["CV_TIE", "MIN_SHARES", "VOTE_SIZES", "Z_PAYS", "Z_TIE", "FoldSpace", "VoteChoice",
           "choose_category_vote", "cv_rankings", "vote_scores"]

VOTE_SIZES = (1, 3, 5, 10, 20, 30)
MIN_SHARES = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
CV_TIE = 0.005
Z_PAYS = 3.0  # predicting must beat not predicting by this many standard errors
Z_TIE = 1.0  # a vote this close to the best one is as good
K = 10

# train rows -> (every catalog row's vector, every query's vector) in the space fitted on them
FoldSpace = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
# (size, min share) -> (category P@10 with the vote, coverage, accuracy where confident)
Scores = dict[tuple[int, float], tuple[float, float, float]]
PerQuery = dict[tuple[int, float], tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class VoteChoice:
    """The chosen vote (None: predicting does not pay in this catalog) and, per (size, min
    share), (category P@10 with the vote, coverage, accuracy where confident)."""

    vote: CategoryVote | None
    baseline: float  # category P@10 without the vote
    scores: Scores
    queries: int
    seconds: float

    def summary(self) -> str:
        if not self.queries:
            return "category prediction: none (too few labelled products to cross-validate)"
        chosen = "none" if self.vote is None else self.vote.describe()
        cv = f"catalog CV over {self.queries} queries: category P@10 {self.baseline:.3f} without it"
        if self.vote is not None:
            p10, coverage, accuracy = self.scores[(self.vote.size, self.vote.min_share)]
            cv += f", {p10:.3f} with it (coverage {coverage:.3f}, accuracy where confident {accuracy:.3f})"
        return f"category prediction: {chosen} ({cv}); {self.seconds:.1f} s"


def _labels(items: Sequence[Hashable | None]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = None if item in ("", None) else item
    return out


def cv_rankings(labels: Sequence[Hashable | None], query_of: np.ndarray, fold_space: FoldSpace, *,
                k: int, folds: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(query indices, (Q, k) ranked catalog rows): each query showing a labelled product is
    ranked once, against the labelled products of the other folds, in the space fitted on
    them (see the module); -1 fills the places a fold's smaller catalog leaves. Unlabelled
    products are neither fitted on, ranked, nor scored."""
    named = _labels(labels)
    scored = np.flatnonzero(named != None)  # noqa: E711 (element-wise)
    query_of = np.asarray(query_of, dtype=np.int64)
    queries, ranked = [], []
    for part in stratified_folds(named[scored].tolist(), folds, seed=seed):
        held = scored[part]
        train = np.setdiff1d(scored, held)
        asking = np.flatnonzero(np.isin(query_of, held))
        if asking.size == 0 or train.size == 0:
            continue
        catalog_z, query_z = fold_space(train)
        g = np.asarray(catalog_z, dtype=np.float64)[train]
        q = np.asarray(query_z, dtype=np.float64)[asking]
        d = np.maximum((q * q).sum(1)[:, None] + (g * g).sum(1)[None, :] - 2.0 * q @ g.T, 0.0)
        top = np.full((asking.size, k), -1, dtype=np.int64)
        found = train[rank(d, k)]
        top[:, : found.shape[1]] = found
        queries.append(asking)
        ranked.append(top)
    if not queries:
        return np.empty(0, np.int64), np.empty((0, 0), np.int64)
    return np.concatenate(queries), np.concatenate(ranked)


def _per_query(truth: np.ndarray, ranked_labels: np.ndarray, sizes: Sequence[int], shares: Sequence[float]
               ) -> tuple[np.ndarray, PerQuery]:
    """Per query: category P@10 without the vote, and per (size, min share) (P@10 with it,
    confident, right)."""
    k = min(K, ranked_labels.shape[1])
    without = (ranked_labels[:, :k] == truth[:, None]).sum(1) / K
    out = {}
    for size in sizes:
        votes = [vote(row, size) for row in ranked_labels.tolist()]
        winners = [winner for winner, _ in votes]
        right = np.array([w == t for w, t in zip(winners, truth.tolist(), strict=True)], dtype=bool)
        share = np.array([s for _, s in votes])
        for min_share in shares:
            sure = (share >= min_share) & (share > 0)
            out[(size, float(min_share))] = (np.where(sure, right.astype(np.float64), without), sure, right)
    return without, out


def vote_scores(truth: np.ndarray, ranked_labels: np.ndarray, sizes: Sequence[int],
                shares: Sequence[float]) -> tuple[float, Scores]:
    """Category P@10 without the vote, and per (size, min share) (P@10 with it, coverage,
    accuracy where confident) of queries whose true categories are ``truth`` (object array)
    and whose ranked neighbours have the categories ``ranked_labels`` (Q, >= max size, 10)."""
    without, per = _per_query(truth, ranked_labels, sizes, shares)
    return float(without.mean()), _summaries(per)


def _summaries(per: PerQuery) -> Scores:
    return {key: (float(p.mean()), float(sure.mean()), float(right[sure].mean()) if sure.any() else 0.0)
            for key, (p, sure, right) in per.items()}


def _not_worse(candidate: np.ndarray, best: np.ndarray, z: float) -> bool:
    """Does ``candidate`` trail ``best`` (per-query P@10 of the same queries) by less than
    CV_TIE or ``z`` standard errors of the paired difference?"""
    d = candidate - best
    se = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else 0.0
    return float(d.mean()) >= -max(CV_TIE, z * se)


def _pick(without: np.ndarray, per: PerQuery) -> CategoryVote | None:
    best = max([without, *(p for p, _, _ in per.values())], key=lambda p: float(p.mean()))
    if _not_worse(without, best, Z_PAYS):
        return None
    for size, min_share in sorted(per, key=lambda key: (float(per[key][1].mean()), key[0], -key[1])):
        if _not_worse(per[(size, min_share)][0], best, Z_TIE):
            return CategoryVote(size, min_share)
    raise AssertionError("the best candidate is never worse than itself")


def choose_category_vote(labels: Sequence[Hashable | None], query_of: np.ndarray, fold_space: FoldSpace, *,
                         sizes: Sequence[int] = VOTE_SIZES, shares: Sequence[float] = MIN_SHARES,
                         folds: int = 4, seed: int = 0) -> VoteChoice:
    """The category vote for this catalog (see the module). ``query_of[i]`` is the catalog row
    query ``i`` shows; ``fold_space`` maps both into the space fitted on the training rows."""
    if not sizes or min(sizes) < 1 or not shares:
        raise ValueError(f"vote sizes must be >= 1 and shares given, got {sizes!r}, {shares!r}")
    started = time.perf_counter()
    named = _labels(labels)
    queries, ranked = cv_rankings(labels, query_of, fold_space, k=max(K, *sizes), folds=folds, seed=seed)
    if queries.size == 0:  # too few labelled products for any fold to be scored
        return VoteChoice(None, 0.0, {}, 0, time.perf_counter() - started)
    truth = named[np.asarray(query_of, dtype=np.int64)[queries]]
    padded = np.empty(named.size + 1, dtype=object)  # ranked's -1 (an empty place) reads None
    padded[:-1] = named
    without, per = _per_query(truth, padded[ranked], sizes, shares)
    chosen = _pick(without, per)
    return VoteChoice(chosen, float(without.mean()), _summaries(per), int(queries.size),
                      time.perf_counter() - started)
