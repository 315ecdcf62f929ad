"""Search by photo against a catalog the real worker built: the page (multipart form) and the
JSON endpoint give the brute-force top 10 from the stored vectors; bad uploads are refused clearly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.urls import reverse

from catalog.models import Product
from tests.e2e.dom import parse
from tests.e2e.support import (
    build_catalog,
    embed_query,
    search_brute_force,
    search_result_cards,
    wait_settled,
)
from tests.pipeline.helpers import K, upload

pytestmark = pytest.mark.django_db(transaction=True)

N = 20


@pytest.fixture
def catalog(worker, garments) -> dict[int, Product]:
    products = build_catalog(garments[:N])
    wait_settled(N, f"{N} products built by the worker")
    return Product.objects.in_bulk([p.pk for p in products])


def test_search_page_and_json_give_the_brute_force_ten(client, catalog, query_garments):
    for cls, data in query_garments[:3]:
        want = search_brute_force(embed_query(data))
        assert len(want) == K

        page = client.post(reverse("catalog:search"), {"image": upload(data, "query.png")})
        assert page.status_code == 200
        cards = search_result_cards(page.content)
        assert [c.name for c in cards] == [catalog[pid].name for pid, _ in want], cls
        assert [c.href for c in cards] == [catalog[pid].get_absolute_url() for pid, _ in want]
        query_thumb = parse(page.content).one("img", cls="query-thumb")
        assert query_thumb.attrs["src"].startswith("data:image/jpeg;base64,")

        response = client.post(reverse("catalog:api-search"), {"image": upload(data, "query.png")})
        assert response.status_code == 200
        assert response["Content-Type"] == "application/json"
        results = response.json()["results"]
        assert len(results) == K
        distances = [r["distance"] for r in results]
        assert distances == sorted(distances)
        assert [r["id"] for r in results] == [pid for pid, _ in want], cls
        np.testing.assert_allclose(distances, [d for _, d in want], rtol=1e-5, atol=1e-5)
        for r in results:
            product = catalog[r["id"]]
            assert r["name"] == product.name and r["category"] == product.category
            assert r["url"] == f"http://testserver{product.get_absolute_url()}"
            assert r["image"] == f"http://testserver{product.image.url}"


def test_an_exact_catalog_image_finds_its_own_product_first(client, catalog):
    product = next(iter(catalog.values()))
    with product.image.open("rb") as fh:
        data = fh.read()
    response = client.post(reverse("catalog:api-search"), {"image": upload(data, "same.png")})
    results = response.json()["results"]
    assert len(results) == K
    assert results[0]["id"] == product.pk
    assert results[0]["distance"] == pytest.approx(0.0, abs=1e-3)
    assert results[1]["distance"] > 100 * max(results[0]["distance"], 1e-4)

    page = client.post(reverse("catalog:search"), {"image": upload(data, "same.png")})
    assert search_result_cards(page.content)[0].name == product.name


BAD_UPLOADS = [  # (kind, bytes or None for a truncated garment, file name, reason, words of the message)
    ("text", b"this is not a picture at all\n" * 10, "notes.png", "unreadable", "not an image"),
    ("truncated", None, "cut.png", "truncated", "truncated or corrupt"),
    ("empty", b"", "empty.png", "empty", "0 bytes"),
]


@pytest.mark.parametrize(("kind", "data", "filename", "reason", "words"), BAD_UPLOADS,
                         ids=[case[0] for case in BAD_UPLOADS])
def test_a_bad_upload_is_refused_clearly_on_the_page_and_in_json(client, catalog, garments, kind, data,
                                                                  filename, reason, words):
    if data is None:
        data = garments[0][1][: len(garments[0][1]) // 2]
    assert_refused(client, data, filename, status=400, reason=reason, words=words)


def test_an_upload_over_the_size_limit_is_refused(client, catalog, garments, settings):
    data = garments[0][1]
    settings.LOOKALIKE_MAX_UPLOAD_BYTES = len(data) - 1
    assert_refused(client, data, "big.png", status=413, reason="too_large", words="over the")


def assert_refused(client, data: bytes, filename: str, *, status: int, reason: str, words: str) -> None:
    page = client.post(reverse("catalog:search"), {"image": upload(data, filename)})
    assert page.status_code == status
    doc = parse(page.content)
    errors = doc.one("form", cls="search-form").one("ul", cls="errorlist").text()
    assert words in errors and f"(reason: {reason})" in errors, errors
    assert doc.find("section", cls="search-results") is None

    response = client.post(reverse("catalog:api-search"), {"image": upload(data, filename)})
    assert response.status_code == status
    body = json.loads(response.content)
    # The API's one error format: the first endpoints' "error" and "reason", and more.
    assert (body["reason"], body["status"], body["fields"]) == (
        reason, status, {"image": [body["error"]]})
    assert words in body["error"] and body["error"] == errors, (body, errors)


def test_a_search_without_a_file_is_refused_both_ways(client, catalog):
    page = client.post(reverse("catalog:search"), {})
    assert page.status_code == 400
    assert "Choose a photo to search with" in parse(page.content).one("ul", cls="errorlist").text()
    response = client.post(reverse("catalog:api-search"), {})
    assert response.status_code == 400
    assert response.json()["reason"] == "missing"
