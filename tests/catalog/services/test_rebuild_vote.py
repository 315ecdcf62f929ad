"""The full rebuild chooses search's category vote for its catalog (in the lda-blend space with
colour and views, the default configuration: the projection refitted without each fold), stores
it beside the projection in the space it was chosen in, records it in the run, and search by
photo predicts with it."""

from __future__ import annotations

import json

import pytest

from catalog.engine import embedder_get
from catalog.search_vote import category_vote_current, vote_path
from catalog.selectors.category_prediction import products_search_with_category
from catalog.selectors.photo_search import products_search_by_vector
from catalog.services.rebuild import similarity_rebuild
from catalog.space import space_current
from tests.catalog.services.test_adoption import adopt_colour
from tests.catalog.services.test_colour import CLASSES, COLOURS, PER, create
from tests.pipeline.helpers import dyed_garments, fashion_images

pytestmark = pytest.mark.django_db

@pytest.fixture(scope="module")
def dyed(model_path) -> list[tuple[str, str, bytes]]:
    return dyed_garments(CLASSES, COLOURS, PER)


def test_the_rebuild_chooses_the_vote_and_search_predicts_with_it(dyed, settings):
    adopt_colour(settings, weight=1.0)
    create(dyed)
    run = similarity_rebuild(trigger="test")

    assert "category prediction: vote of the" in run.message and "catalog CV over" in run.message
    stored = json.loads(vote_path().read_text())
    assert stored["space"].split("|")[1] == space_current().key  # the refitted space, with colour
    assert stored["summary"] in run.message
    vote = category_vote_current()
    assert vote is not None and stored["predict"] is True  # 4 categories told apart by the vote

    trouser = next(data for cls, data in fashion_images(1, offset=500) if cls == "Trouser")  # held out
    vector, colour = embedder_get().embed_with_colour(trouser)
    nearest = products_search_by_vector(vector=vector, colour=colour, k=vote.size)
    expected = vote.predict([p.category for p, _ in nearest])
    found = products_search_with_category(vector=vector, colour=colour, k=10)
    assert expected.confident and found.predicted_category == found.category == expected.category == "Trouser"
    assert {p.category for p, _ in found.results} == {"Trouser"}


def test_a_rebuild_with_prediction_off_stores_no_vote(dyed, settings):
    adopt_colour(settings, weight=1.0)
    settings.LOOKALIKE_SEARCH_PREDICT_CATEGORY = False
    create(dyed)
    run = similarity_rebuild(trigger="test")
    assert "category prediction" not in run.message and not vote_path().exists()
