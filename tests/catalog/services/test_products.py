"""catalog.services.products: validation before saving, slugs, what is queued on commit."""

from __future__ import annotations

import io

import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from PIL import Image

from catalog.models import Product
from catalog.services import queue
from catalog.services.products import (
    image_validate,
    product_create,
    product_delete,
    product_update,
    products_bulk_create,
)
from tests.pipeline.helpers import drawn_image, png_bytes, upload

pytestmark = pytest.mark.django_db


def sent(callbacks) -> list[tuple[str, dict]]:
    return [(cb.task, cb.kwargs) for cb in callbacks if isinstance(cb, queue.TaskSend)]


def test_create_saves_pending_product_and_queues_embedding_on_commit(
    django_capture_on_commit_callbacks,
):
    data = drawn_image(1)
    with django_capture_on_commit_callbacks() as callbacks:
        product = product_create(name="Red Dress", category="Dress", image=upload(data))
    product.refresh_from_db()
    assert product.status == Product.Status.PENDING
    assert product.slug == "red-dress"
    assert product.image.name.startswith("products/") and product.image.name.endswith(".png")
    assert product.image.read() == data
    import hashlib

    assert product.image_sha256 == hashlib.sha256(data).hexdigest()
    assert sent(callbacks) == [(queue.EMBED, {"product_ids": [product.pk]})]


def test_slugs_are_unique():
    a = product_create(name="Coat", category="Coat", image=upload(drawn_image(1)))
    b = product_create(name="Coat", category="Coat", image=upload(drawn_image(2)))
    c = product_create(name="Coat", category="Coat", image=upload(drawn_image(3)))
    assert [a.slug, b.slug, c.slug] == ["coat", "coat-2", "coat-3"]
    with pytest.raises(ValidationError):
        product_create(name="x", category="Coat", image=upload(drawn_image(4)), slug="coat")


def test_bulk_slugs_are_unique_within_the_batch_and_against_the_catalog():
    product_create(name="Coat", category="Coat", image=upload(drawn_image(1)))
    product_create(name="Coat 2", category="Coat", image=upload(drawn_image(2)))
    files = [upload(drawn_image(i), f"{stem}.png")
             for i, stem in enumerate(["coat", "coat", "scarf", "scarf", "hat"], start=3)]
    products = products_bulk_create(files=files, category="Coat", name_pattern="{stem}")
    assert [p.slug for p in products] == ["coat-3", "coat-4", "scarf", "scarf-2", "hat"]
    assert Product.objects.values("slug").distinct().count() == Product.objects.count() == 7


def _truncated_png() -> bytes:
    return drawn_image(5)[:600]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"just some text, not a picture at all", "unreadable"),
        (_truncated_png(), "truncated"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "unsupported_format"),
    ],
)
def test_bad_image_raises_validation_error_and_saves_nothing(
    data, reason, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(ValidationError) as exc:
        product_create(name="Bad", category="Shirt", image=upload(data, "bad.jpg"))
    assert exc.value.error_list[0].code == reason
    assert exc.value.messages[0]
    assert Product.objects.count() == 0
    assert callbacks == []


def test_oversized_image_is_refused_before_decoding(settings):
    settings.LOOKALIKE_MAX_UPLOAD_BYTES = 1000
    with pytest.raises(ValidationError) as exc:
        image_validate(upload(drawn_image(1)))
    assert exc.value.error_list[0].code == "too_large"


def test_pixel_limit(settings):
    settings.LOOKALIKE_MAX_IMAGE_PIXELS = 100 * 100
    with pytest.raises(ValidationError) as exc:
        image_validate(upload(png_bytes(Image.new("RGB", (200, 200), "white"))))
    assert exc.value.error_list[0].code == "bomb"


def test_image_validate_accepts_and_rewinds():
    f = upload(drawn_image(1))
    f.read(10)
    image_validate(f)
    assert f.tell() == 0
    # a File without .size (ContentFile has one, a plain file-like object via File too)
    image_validate(ContentFile(drawn_image(2), name="x.png"))


def test_jpeg_keeps_a_jpeg_extension_whatever_the_upload_name():
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "navy").save(buf, format="JPEG")
    product = product_create(name="Navy", category="Shirt", image=upload(buf.getvalue(), "navy.png"))
    assert product.image.name.endswith(".jpg")


def test_same_bytes_resaved_is_a_no_op(django_capture_on_commit_callbacks):
    data = drawn_image(1)
    product = product_create(name="Shirt", category="Shirt", image=upload(data))
    Product.objects.filter(pk=product.pk).update(status=Product.Status.READY)
    product.refresh_from_db()
    before = (product.image.name, product.status, product.status_changed_at, product.updated_at)
    with django_capture_on_commit_callbacks() as callbacks:
        product_update(product=product, image=upload(data, "again.png"))
    product.refresh_from_db()
    assert (product.image.name, product.status, product.status_changed_at,
            product.updated_at) == before
    assert callbacks == []


def test_new_image_makes_product_pending_and_queues_it(django_capture_on_commit_callbacks):
    product = product_create(name="Shirt", category="Shirt", image=upload(drawn_image(1)))
    Product.objects.filter(pk=product.pk).update(
        status=Product.Status.READY, error_message="old"
    )
    product.refresh_from_db()
    old_name = product.image.name
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        product_update(product=product, name="Blue shirt", image=upload(drawn_image(2)))
    product.refresh_from_db()
    assert product.name == "Blue shirt"
    assert product.status == Product.Status.PENDING
    assert product.image.name != old_name
    assert not product.image.storage.exists(old_name)  # old file removed on commit
    assert [s for s in sent(callbacks)] == [(queue.EMBED, {"product_ids": [product.pk]})]


def test_name_only_update_queues_nothing(django_capture_on_commit_callbacks):
    product = product_create(name="Shirt", category="Shirt", image=upload(drawn_image(1)))
    with django_capture_on_commit_callbacks() as callbacks:
        product_update(product=product, name="Renamed", category="Top")
    product.refresh_from_db()
    assert (product.name, product.category) == ("Renamed", "Top")
    assert callbacks == []


def test_bad_replacement_image_changes_nothing():
    product = product_create(name="Shirt", category="Shirt", image=upload(drawn_image(1)))
    with pytest.raises(ValidationError):
        product_update(product=product, image=upload(b"nope", "x.png"))
    assert Product.objects.get(pk=product.pk).image_sha256 == product.image_sha256


def test_delete_queues_removal_after_commit(django_capture_on_commit_callbacks):
    product = product_create(name="Shirt", category="Shirt", image=upload(drawn_image(1)))
    pk, name, storage = product.pk, product.image.name, product.image.storage
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        product_delete(product=product)
    assert not Product.objects.filter(pk=pk).exists()
    assert not storage.exists(name)
    assert sent(callbacks) == [(queue.REMOVE, {"product_ids": [pk]})]


def test_bulk_create_names_and_batches(settings, django_capture_on_commit_callbacks):
    settings.LOOKALIKE_EMBED_BATCH = 2
    product_create(name="Existing", category="Bag", image=upload(drawn_image(0)))
    files = [upload(drawn_image(i), f"photo-{i}.png") for i in range(1, 6)]
    with django_capture_on_commit_callbacks() as callbacks:
        products = products_bulk_create(files=files, category="Bag")
    assert [p.name for p in products] == ["Bag 2", "Bag 3", "Bag 4", "Bag 5", "Bag 6"]
    ids = [p.pk for p in products]
    assert sent(callbacks) == [
        (queue.EMBED, {"product_ids": ids[0:2]}),
        (queue.EMBED, {"product_ids": ids[2:4]}),
        (queue.EMBED, {"product_ids": ids[4:5]}),
    ]
    more = products_bulk_create(
        files=[upload(drawn_image(9), "red-bag.png")], category="Bag", name_pattern="{stem} ({n})"
    )
    assert more[0].name == "red-bag (7)"


def test_bulk_create_is_all_or_nothing(django_capture_on_commit_callbacks):
    files = [upload(drawn_image(1), "good.png"), upload(b"", "empty.png"),
             upload(b"text", "text.jpg")]
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(ValidationError) as exc:
        products_bulk_create(files=files, category="Bag")
    assert [e.code for e in exc.value.error_list] == ["empty", "unreadable"]
    assert "empty.png" in exc.value.messages[0]
    assert Product.objects.count() == 0
    assert callbacks == []
