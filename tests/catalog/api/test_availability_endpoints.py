"""Availability over the API: ``listed`` read, written by PUT and PATCH (through the service,
which queues the index task), filtered on; a product not listed leaves every list at once."""

from __future__ import annotations

import pytest
from django.test.client import encode_multipart

from catalog.models import Product
from catalog.services import queue
from tests.catalog.api.conftest import bearer
from tests.catalog.api.test_product_endpoints import BOUNDARY, MULTIPART, photo, put
from tests.catalog.readside import link_neighbours, make_product

pytestmark = pytest.mark.django_db


def sent(callbacks) -> list:
    return [(cb.task, cb.kwargs) for cb in callbacks if isinstance(cb, queue.TaskSend)]


def test_patch_listed_false_takes_the_product_out_and_queues_its_index_task(
        client, write_key, django_capture_on_commit_callbacks):
    product = make_product("Coat")
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.patch(f"/api/v1/products/{product.sku}", {"listed": False},
                                content_type="application/json", **bearer(write_key))
    assert response.status_code == 200 and response.json()["listed"] is False
    assert sent(callbacks) == [(queue.INDEX, {"product_ids": [product.pk]})]
    with django_capture_on_commit_callbacks() as again:
        client.patch(f"/api/v1/products/{product.sku}", {"listed": False},
                     content_type="application/json", **bearer(write_key))
    assert sent(again) == []  # unchanged: nothing queued


def test_put_leaves_listed_alone_unless_given(client, write_key):
    assert put(client, "c1", write_key).json()["listed"] is True
    body = encode_multipart(BOUNDARY, {"name": "Red Dress", "category": "Dress",
                                       "image": photo(), "listed": "false"})
    response = client.put("/api/v1/products/c1", body, content_type=MULTIPART, **bearer(write_key))
    assert response.status_code == 200 and response.json()["listed"] is False
    assert put(client, "c1", write_key).json()["listed"] is False  # left out: unchanged


def test_the_list_filters_on_listed(client):
    make_product("Shown")
    hidden = make_product("Sold out")
    Product.objects.filter(pk=hidden.pk).update(listed=False)
    names = [p["name"] for p in client.get("/api/v1/products?listed=false").json()["results"]]
    assert names == ["Sold out"]
    assert len(client.get("/api/v1/products?listed=true").json()["results"]) == 1


def test_a_neighbour_not_listed_is_never_served_even_before_its_list_is_refilled(client):
    main = make_product("Main")
    others = [make_product(f"N{i}") for i in range(4)]
    link_neighbours(main, others)
    Product.objects.filter(pk=others[1].pk).update(listed=False)
    body = client.get(f"/api/v1/products/{main.sku}/similar").json()
    assert [n["sku"] for n in body["neighbours"]] == [others[0].sku, others[2].sku, others[3].sku]
