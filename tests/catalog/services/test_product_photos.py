"""catalog.services.product_photos: adding many products' further photos at once."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from catalog.models import Product, ProductPhoto
from catalog.services import queue
from catalog.services.product_photos import product_photos_add_bulk
from catalog.services.products import image_check, product_create
from catalog.vectors import sha256_hex
from tests.pipeline.helpers import drawn_image, upload

pytestmark = pytest.mark.django_db


def products(n: int) -> list[Product]:
    return [product_create(name=f"Shirt {i}", category="Shirts", image=upload(drawn_image(i)))
            for i in range(n)]


def test_bulk_add_refuses_a_product_past_the_limit_and_adds_the_others(
        settings, django_capture_on_commit_callbacks):
    settings.LOOKALIKE_MAX_PHOTOS = 3
    a, b, gone = products(3)
    Product.objects.filter(pk=gone.pk).delete()
    images = [drawn_image(10 + n) for n in range(6)]

    with django_capture_on_commit_callbacks() as callbacks:
        photos, refused = product_photos_add_bulk(additions=[
            (a, [upload(images[0]), image_check(upload(images[1]))]),  # files or checked images
            (b, [upload(data) for data in images[2:5]]),  # 1 + 3 > 3
            (gone, [upload(images[5])]),
        ])

    assert [p.image_sha256 for p in a.photos.order_by("pk")] == [sha256_hex(d) for d in images[:2]]
    assert [p.pk for p in photos] == list(a.photos.order_by("pk").values_list("pk", flat=True))
    assert {p.status for p in photos} == {ProductPhoto.Status.PENDING}
    assert not b.photos.exists() and ProductPhoto.objects.count() == 2
    assert {pk: e.code for pk, e in refused.items()} == {b.pk: "too_many_photos",
                                                         gone.pk: "product_gone"}
    assert "at most 3 photos" in refused[b.pk].messages[0]
    assert [(cb.task, cb.kwargs) for cb in callbacks if isinstance(cb, queue.TaskSend)] == [
        (queue.EMBED, {"product_ids": [a.pk]})]


def test_bulk_add_checks_every_image_first(django_capture_on_commit_callbacks):
    (a,) = products(1)
    with pytest.raises(ValidationError) as raised:
        product_photos_add_bulk(additions=[(a, [upload(drawn_image(20)), upload(b"garbage")])])
    assert raised.value.code == "unreadable"
    assert not ProductPhoto.objects.exists()
