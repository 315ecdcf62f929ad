"""catalog.services.product_photos: a product's further photos checked before saving, their
embedding and indexing queued on commit, their files removed with them; many products'
photos added at once."""

from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction

from catalog.models import Product, ProductPhoto
from catalog.services import queue
from catalog.services.product_photos import (
    product_photo_add,
    product_photo_change,
    product_photo_remove,
    product_photos_add_bulk,
)
from catalog.services.products import image_check, product_create, product_delete, products_delete
from catalog.vectors import sha256_hex
from tests.pipeline.helpers import drawn_image, upload

pytestmark = pytest.mark.django_db


def sent(callbacks) -> list[tuple[str, dict]]:
    return [(cb.task, cb.kwargs) for cb in callbacks if isinstance(cb, queue.TaskSend)]


def stored_files() -> set[str]:
    root = Path(django_settings.MEDIA_ROOT)
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def product(garments) -> Product:
    cls, data = garments[0]
    return product_create(name="Coat", category=cls, image=upload(data, "main.png"))


def test_add_stores_a_pending_photo_and_queues_the_embedding_on_commit(
    garments, product, django_capture_on_commit_callbacks,
):
    data = garments[1][1]
    with django_capture_on_commit_callbacks() as callbacks:
        photo = product_photo_add(product=product, image=upload(data, "back.png"))
    photo.refresh_from_db()
    assert photo.product_id == product.pk and photo.status == ProductPhoto.Status.PENDING
    assert photo.image.name.startswith("products/") and photo.image.name.endswith(".png")
    assert photo.image.read() == data
    assert photo.image_sha256 == hashlib.sha256(data).hexdigest()
    assert photo.vector is None and photo.embedded_image_sha256 == ""
    assert sent(callbacks) == [(queue.EMBED, {"product_ids": [product.pk]})]
    assert product.photos_counted() == 2


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"just some text, not a picture at all", "unreadable"),
        (drawn_image(5)[:600], "truncated"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "unsupported_format"),
    ],
)
def test_a_bad_image_is_refused_with_its_reason_and_nothing_is_saved(
    product, data, reason, django_capture_on_commit_callbacks,
):
    before = stored_files()
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(ValidationError) as exc:
        product_photo_add(product=product, image=upload(data, "bad.png"))
    assert exc.value.error_list[0].code == reason
    assert not ProductPhoto.objects.exists()
    assert stored_files() == before
    assert sent(callbacks) == []


def test_photos_past_the_limit_are_refused(settings, garments, product,
                                           django_capture_on_commit_callbacks):
    settings.LOOKALIKE_MAX_PHOTOS = 3
    for _, data in garments[1:3]:
        product_photo_add(product=product, image=upload(data))
    before = stored_files()
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(ValidationError) as exc:
        product_photo_add(product=product, image=upload(garments[3][1]))
    assert exc.value.error_list[0].code == "too_many_photos"
    assert product.photos.count() == 2 and product.photos_counted() == 3
    assert stored_files() == before
    assert sent(callbacks) == []


def test_change_with_the_same_bytes_is_a_no_op(garments, product,
                                               django_capture_on_commit_callbacks):
    photo = product_photo_add(product=product, image=upload(garments[1][1]))
    ProductPhoto.objects.filter(pk=photo.pk).update(status=ProductPhoto.Status.READY)
    photo.refresh_from_db()
    name = photo.image.name
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert product_photo_change(photo=photo, image=upload(garments[1][1], "again.png")) is False
    photo.refresh_from_db()
    assert photo.status == ProductPhoto.Status.READY and photo.image.name == name
    assert photo.image.storage.exists(name)
    assert sent(callbacks) == []


def test_change_with_new_bytes_replaces_the_file_and_queues_the_embedding(
    garments, product, django_capture_on_commit_callbacks,
):
    photo = product_photo_add(product=product, image=upload(garments[1][1]))
    old = photo.image.name
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert product_photo_change(photo=photo, image=upload(garments[2][1])) is True
    photo.refresh_from_db()
    assert photo.image.name != old and photo.image.read() == garments[2][1]
    assert photo.status == ProductPhoto.Status.PENDING
    assert not photo.image.storage.exists(old)
    assert sent(callbacks) == [(queue.EMBED, {"product_ids": [product.pk]})]


def test_remove_deletes_the_row_and_the_file_on_commit_and_queues_the_index_task(
    garments, product, django_capture_on_commit_callbacks,
):
    photo = product_photo_add(product=product, image=upload(garments[1][1]))
    kept = product_photo_add(product=product, image=upload(garments[2][1]))
    storage, name = photo.image.storage, photo.image.name
    with django_capture_on_commit_callbacks() as callbacks:
        product_photo_remove(photo=photo)
        assert storage.exists(name)  # not before the commit
    for callback in callbacks:
        callback()
    assert not ProductPhoto.objects.filter(pk=photo.pk).exists()
    assert not storage.exists(name)
    assert list(product.photos.all()) == [kept] and kept.image.storage.exists(kept.image.name)
    assert sent(callbacks) == [(queue.INDEX, {"product_ids": [product.pk]})]


@pytest.mark.parametrize("delete", ["one", "many"])
def test_deleting_a_product_deletes_its_further_photos_and_their_files(
    garments, product, delete, django_capture_on_commit_callbacks,
):
    photos = [product_photo_add(product=product, image=upload(data)) for _, data in garments[1:4]]
    names = [product.image.name, *(p.image.name for p in photos)]
    other = product_create(name="Other", category="Coat", image=upload(garments[5][1]))
    other_photo = product_photo_add(product=other, image=upload(garments[6][1]))
    with django_capture_on_commit_callbacks(execute=True):
        if delete == "one":
            product_delete(product=product)
        else:
            products_delete(product_ids=[product.pk])
    assert not ProductPhoto.objects.filter(product_id=product.pk).exists()
    assert not any(product.image.storage.exists(name) for name in names)
    assert list(ProductPhoto.objects.all()) == [other_photo]
    assert other_photo.image.storage.exists(other_photo.image.name)


def _until_another_session_waits() -> None:
    """On PostgreSQL, until another session waits on a lock. SQLite's IMMEDIATE transactions
    cannot show it: there the second writer starts only after the first commits."""
    if connection.vendor != "postgresql":
        return
    deadline = time.monotonic() + 60
    while True:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND wait_event_type = 'Lock'")
            if cursor.fetchone()[0]:
                return
        assert time.monotonic() < deadline, "the second add never waited for the first"
        time.sleep(0.01)


@pytest.mark.django_db(transaction=True)
def test_two_adds_racing_for_the_last_place_keep_the_limit(settings, garments):
    """One add holds its transaction open with the product at the limit; another add, in
    another thread, waits for it and is refused (without the product's row locked it would
    count the photos committed so far and go past the limit)."""
    settings.LOOKALIKE_MAX_PHOTOS = 2
    product = product_create(name="Coat", category="Coat", image=upload(garments[0][1]))
    added, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with transaction.atomic():
                product_photo_add(product=product, image=upload(garments[1][1]))
                added.set()
                assert release.wait(120), "never released"
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)
            added.set()
        finally:
            connection.close()

    def second() -> str:
        try:
            product_photo_add(product=Product.objects.get(pk=product.pk),
                              image=upload(garments[2][1]))
            return "added"
        except ValidationError as exc:
            return str(exc.error_list[0].code)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert added.wait(120) and not errors, errors
    before = stored_files()
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(second)
        _until_another_session_waits()
        release.set()
        holder.join(120)
        assert answer.result(timeout=120) == "too_many_photos"
    assert not errors, errors
    assert product.photos_counted() == 2
    assert stored_files() == before
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
