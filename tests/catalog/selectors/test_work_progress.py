"""catalog.selectors.work_progress: what an import's progress bar counts."""

import pytest

from catalog.models import Product
from catalog.selectors.work_progress import products_progress
from tests.catalog.readside import make_product

pytestmark = pytest.mark.django_db


def test_progress_counts_ready_failed_and_deleted_products():
    statuses = ["ready", "ready", "failed", "pending", "processing", "ready"]
    products = [make_product(f"p{i}", status=status) for i, status in enumerate(statuses)]
    gone = products.pop()
    ids = [p.pk for p in products] + [gone.pk]
    Product.objects.filter(pk=gone.pk).delete()
    state = products_progress(product_ids=ids + ids[:2])  # repeated ids count once
    assert (state.total, state.ready, state.failed, state.gone) == (6, 2, 1, 1)
    assert not state.done


def test_photos_existing_sha256_names_main_and_further_photos_with_their_product():
    from catalog.models import ProductPhoto
    from catalog.selectors.work_progress import photos_existing_sha256

    shirt, coat = make_product("shirt"), make_product("coat")
    Product.objects.filter(pk=shirt.pk).update(image_sha256="a" * 64)
    ProductPhoto.objects.create(product=coat, image="products/x.png", image_sha256="f" * 64)
    assert photos_existing_sha256(sha256s=["a" * 64, "f" * 64, "0" * 64, ""]) == {
        "a" * 64: shirt.pk, "f" * 64: coat.pk}


def test_further_photos_progress_and_failure_reasons():
    from catalog.models import ProductPhoto
    from catalog.selectors.work_progress import (
        further_photos_failure_reasons,
        further_photos_progress,
    )

    coat = make_product("coat")
    photos = [ProductPhoto.objects.create(product=coat, image=f"products/{n}.png", status=status,
                                          error_message=message)
              for n, (status, message) in enumerate([
                  ("ready", ""), ("failed", "truncated: cut short"), ("pending", ""),
                  ("failed", "truncated: cut"), ("ready", "")])]
    gone = photos.pop()
    ids = [p.pk for p in photos] + [gone.pk]
    gone.delete()
    state = further_photos_progress(photo_ids=ids)
    assert (state.total, state.ready, state.failed, state.gone, state.pending) == (5, 1, 2, 1, 1)
    reasons = further_photos_failure_reasons(photo_ids=ids)
    assert {reason: [p.pk for p in failed] for reason, failed in reasons.items()} == {
        "truncated": [photos[1].pk, photos[3].pk]}
    assert reasons["truncated"][0].product.name == "coat"
