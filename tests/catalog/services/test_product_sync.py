"""catalog.services.product_sync and skus: products by SKU, idempotent by content."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from catalog.models import Product
from catalog.services import queue
from catalog.services.product_sync import product_put
from catalog.services.products import product_create, products_bulk_create
from catalog.services.skus import sku_from_stem
from tests.pipeline.helpers import drawn_image, upload

pytestmark = pytest.mark.django_db


def sent(callbacks) -> list[tuple[str, dict]]:
    return [(cb.task, cb.kwargs) for cb in callbacks if isinstance(cb, queue.TaskSend)]


def test_put_creates_then_a_repeat_changes_nothing_and_queues_nothing(
        django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as first:
        product, outcome = product_put(sku="4711", name="Red Dress", category="Dress",
                                       image=upload(drawn_image(1)))
    assert outcome == "created" and product.sku == "4711"
    assert sent(first) == [(queue.EMBED, {"product_ids": [product.pk]})]
    Product.objects.filter(pk=product.pk).update(status=Product.Status.READY)
    before = Product.objects.get(pk=product.pk)
    with django_capture_on_commit_callbacks() as again:
        same, outcome = product_put(sku="4711", name="Red Dress", category="Dress",
                                    image=upload(drawn_image(1), "other-name.png"))
    after = Product.objects.get(pk=product.pk)
    assert outcome == "unchanged" and same.pk == product.pk
    assert sent(again) == []
    assert (after.updated_at, after.status, after.image.name) == (
        before.updated_at, Product.Status.READY, before.image.name)


def test_put_with_a_new_photo_requeues_and_a_new_name_does_not(django_capture_on_commit_callbacks):
    product, _ = product_put(sku="a-1", name="Coat", category="Coat", image=upload(drawn_image(1)))
    with django_capture_on_commit_callbacks() as renamed:
        _, outcome = product_put(sku="a-1", name="Long coat", category="Coat",
                                 image=upload(drawn_image(1)))
    assert outcome == "changed" and sent(renamed) == []
    with django_capture_on_commit_callbacks() as rephotographed:
        _, outcome = product_put(sku="a-1", name="Long coat", category="Coat",
                                 image=upload(drawn_image(2)))
    assert outcome == "changed"
    assert sent(rephotographed) == [(queue.EMBED, {"product_ids": [product.pk]})]
    assert Product.objects.get(pk=product.pk).name == "Long coat"


@pytest.mark.parametrize("sku", ["", "-lead", "has space", "a/b", "x" * 65, "ünï", "batch"])
def test_put_refuses_a_bad_sku(sku):
    with pytest.raises(ValidationError) as info:
        product_put(sku=sku, name="x", category="y", image=upload(drawn_image(1)))
    assert info.value.code == "bad_sku"
    assert Product.objects.count() == 0


def test_skus_derive_from_file_names_and_stay_unique():
    a = product_create(name="A", category="Coat", image=upload(drawn_image(1), "Blue coat (2).png"))
    b = product_create(name="B", category="Coat", image=upload(drawn_image(2), "Blue coat (2).png"))
    bulk = products_bulk_create(files=[upload(drawn_image(i), "Blue coat (2).png")
                                       for i in (3, 4)], category="Coat")
    assert [a.sku, b.sku, *[p.sku for p in bulk]] == [
        "Blue-coat-2", "Blue-coat-2-2", "Blue-coat-2-3", "Blue-coat-2-4"]


def test_an_explicit_sku_must_be_free():
    product_create(name="A", category="Coat", image=upload(drawn_image(1)), sku="K1")
    with pytest.raises(ValidationError) as info:
        product_create(name="B", category="Coat", image=upload(drawn_image(2)), sku="K1")
    assert info.value.code == "sku_taken"


@pytest.mark.parametrize(("stem", "sku"), [("IMG 0001", "IMG-0001"), ("...", "product"),
                                           ("__a__", "a"), ("x" * 100, "x" * 58), ("batch", "batch-1")])
def test_sku_from_stem(stem, sku):
    assert sku_from_stem(stem) == sku
