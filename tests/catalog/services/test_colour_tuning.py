"""The colour weight chosen by the catalog itself (LOOKALIKE_COLOUR_WEIGHT="auto"): a small real
catalog of dyed Fashion-MNIST garments, the real weights, the real embed → rebuild path. The
rebuild chooses the weight by catalog CV, stores it with the projection, records it in the
run, and builds every list in the chosen space."""

from __future__ import annotations

import re

import pytest

from catalog.engine import matrix_store
from catalog.models import Product
from catalog.services.rebuild import similarity_rebuild
from catalog.space import projection_path, space_current
from similarity import read_blend
from similarity.embedding.colour import COLOUR_KEY, blend_colour
from similarity.evaluation.colour_cv import CV_TIE
from tests.catalog.services.test_adoption import (
    adopt_colour,
    assert_lists_match,
    brute_force_lists,
    colours_of,
    raw_vectors,
)
from tests.catalog.services.test_colour import CLASSES, COLOURS, create
from tests.pipeline.helpers import dyed_garments

pytestmark = pytest.mark.django_db

# 8 garments of every class and dye (96): a list of 10 can hold 7 of the query's class and dye,
# so category-and-colour-group@10 can tell the weights apart.
PER = 8


@pytest.fixture(scope="module")
def dyed(model_path) -> list[tuple[str, str, bytes]]:
    return dyed_garments(CLASSES, COLOURS, PER)


def test_the_rebuild_chooses_stores_and_uses_the_colour_weight(dyed, settings):
    adopt_colour(settings, weight="auto")  # type: ignore[arg-type]
    create(dyed)
    run = similarity_rebuild(trigger="test")

    projection, _, extra = read_blend(projection_path())
    weight = extra["colour_weight"]
    assert weight > 0  # three dyes in every category: colour is a real attribute here
    chosen = f"colour weight {weight:g} chosen by category-and-colour-group@10 over {len(dyed)} products"
    assert chosen in run.message
    space = space_current()
    assert space.colour_weight == weight
    assert space.key.endswith(f"+colour:{COLOUR_KEY}:w={weight:g}")
    assert matrix_store().store.meta.policy.endswith(f"+colour:{COLOUR_KEY}:w={weight:g}")

    everything = list(Product.objects.order_by("pk"))
    ids = [p.pk for p in everything]
    z = blend_colour(projection.transform(raw_vectors(everything)), colours_of(everything), weight)
    assert_lists_match(brute_force_lists(ids, z), z, ids)


def test_a_fixed_weight_is_not_chosen_and_a_bad_one_is_refused(dyed, settings):
    adopt_colour(settings, weight=0.5)
    create(dyed)
    run = similarity_rebuild(trigger="test")
    assert "chosen by" not in run.message
    assert read_blend(projection_path())[2] == {}  # nothing stored: the setting rules
    assert space_current().colour_weight == 0.5

    settings.LOOKALIKE_COLOUR_WEIGHT = "blue"
    with pytest.raises(ValueError, match='LOOKALIKE_COLOUR_WEIGHT must be "auto" or a number'):
        space_current()


def test_a_catalog_of_one_neutral_colour_is_one_colour_group_scored_by_category(model_path, settings):
    adopt_colour(settings, weight="auto")  # type: ignore[arg-type]
    create(dyed_garments(CLASSES, ("black",), 3 * PER))  # pale to full black: greys only
    run = similarity_rebuild(trigger="test")

    assert "in 1 colour group(s)" in run.message
    tried = re.search(r"category-and-colour-group@10\) (.*?);", run.message)
    assert tried is not None
    scores = {float(w): tuple(map(float, cb.split("/"))) for w, cb in
              (item.split(": ") for item in tried.group(1).split(", "))}
    assert all(category == both for category, both in scores.values())  # the criterion is category P@10
    best = max(category for category, _ in scores.values())
    weight = read_blend(projection_path())[2]["colour_weight"]
    assert weight == min(w for w, (category, _) in scores.items() if category >= best - CV_TIE)
