"""Guarantee 3, broker loss: Redis restarts empty, every queued task is gone; beat's reconcile
sweep re-queues every product left pending or processing beyond the threshold, and every
product ends ready."""

from __future__ import annotations

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from catalog.models import Product
from catalog.services.beat import RECONCILE_SWEEP, beat_schedule_ensure
from catalog.services.product_embedding import products_embed_batch
from catalog.services.products import product_create, products_bulk_create
from tests.reliability.conftest import point_app_at
from tests.reliability.support import fashion_images, problems, settled, upload, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def images(model_path):
    return fashion_images(1, offset=7, size=128)  # 10 garments


def test_tasks_lost_with_the_broker_are_requeued_by_the_beat_sweep(harness, images, settings):
    # An index worker lives through the broker restart; nobody consumes "embed" yet, so the
    # embed tasks wait in Redis.
    (indexer,) = harness.start_workers("indexer", queues="index")
    bulk = products_bulk_create(
        files=[upload(data, f"{cls}.png") for cls, data in images[:5]], category="Lost"
    )
    singles = [product_create(name=f"{cls} single", category=cls, image=upload(data))
               for cls, data in images[5:]]
    # Three of them got as far as embedding; their index tasks are lost with the rest.
    embedded = [p.pk for p in singles[:3]]
    assert products_embed_batch(product_ids=embedded).embedded == embedded
    broker = harness.redis.client(0)
    embed_queue = f"{settings.LOOKALIKE_NAMESPACE}:embed"  # keys carry the namespace
    assert broker.llen(embed_queue) == 1 + 5  # one bulk batch, five single uploads

    harness.redis.restart()  # SIGKILL, no persistence: the queues are gone
    point_app_at(harness.redis.url(0))  # this process's pooled connections died with it
    assert broker.llen(embed_queue) == 0
    statuses = dict(Product.objects.values_list("pk", "status"))
    assert sorted(statuses.values()) == ["pending"] * 7 + ["processing"] * 3
    assert len(bulk) + len(singles) == 10

    # beat, with the reconcile sweep every second instead of every ten minutes
    beat_schedule_ensure()
    every_second, _ = IntervalSchedule.objects.get_or_create(
        every=1, period=IntervalSchedule.SECONDS
    )
    PeriodicTask.objects.filter(name=RECONCILE_SWEEP).update(interval=every_second)
    harness.start_workers("embedder", queues="embed")
    harness.start_beat()

    wait_for(settled(10), timeout=90, interval=0.5, what="every product ready after the sweep")
    assert problems(10) == []
    assert "re-queued" in indexer.log()  # the sweep ran on the worker that lived through it
    assert "workers.tasks.reconcile" in indexer.log()
