"""The search page's category: predicted and shown as a facet the shopper can change (the same
photo searched again in another category, or in all of them, without uploading it again)."""

from __future__ import annotations

import re

import pytest
from django.core import signing
from django.urls import reverse

from catalog.forms import SEARCH_TOKEN_SALT
from tests.catalog.readside import image_bytes
from tests.catalog.views.test_storefront import upload

pytestmark = pytest.mark.django_db


def hidden(html: str, name: str) -> str:
    match = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)"', html)
    assert match, f"no hidden {name} field"
    return match.group(1)


def categories_of(response) -> set[str]:
    return {product.category for product, _ in response.context["results"]}


def search(client, photo, **fields):
    return client.post(reverse("catalog:search"), {"image": upload(image_bytes(photo)), **fields})


def again(client, first, **fields):
    """The facet's form of ``first`` submitted with ``fields``."""
    data = {"query": hidden(first.text, "query"), "thumbnail": hidden(first.text, "thumbnail"), **fields}
    return client.post(reverse("catalog:search"), data)


def test_the_predicted_category_is_shown_and_the_shopper_can_show_all(
        client, catalog_of_garments, query_photos, stored_vote):
    stored_vote(1, 0.0)
    first = search(client, query_photos[1])
    assert first.status_code == 200
    assert first.context["predicted_category"] == first.context["category"] == "Trouser"
    assert categories_of(first) == {"Trouser"}
    assert "Showing <strong>Trouser</strong> (predicted from your photo)" in first.text
    assert 'name="show_all"' in first.text and "show all categories" in first.text
    assert '<option value="Bag">Bag</option>' in first.text  # other categories to choose from

    everything = again(client, first, show_all="on", category="Trouser")
    assert everything.status_code == 200
    assert everything.context["category"] is None and everything.context["predicted_category"] is None
    assert len(everything.context["results"]) == 10 and len(categories_of(everything)) > 1
    assert "Showing all categories" in everything.text
    assert 'src="data:image/jpeg;base64,' in everything.text  # the photo is shown again


def test_choosing_another_category_searches_the_same_photo_in_it(
        client, catalog_of_garments, query_photos, stored_vote):
    stored_vote(1, 0.0)
    first = search(client, query_photos[1])
    bags = again(client, first, category="Bag")
    assert bags.status_code == 200
    assert bags.context["category"] == "Bag" and bags.context["predicted_category"] is None
    assert categories_of(bags) == {"Bag"}
    assert "Showing <strong>Bag</strong> —" in bags.text and "(predicted" not in bags.text
    assert 'value="Bag" selected' in bags.text
    # the same as uploading the photo with the category chosen
    direct = search(client, query_photos[1], category="Bag")
    assert [p.pk for p, _ in direct.context["results"]] == [p.pk for p, _ in bags.context["results"]]


def test_without_a_confident_prediction_every_category_is_shown(client, catalog_of_garments, query_photos):
    response = search(client, query_photos[1])  # no vote stored: nothing to predict with
    assert response.context["category"] is None and "Showing all categories" in response.text
    assert len(categories_of(response)) > 1
    assert search(client, query_photos[1], category="all").context["category"] is None


def test_a_forged_or_expired_search_asks_for_the_photo_again(client, catalog_of_garments, query_photos):
    first = search(client, query_photos[1])
    token = hidden(first.text, "query")
    forged = client.post(reverse("catalog:search"), {"query": token[:-3] + "abc", "category": "Bag"})
    assert forged.status_code == 400 and "upload your photo again" in forged.text
    assert forged.context["results"] is None
    other = signing.dumps({"v": "AAAA", "c": None, "k": "another-model"}, salt=SEARCH_TOKEN_SALT)
    assert client.post(reverse("catalog:search"), {"query": other}).status_code == 400
