"""A query's category, predicted by a vote of its nearest catalog products.

The ``size`` nearest products vote with their categories; the category with the most votes
wins (a tie goes to the category whose best-ranked product is nearest). The winner's *share*
is its votes divided by ``size`` (a product without a category votes for nothing, so it
lowers the share). The prediction is *confident* when the share reaches ``min_share``:
search by photo then shows only products of that category. Both numbers are chosen per
catalog by cross-validation (similarity/evaluation/category_vote_cv.py).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

__all__ = ["CategoryVote", "VoteResult", "vote"]


@dataclass(frozen=True)
class VoteResult:
    """The winning category (None when no neighbour has one) and its share of the votes."""

    category: Hashable | None
    share: float
    confident: bool


def vote(ranked_categories: Sequence[Hashable | None], size: int) -> tuple[Hashable | None, float]:
    """(winner, share) of the first ``size`` categories, nearest first (see the module)."""
    if size < 1:
        raise ValueError(f"a vote needs at least 1 voter, got {size}")
    counts: dict[Hashable, int] = {}
    for category in ranked_categories[:size]:
        if category not in (None, ""):
            counts[category] = counts.get(category, 0) + 1  # insertion order: nearest first
    if not counts:
        return None, 0.0
    winner = max(counts, key=lambda c: counts[c])  # max keeps the first of equal counts
    return winner, counts[winner] / size


@dataclass(frozen=True)
class CategoryVote:
    """``size`` voters; confident from a share of ``min_share``."""

    size: int
    min_share: float

    def __post_init__(self) -> None:
        if self.size < 1 or not 0.0 <= self.min_share <= 1.0:
            raise ValueError(f"a vote needs size >= 1 and min_share in [0, 1], got {self}")

    def predict(self, ranked_categories: Sequence[Hashable | None]) -> VoteResult:
        """The vote of the first ``size`` of ``ranked_categories`` (nearest first)."""
        category, share = vote(ranked_categories, self.size)
        return VoteResult(category, share, category is not None and share >= self.min_share)

    def describe(self) -> str:
        return f"vote of the {self.size} nearest, confident from a share of {self.min_share:g}"
