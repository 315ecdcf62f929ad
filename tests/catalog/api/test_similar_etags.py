"""The ETag of a product's list: every change of what the answer shows, made through the real
services and the real index writer, gives a new tag; an answer, and a 304, take one query."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import F

from catalog.models import Product, ProductNeighbour
from catalog.selectors.storefront import product_neighbours
from catalog.services import merchandising
from catalog.services.indexing import index_apply
from catalog.services.products import product_update
from catalog.task_names import INDEX, REMOVE
from tests.catalog.readside import make_product, png_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def listed() -> list[Product]:
    """12 products with vectors, indexed by the real index writer (each list holds 10)."""
    rng = np.random.default_rng(7)
    products = [make_product(f"Garment {i}", vector=rng.normal(size=1280)) for i in range(12)]
    ids = [p.pk for p in products]
    Product.objects.filter(pk__in=ids).update(image_sha256=F("slug"),
                                              embedded_image_sha256=F("slug"))
    index_apply(product_ids=ids)
    assert ProductNeighbour.objects.filter(product=products[0]).count() == 10
    return products


def _run_queued(callbacks) -> None:
    """What the index worker does with the tasks the services queued."""
    for send in callbacks:
        if getattr(send, "task", None) in (INDEX, REMOVE):
            index_apply(product_ids=send.kwargs["product_ids"])


def _url(product: Product) -> str:
    return f"/api/v1/products/{product.sku}/similar"


def _shown(client, product: Product) -> list[str]:
    return [n["sku"] for n in client.get(_url(product)).json()["neighbours"]]


def _tag_changes(client, product: Product, change) -> None:
    """``change()`` makes the unchanged tag of ``product``'s list answer 200 with a new tag."""
    etag = client.get(_url(product))["ETag"]
    assert client.get(_url(product), HTTP_IF_NONE_MATCH=etag).status_code == 304
    change()
    answer = client.get(_url(product), HTTP_IF_NONE_MATCH=etag)
    assert answer.status_code == 200 and answer["ETag"] != etag


def _neighbour(client, product: Product, rank: int = 1) -> Product:
    return Product.objects.get(sku=_shown(client, product)[rank - 1])


def test_a_renamed_neighbour_gives_a_new_tag(client, listed):
    first = _neighbour(client, listed[0])
    _tag_changes(client, listed[0], lambda: product_update(product=first, name="Renamed"))
    assert client.get(_url(listed[0])).json()["neighbours"][0]["name"] == "Renamed"


def test_a_neighbour_moved_to_another_category_gives_a_new_tag(client, listed):
    first = _neighbour(client, listed[0])
    _tag_changes(client, listed[0], lambda: product_update(product=first, category="Coat"))


def test_a_neighbour_taken_out_of_lists_gives_a_new_tag(client, listed,
                                                        django_capture_on_commit_callbacks):
    first = _neighbour(client, listed[0])

    def sold_out() -> None:
        with django_capture_on_commit_callbacks() as callbacks:
            merchandising.products_set_listed(product_ids=[first.pk], listed=False)
        _run_queued(callbacks)

    _tag_changes(client, listed[0], sold_out)
    assert first.sku not in _shown(client, listed[0])


def test_a_neighbour_excluded_everywhere_gives_a_new_tag_before_the_writer_runs(client, listed):
    first = _neighbour(client, listed[0])
    _tag_changes(client, listed[0], lambda: merchandising.list_exclude_everywhere(target=first))
    assert first.sku not in _shown(client, listed[0])


def test_a_pin_gives_a_new_tag(client, listed, django_capture_on_commit_callbacks):
    main = listed[0]
    last = _neighbour(client, main, rank=10)

    def pin() -> None:
        with django_capture_on_commit_callbacks() as callbacks:
            merchandising.list_pin(product=main, target=last, rank=1)
        _run_queued(callbacks)

    _tag_changes(client, main, pin)
    assert _shown(client, main)[0] == last.sku


def test_a_neighbours_new_photo_gives_a_new_tag(client, listed):
    first = _neighbour(client, listed[0])
    before = client.get(_url(listed[0])).json()["neighbours"][0]["image_url"]
    photo = SimpleUploadedFile("new.png", png_bytes((10, 200, 90)), content_type="image/png")
    _tag_changes(client, listed[0], lambda: product_update(product=first, image=photo))
    assert client.get(_url(listed[0])).json()["neighbours"][0]["image_url"] != before


def test_the_products_own_new_photo_gives_a_new_tag(client, listed):
    photo = SimpleUploadedFile("new.png", png_bytes((10, 20, 190)), content_type="image/png")
    _tag_changes(client, listed[0], lambda: product_update(product=listed[0], image=photo))
    assert client.get(_url(listed[0])).json()["state"] == "refreshing"


def test_the_limit_and_the_host_are_part_of_the_tag(client, listed):
    etag = client.get(_url(listed[0]))["ETag"]
    assert client.get(f"{_url(listed[0])}?limit=3", HTTP_IF_NONE_MATCH=etag).status_code == 200
    other_host = client.get(_url(listed[0]), HTTP_IF_NONE_MATCH=etag, HTTP_HOST="localhost")
    assert other_host.status_code == 200 and other_host["ETag"] != etag


def test_an_answer_and_a_304_take_one_query(client, listed, django_assert_num_queries):
    with django_assert_num_queries(1):
        etag = client.get(_url(listed[0]))["ETag"]
    with django_assert_num_queries(1):
        assert client.get(_url(listed[0]), HTTP_IF_NONE_MATCH=etag).status_code == 304


def test_the_api_shows_the_rows_the_product_page_shows(client, listed):
    main = listed[0]
    first, second = _neighbour(client, main, 1), _neighbour(client, main, 2)
    merchandising.products_set_listed(product_ids=[first.pk], listed=False)
    merchandising.list_exclude_everywhere(target=second)
    page = [link.neighbour.sku for link in product_neighbours(product=main)]
    assert _shown(client, main) == page and len(page) == 8
    assert first.sku not in page and second.sku not in page
