"""Retrieval quality: precision@k and mean average precision@k, per category and overall.

Pure numpy, no Django. A *query* is an item with a category; its *ranked list* is the
categories of the items retrieved for it, best first. An item is relevant when its category
equals the query's.

Definitions (``k`` is the cut-off, 10 in the product):

- ``precision@k`` of a query: the number of relevant items among the first ``k`` of its list,
  divided by ``min(k, available)``, where ``available`` is how many items could have been
  retrieved at all (the catalog size minus the query itself when the query is in the
  catalog; ``k`` when unknown). Lists shorter than that count their missing places as
  irrelevant, so a bug that drops neighbours lowers the figure instead of hiding.
- ``AP@k`` (average precision at k) of a query, the standard definition: the mean, over
  the ranks ``r <= k`` whose item is relevant, of precision@r (relevant among the first
  ``r``, divided by ``r``); the sum is divided by ``min(k, R)``, where ``R`` is the number
  of relevant items the catalog holds for that query (not the number retrieved). A list
  holding all ``min(k, R)`` relevant items on top scores 1; relevant items found lower, or
  missing, cost. Example: ``[rel, irrel, rel]`` with ``R = 2`` gives
  ``AP@3 = (1/1 + 2/3) / 2``.
- A query whose category has no other item in the catalog (``R = 0``) cannot be answered
  correctly at all: it is *not scored* (left out of every figure and of ``n``).
- Overall figures are means over the scored queries (every query weighs the same);
  per-category figures are means over the scored queries of that category.

Ranking ties are broken deterministically: :func:`rank` orders candidates by (distance,
catalog position), so equal distances go to the earlier catalog item.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "CategoryScore",
    "QualityReport",
    "average_precision_at_k",
    "evaluate",
    "label_precision",
    "precision_at_k",
    "rank",
    "refind_recall",
    "relevance",
]


def rank(distances: np.ndarray, k: int, *, exclude_self: bool = False) -> np.ndarray:
    """Indices of the ``k`` smallest distances of every row, sorted by (distance, column).

    ``distances`` is (Q, N). With ``exclude_self`` (a square matrix of the catalog against
    itself) the diagonal is never returned. Returns (Q, min(k, candidates)) int64.
    """
    d = np.asarray(distances, dtype=np.float64)
    if d.ndim != 2:
        raise ValueError(f"distances must be 2-D (queries x catalog), got shape {d.shape}")
    if k < 0:
        raise ValueError(f"k must be non-negative, got {k}")
    if exclude_self:
        if d.shape[0] != d.shape[1]:
            raise ValueError("exclude_self needs a square (catalog x catalog) matrix")
        d = d.copy()
        np.fill_diagonal(d, np.inf)
    n = d.shape[1] - (1 if exclude_self else 0)
    k = min(k, max(n, 0))
    if k == 0:
        return np.empty((d.shape[0], 0), dtype=np.int64)
    # A stable sort keeps equal distances in column order: ties go to the earlier item.
    return np.argsort(d, axis=1, kind="stable")[:, :k].astype(np.int64, copy=False)


def relevance(query_labels: Sequence[Hashable] | np.ndarray,
              ranked_labels: Sequence[Sequence[Hashable]] | np.ndarray) -> list[np.ndarray]:
    """Per query, a bool array: is the item at each rank of its list in the query's category."""
    if len(query_labels) != len(ranked_labels):
        raise ValueError(
            f"{len(query_labels)} queries but {len(ranked_labels)} ranked lists"
        )
    return [
        np.array([lab == q for lab in row], dtype=bool)
        for q, row in zip(list(query_labels), list(ranked_labels), strict=True)
    ]


def precision_at_k(relevant: np.ndarray | Sequence[bool], k: int, *, available: int | None = None) -> float:
    """Relevant items among the first ``k`` of one list / ``min(k, available)``."""
    rel = np.asarray(relevant, dtype=bool)[:k]
    denom = k if available is None else min(k, available)
    if denom <= 0:
        raise ValueError("precision@k needs k >= 1 and at least one available item")
    return float(rel.sum()) / denom


def average_precision_at_k(relevant: np.ndarray | Sequence[bool], k: int, n_relevant: int) -> float:
    """AP@k of one list: sum of precision@r over relevant ranks r <= k, / min(k, n_relevant)."""
    if n_relevant <= 0:
        raise ValueError("AP@k is undefined for a query with no relevant item in the catalog")
    rel = np.asarray(relevant, dtype=bool)[:k]
    hits = np.cumsum(rel)
    ranks = np.arange(1, rel.size + 1)
    return float((hits[rel] / ranks[rel]).sum()) / min(k, n_relevant)


@dataclass(frozen=True)
class CategoryScore:
    precision: float
    map: float
    n: int


@dataclass(frozen=True)
class QualityReport:
    """Overall and per-category precision@k and mAP@k over the scored queries."""

    k: int
    precision: float | None  # None when nothing could be scored (n == 0)
    map: float | None
    n: int
    per_category: dict[Hashable, CategoryScore] = field(default_factory=dict)

    def worst(self) -> tuple[Hashable, CategoryScore]:
        """The category with the lowest precision (ties: the first in category order)."""
        if not self.per_category:
            raise ValueError("no category was scored")
        return min(self.per_category.items(), key=lambda kv: kv[1].precision)

    def best(self) -> tuple[Hashable, CategoryScore]:
        """The category with the highest precision (ties: the first in category order)."""
        if not self.per_category:
            raise ValueError("no category was scored")
        return max(self.per_category.items(), key=lambda kv: kv[1].precision)

    def as_dict(self, *, names: dict | None = None, digits: int | None = None) -> dict:
        """``{"precision_at_<k>", "map_at_<k>", "per_category", "n"}``; categories keyed by
        ``names.get(category, str(category))``; figures rounded to ``digits`` if given."""
        k = self.k
        names = names or {}

        def fig(x: float | None) -> float | None:
            return x if x is None or digits is None else round(x, digits)

        return {
            f"precision_at_{k}": fig(self.precision),
            f"map_at_{k}": fig(self.map),
            "per_category": {
                str(names.get(c, c)): {f"precision_at_{k}": fig(s.precision), f"map_at_{k}": fig(s.map),
                                       "n": s.n}
                for c, s in self.per_category.items()
            },
            "n": self.n,
        }


def evaluate(
    query_labels: Sequence[Hashable] | np.ndarray,
    ranked_labels: Sequence[Sequence[Hashable]] | np.ndarray,
    *,
    catalog_labels: Sequence[Hashable] | np.ndarray,
    k: int = 10,
    queries_in_catalog: bool = False,
) -> QualityReport:
    """Score ranked lists against their queries' categories.

    ``catalog_labels`` are the categories of every item that could be retrieved: they give
    each query's ``R`` (relevant items available) and the catalog size. With
    ``queries_in_catalog`` each query is itself one of those items (a product scored on its
    own stored neighbours), so it is subtracted from both ``R`` and the available count.
    Per-category results are in sorted category order.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    queries = list(query_labels)
    rels = relevance(queries, ranked_labels)
    catalog = list(catalog_labels)
    counts: dict[Hashable, int] = {}
    for lab in catalog:
        counts[lab] = counts.get(lab, 0) + 1
    self_count = 1 if queries_in_catalog else 0
    available = len(catalog) - self_count

    per: dict[Hashable, list[tuple[float, float]]] = {}
    for q, rel in zip(queries, rels, strict=True):
        n_rel = counts.get(q, 0) - self_count
        if n_rel <= 0:
            continue
        p = precision_at_k(rel, k, available=available)
        ap = average_precision_at_k(rel, k, n_rel)
        per.setdefault(q, []).append((p, ap))

    scores = [s for rows in per.values() for s in rows]
    if not scores:
        return QualityReport(k=k, precision=None, map=None, n=0, per_category={})
    arr = np.asarray(scores)
    per_category = {}
    for cat in sorted(per, key=_sort_key):
        a = np.asarray(per[cat])
        per_category[cat] = CategoryScore(precision=float(a[:, 0].mean()), map=float(a[:, 1].mean()),
                                          n=len(a))
    return QualityReport(k=k, precision=float(arr[:, 0].mean()), map=float(arr[:, 1].mean()),
                         n=len(arr), per_category=per_category)


def _sort_key(value: Hashable) -> tuple[bool, object]:
    """Numbers in numeric order first, then everything else by its text."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return (False, int(value))
    return (True, str(value))


def label_precision(query_labels: Sequence[Hashable] | np.ndarray,
                    ranked_labels: Sequence[Sequence[Hashable]] | np.ndarray, k: int) -> np.ndarray:
    """Per query, the share of the first ``k`` places whose label equals the query's (a place
    missing from a short list counts as wrong). With colours as labels this is colour@k; with
    (category, colour) pairs, category-and-colour@k. Returns (Q,) float64."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return np.array([float(rel[:k].sum()) / k for rel in relevance(query_labels, ranked_labels)])


def refind_recall(ranked: np.ndarray, targets: Sequence[int] | np.ndarray, k: int) -> float:
    """Share of queries whose own original (catalog index ``targets[q]``) is among the first
    ``k`` of their ranked catalog indices (Q, >= k)."""
    ranked = np.asarray(ranked)
    targets = np.asarray(targets)
    if ranked.ndim != 2 or ranked.shape[0] != targets.shape[0]:
        raise ValueError(f"{targets.shape[0]} targets for ranked lists of shape {ranked.shape}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if targets.size == 0:
        raise ValueError("recall needs at least one query")
    return float((ranked[:, :k] == targets[:, None]).any(axis=1).mean())
