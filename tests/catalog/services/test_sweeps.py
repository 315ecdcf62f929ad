"""The reconcile sweep: stuck products re-queued once per period, drift repaired. (The fast
lost-task sweep needs a real broker: tests/reliability/test_lost_tasks.py.)"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from catalog.models import Product
from catalog.services import queue
from catalog.services.product_embedding import products_embed_batch
from catalog.services.sweeps import products_requeue_stuck, reconcile
from tests.pipeline.helpers import neighbour_mismatches

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


def test_reconcile_adds_missing_products_to_the_matrix(make_products):
    products = make_products(12)
    products_embed_batch(product_ids=[p.pk for p in products])  # index task "lost"
    result = reconcile()
    assert result["added"] == 12
    assert set(Product.objects.values_list("status", flat=True)) == {Product.Status.READY}
    assert neighbour_mismatches() == []
