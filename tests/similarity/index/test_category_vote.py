"""similarity.index.category_vote: the nearest products' vote, its share and its confidence."""

from __future__ import annotations

import pytest

from similarity.index.category_vote import CategoryVote, vote


def test_the_majority_of_the_first_voters_wins_with_its_share():
    assert vote(["Dress", "Coat", "Dress", "Dress", "Coat"], 5) == ("Dress", 0.6)
    assert vote(["Coat", "Dress", "Dress", "Dress"], 1) == ("Coat", 1.0)  # only the first votes


def test_a_tie_goes_to_the_category_reached_first():
    assert vote(["Coat", "Dress", "Dress", "Coat"], 4) == ("Coat", 0.5)
    assert vote(["Dress", "Coat", "Coat", "Dress"], 4) == ("Dress", 0.5)


def test_products_without_a_category_vote_for_nothing_but_count_in_the_share():
    assert vote(["", None, "Bag", "Bag"], 4) == ("Bag", 0.5)
    assert vote(["", None], 2) == (None, 0.0)


def test_a_short_list_counts_missing_voters_against_the_share():
    assert vote(["Bag", "Bag"], 4) == ("Bag", 0.5)


def test_confident_only_from_the_minimum_share():
    rule = CategoryVote(size=4, min_share=0.75)
    sure = rule.predict(["Bag", "Bag", "Coat", "Bag", "Coat"])
    assert (sure.category, sure.share, sure.confident) == ("Bag", 0.75, True)
    unsure = rule.predict(["Bag", "Coat", "Bag", "Coat"])
    assert (unsure.category, unsure.share, unsure.confident) == ("Bag", 0.5, False)
    assert CategoryVote(size=2, min_share=0.0).predict(["", ""]).confident is False  # nobody voted


@pytest.mark.parametrize(("size", "min_share"), [(0, 0.5), (3, -0.1), (3, 1.5)])
def test_a_vote_without_voters_or_with_an_impossible_share_is_refused(size, min_share):
    with pytest.raises(ValueError):
        CategoryVote(size=size, min_share=min_share)


def test_a_vote_of_nobody_is_refused():
    with pytest.raises(ValueError, match="at least 1 voter"):
        vote(["Bag"], 0)
