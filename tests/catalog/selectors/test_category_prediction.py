"""catalog.selectors.category_prediction: search by photo with the category given, every
category ("all"), or predicted by the vote the last rebuild chose (``stored_vote`` stores one
with the real persistence), on the 40 real garments."""

from __future__ import annotations

import numpy as np
import pytest

from catalog.engine import embedder_get
from catalog.models import Product
from catalog.selectors.category_prediction import products_search_by_photo, products_search_with_category
from catalog.selectors.photo_search import products_search_by_vector
from tests.catalog.readside import image_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def trouser_query(query_photos) -> tuple[np.ndarray, np.ndarray]:
    return embedder_get().embed_with_colour(image_bytes(query_photos[1]))


def ids(results) -> list[int]:
    return [p.pk for p, _ in results]


def test_without_a_stored_vote_every_category_is_searched(catalog_of_garments, trouser_query, stored_vote):
    vector, colour = trouser_query
    found = products_search_with_category(vector=vector, colour=colour, k=10)
    assert (found.category, found.predicted_category) == (None, None)
    assert ids(found.results) == ids(products_search_by_vector(vector=vector, colour=colour, k=10))
    assert len({p.category for p, _ in found.results}) > 1


def test_a_confident_vote_limits_the_results_to_the_predicted_category(
        catalog_of_garments, trouser_query, stored_vote):
    vector, colour = trouser_query
    stored_vote(1, 0.0)  # the nearest product's category, always confident
    nearest = products_search_by_vector(vector=vector, colour=colour, k=1)[0][0]
    found = products_search_with_category(vector=vector, colour=colour, k=10)
    assert found.predicted_category == found.category == nearest.category == "Trouser"
    limited = products_search_by_vector(vector=vector, colour=colour, k=10, category="Trouser")
    assert ids(found.results) == ids(limited) and len(limited) == 4  # every trouser of the catalog


def test_a_vote_that_is_not_confident_filters_nothing(catalog_of_garments, trouser_query, stored_vote):
    vector, colour = trouser_query
    stored_vote(10, 1.0)  # all 10 of one category: impossible with 4 garments a category
    found = products_search_with_category(vector=vector, colour=colour, k=5)
    assert (found.category, found.predicted_category) == (None, None)
    assert ids(found.results) == ids(products_search_by_vector(vector=vector, colour=colour, k=5))


def test_a_given_category_or_all_is_never_overridden(catalog_of_garments, trouser_query, stored_vote):
    vector, colour = trouser_query
    stored_vote(1, 0.0)
    given = products_search_with_category(vector=vector, colour=colour, k=10, category="Bag")
    assert (given.category, given.predicted_category) == ("Bag", None)
    assert {p.category for p, _ in given.results} == {"Bag"}
    everything = products_search_with_category(vector=vector, colour=colour, k=10, category="all")
    assert (everything.category, everything.predicted_category) == (None, None)
    assert ids(everything.results) == ids(products_search_by_vector(vector=vector, colour=colour, k=10))


def test_prediction_off_or_a_vote_of_another_space_predicts_nothing(
        catalog_of_garments, trouser_query, stored_vote, settings):
    vector, colour = trouser_query
    stored_vote(1, 0.0)
    settings.LOOKALIKE_SEARCH_PREDICT_CATEGORY = False
    assert products_search_with_category(vector=vector, colour=colour, k=10).category is None
    settings.LOOKALIKE_SEARCH_PREDICT_CATEGORY = True
    settings.LOOKALIKE_METRIC = "cosine"  # another space than the vote was chosen in
    assert products_search_with_category(vector=vector, colour=colour, k=10).category is None


def test_products_not_listed_neither_vote_nor_appear(catalog_of_garments, trouser_query, stored_vote):
    vector, colour = trouser_query
    stored_vote(1, 0.0)
    nearest = products_search_by_vector(vector=vector, colour=colour, k=1)[0][0]
    Product.objects.filter(pk=nearest.pk).update(listed=False)
    found = products_search_with_category(vector=vector, colour=colour, k=10)
    assert nearest.pk not in ids(found.results)
    assert found.category == found.results[0][0].category  # the vote of the nearest listed one


def test_search_by_photo_embeds_once_and_returns_the_query(catalog_of_garments, query_photos, stored_vote):
    stored_vote(1, 0.0)
    found = products_search_by_photo(image_bytes=image_bytes(query_photos[1]), k=10)
    vector, colour = embedder_get().embed_with_colour(image_bytes(query_photos[1]))
    np.testing.assert_array_equal(found.vector, vector)
    np.testing.assert_array_equal(found.colour, colour)
    assert found.predicted_category == "Trouser"
