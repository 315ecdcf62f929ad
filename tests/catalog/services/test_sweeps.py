"""The reconcile sweep: stuck products re-queued once per period, drift repaired. (The fast
lost-task sweep needs a real broker: tests/reliability/test_lost_tasks.py.)"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from catalog.models import Product, ProductPhoto
from catalog.services import queue
from catalog.services.product_embedding import products_embed_batch
from catalog.services.product_photos import product_photo_add
from catalog.services.sweeps import products_requeue_stuck, reconcile
from tests.pipeline.helpers import neighbour_mismatches, upload

pytestmark = pytest.mark.django_db


def test_stuck_products_are_requeued_once_per_period(make_products, settings,
                                                     django_capture_on_commit_callbacks):
    products = make_products(3)
    old = timezone.now() - timedelta(seconds=settings.LOOKALIKE_STUCK_AFTER_SECONDS + 60)
    Product.objects.filter(pk__in=[products[0].pk, products[1].pk]).update(status_changed_at=old)
    with django_capture_on_commit_callbacks() as callbacks:
        assert products_requeue_stuck() == {"requeued": 2}
        assert products_requeue_stuck() == {"requeued": 0}
    assert [(cb.task, cb.kwargs) for cb in callbacks] == [
        (queue.EMBED, {"product_ids": sorted([products[0].pk, products[1].pk])})
    ]


def _ready_with_a_pending_photo(product: Product, data: bytes, *, since) -> ProductPhoto:
    Product.objects.filter(pk=product.pk).update(status=Product.Status.READY)
    photo = product_photo_add(product=product, image=upload(data))
    ProductPhoto.objects.filter(pk=photo.pk).update(status_changed_at=since)
    return photo


def test_a_further_photo_stuck_pending_requeues_its_product_once_per_period(
    make_products, garments, settings, django_capture_on_commit_callbacks,
):
    products = make_products(3)
    old = timezone.now() - timedelta(seconds=settings.LOOKALIKE_STUCK_AFTER_SECONDS + 60)
    stuck = _ready_with_a_pending_photo(products[0], garments[5][1], since=old)
    _ready_with_a_pending_photo(products[1], garments[6][1], since=timezone.now())  # waiting
    Product.objects.filter(pk=products[2].pk).update(status=Product.Status.READY)
    with django_capture_on_commit_callbacks() as callbacks:
        assert products_requeue_stuck() == {"requeued": 1}
        assert products_requeue_stuck() == {"requeued": 0}
    assert [(cb.task, cb.kwargs) for cb in callbacks] == [
        (queue.EMBED, {"product_ids": [products[0].pk]})
    ]
    stuck.refresh_from_db()
    assert stuck.status == ProductPhoto.Status.PENDING and stuck.status_changed_at > old


def test_a_pending_photo_of_a_failed_product_is_not_requeued(
    make_products, garments, settings, django_capture_on_commit_callbacks,
):
    """The embed step leaves a failed product's further photos alone: re-queuing it would
    repeat every period for nothing."""
    product = make_products(1)[0]
    old = timezone.now() - timedelta(seconds=settings.LOOKALIKE_STUCK_AFTER_SECONDS + 60)
    _ready_with_a_pending_photo(product, garments[5][1], since=old)
    Product.objects.filter(pk=product.pk).update(status=Product.Status.FAILED,
                                                 error_message="truncated: test")
    with django_capture_on_commit_callbacks() as callbacks:
        assert products_requeue_stuck() == {"requeued": 0}
    assert callbacks == []


def test_reconcile_adds_missing_products_to_the_matrix(make_products):
    products = make_products(12)
    products_embed_batch(product_ids=[p.pk for p in products])  # index task "lost"
    result = reconcile()
    assert result["added"] == 12
    assert set(Product.objects.values_list("status", flat=True)) == {Product.Status.READY}
    assert neighbour_mismatches() == []
