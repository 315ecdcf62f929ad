"""A product's further photos in the admin: the "More photos" inline on its change page, each
row checked like the main photo and saved through catalog.services.product_photos (what they
queue is checked here), the limit of photos per product, and the changelist's count."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from catalog.models import Product, ProductPhoto
from catalog.services.product_photos import product_photo_add
from catalog.services.queue import EMBED, INDEX
from tests.catalog import readside
from tests.catalog.readside import ADMIN_CHANGE_EXTRA, make_product, png_bytes

media_root = readside.media_root
fresh_caches = readside.fresh_caches

pytestmark = pytest.mark.django_db

PHOTOS = "photos"


@pytest.fixture(autouse=True)
def _media(media_root, fresh_caches):
    return media_root


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(user)
    return client


def png_upload(colour: tuple[int, int, int], name: str = "more.png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, png_bytes(colour), content_type="image/png")


def queued(callbacks) -> list[tuple[str, dict]]:
    return [(cb.task, cb.kwargs) for cb in callbacks if hasattr(cb, "task")]


def stored_files(root: Path) -> set[str]:
    folder = root / "products"
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def further_photo(product: Product, colour: tuple[int, int, int]) -> ProductPhoto:
    return product_photo_add(product=product, image=ContentFile(png_bytes(colour), name="f.png"))


def change_data(product: Product, rows: list[dict], *, initial: int = 0) -> dict:
    """The change form as the browser posts it, with the photo inline's rows."""
    data = {"name": product.name, "category": product.category, "slug": product.slug,
            **ADMIN_CHANGE_EXTRA, f"{PHOTOS}-TOTAL_FORMS": len(rows),
            f"{PHOTOS}-INITIAL_FORMS": initial}
    for i, row in enumerate(rows):
        data.update({f"{PHOTOS}-{i}-{key}": value for key, value in row.items()})
    return data


def post_change(staff, product: Product, rows: list[dict], *, initial: int = 0):
    return staff.post(reverse("admin:catalog_product_change", args=[product.pk]),
                      change_data(product, rows, initial=initial))


# -- the change page ------------------------------------------------------------------------------


def test_change_page_shows_each_photo_with_its_status_and_error(staff, settings):
    settings.LOOKALIKE_MAX_PHOTOS = 4
    product = make_product("Coat")
    ok = further_photo(product, (10, 20, 30))
    bad = further_photo(product, (40, 50, 60))
    ProductPhoto.objects.filter(pk=bad.pk).update(status=ProductPhoto.Status.FAILED,
                                                   error_message="JPEG data is truncated")
    response = staff.get(reverse("admin:catalog_product_change", args=[product.pk]))
    assert response.status_code == 200
    html = response.text
    assert "More photos" in html
    assert f'<img src="{ok.image.url}"' in html and f'<img src="{bad.image.url}"' in html
    assert "lookalike-status-pending" in html and "lookalike-status-failed" in html
    assert "JPEG data is truncated" in html
    # two rows for the photos and one empty row; 3 further photos at most besides the main one
    assert f'name="{PHOTOS}-TOTAL_FORMS" value="3"' in html
    assert f'name="{PHOTOS}-MAX_NUM_FORMS" value="3"' in html


def test_add_page_has_no_photo_inline(staff):
    response = staff.get(reverse("admin:catalog_product_add"))
    assert response.status_code == 200
    assert "More photos" not in response.text


def test_changelist_counts_each_products_photos(staff):
    one = make_product("Single")
    three = make_product("Triple")
    further_photo(three, (1, 1, 1))
    further_photo(three, (2, 2, 2))
    response = staff.get(reverse("admin:catalog_product_changelist"))
    rows = {p.pk: p.further_photos for p in response.context["cl"].result_list}
    assert rows == {one.pk: 0, three.pk: 2}
    assert '<td class="field-photo_count">1 photo</td>' in response.text
    assert '<td class="field-photo_count">3 photos</td>' in response.text


# -- writes through the services ------------------------------------------------------------------


def test_two_photos_added_through_the_inline_are_stored_and_queued(
        staff, media_root, django_capture_on_commit_callbacks):
    product = make_product("Dress")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post_change(staff, product, [{"image": png_upload((200, 0, 0), "../../a.png")},
                                                {"image": png_upload((0, 200, 0))}])
    assert response.status_code == 302, response.context["inline_admin_formsets"][0].formset.errors
    photos = list(product.photos.order_by("pk"))
    assert len(photos) == 2
    assert all(p.status == ProductPhoto.Status.PENDING and len(p.image_sha256) == 64 for p in photos)
    assert photos[0].image_sha256 != photos[1].image_sha256
    for photo in photos:
        path = (media_root / photo.image.name).resolve()
        assert path.is_file() and media_root.resolve() in path.parents
        assert re.fullmatch(r"products/[0-9a-f]{32}\.png", photo.image.name)  # not the upload's name
    assert queued(callbacks) == [(EMBED, {"product_ids": [product.pk]})] * 2
    product.refresh_from_db()
    assert product.status == Product.Status.READY  # the product keeps its list meanwhile


def test_an_inline_photo_is_checked_once(staff, monkeypatch):
    from catalog.services import products

    checks = []
    real = products.check_image

    def counting(data, **kwargs):
        checks.append(len(data))
        return real(data, **kwargs)

    product = make_product("Dress")
    monkeypatch.setattr(products, "check_image", counting)
    response = post_change(staff, product, [{"image": png_upload((5, 5, 5))}])
    assert response.status_code == 302
    assert product.photos.count() == 1 and len(checks) == 1  # by the form; the service reuses it


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"this is not an image", "unreadable"), (b"", "empty"), (png_bytes()[:70], "truncated")],
)
def test_a_bad_photo_shows_the_reason_on_its_row_and_saves_nothing(
        staff, media_root, data, reason, django_capture_on_commit_callbacks):
    product = make_product("Dress")
    before = stored_files(media_root)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post_change(staff, product, [
            {"image": png_upload((0, 0, 200))},
            {"image": SimpleUploadedFile("bad.png", data, content_type="image/png")},
        ])
    assert response.status_code == 200
    formset = response.context["inline_admin_formsets"][0].formset
    assert formset.forms[0].errors == {}
    assert f"reason: {reason}" in " ".join(formset.forms[1].errors["image"])
    assert f"reason: {reason}" in response.text
    assert not ProductPhoto.objects.exists()
    assert stored_files(media_root) == before
    assert queued(callbacks) == []


def test_a_deleted_photo_is_removed_with_its_file(staff, media_root,
                                                  django_capture_on_commit_callbacks):
    product = make_product("Dress")
    keep = further_photo(product, (1, 2, 3))
    gone = further_photo(product, (4, 5, 6))
    gone_file = media_root / gone.image.name
    assert gone_file.is_file()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post_change(staff, product, [
            {"id": keep.pk, "product": product.pk},
            {"id": gone.pk, "product": product.pk, "DELETE": "on"},
        ], initial=2)
    assert response.status_code == 302
    assert list(product.photos.all()) == [keep]
    assert queued(callbacks) == [(INDEX, {"product_ids": [product.pk]})]
    for callback in callbacks:
        if not hasattr(callback, "task"):
            callback()  # the file's deletion, once the transaction commits
    assert not gone_file.exists()
    assert (media_root / keep.image.name).is_file()


def test_a_changed_photo_is_pending_again_and_queued(staff, media_root,
                                                     django_capture_on_commit_callbacks):
    product = make_product("Dress")
    photo = further_photo(product, (1, 2, 3))
    old_sha = photo.image_sha256
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post_change(staff, product, [
            {"id": photo.pk, "product": product.pk, "image": png_upload((9, 9, 9))},
        ], initial=1)
    assert response.status_code == 302
    photo.refresh_from_db()
    assert photo.image_sha256 != old_sha and photo.status == ProductPhoto.Status.PENDING
    assert queued(callbacks) == [(EMBED, {"product_ids": [product.pk]})]


def test_the_limit_of_photos_is_a_form_error_and_saves_nothing(
        staff, settings, django_capture_on_commit_callbacks):
    settings.LOOKALIKE_MAX_PHOTOS = 3
    product = make_product("Dress")
    first = further_photo(product, (1, 2, 3))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post_change(staff, product, [
            {"id": first.pk, "product": product.pk},
            {"image": png_upload((10, 10, 10))},
            {"image": png_upload((20, 20, 20))},
        ], initial=1)
    assert response.status_code == 200
    errors = response.context["inline_admin_formsets"][0].formset.non_form_errors()
    assert errors.as_data()[0].code == "too_many_photos"
    assert "A product has at most 3 photos, the main one included; it has 2" in response.text
    assert list(product.photos.all()) == [first]
    assert queued(callbacks) == []

    # removing one makes room for one: the swap is saved
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post_change(staff, product, [
            {"id": first.pk, "product": product.pk, "DELETE": "on"},
            {"image": png_upload((10, 10, 10))},
            {"image": png_upload((20, 20, 20))},
        ], initial=1)
    assert response.status_code == 302
    assert product.photos.count() == 2 and not product.photos.filter(pk=first.pk).exists()
