"""A product whose task was lost is found fast, and products merely waiting behind
other work are left alone.

The fast sweep re-queues products pending for ``LOOKALIKE_IDLE_STUCK_SECONDS`` while every
queue of the deployment is empty and every worker idle; beat runs it every
``LOOKALIKE_IDLE_SWEEP_SECONDS``. The test settings shorten both (3 s and 2 s instead of 30 s
and 30 s) so the bound, stuck + interval + the work itself, is seconds, not a minute.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from catalog.models import Product
from catalog.selectors import broker_state as broker
from catalog.services import queue
from catalog.services.beat import LOST_SWEEP, beat_schedule_ensure
from catalog.services.products import product_create
from catalog.services.sweeps import products_requeue_lost
from tests.reliability.support import fashion_images, settled, upload, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

STUCK = 3
SWEEP = 2


@pytest.fixture(scope="module")
def images(model_path):
    return fashion_images(1, offset=3, size=128)


def _drop_sends(monkeypatch) -> list[queue.TaskSend]:
    """The broker loses every task sent from now on."""
    lost: list[queue.TaskSend] = []
    monkeypatch.setattr(queue.TaskSend, "__call__", lambda self: lost.append(self))
    return lost


def test_a_dropped_task_is_ready_within_the_bound(harness, images, settings, monkeypatch):
    beat_schedule_ensure()
    sweep = PeriodicTask.objects.get(name=LOST_SWEEP)
    assert sweep.task == "workers.tasks.requeue_lost" and sweep.queue == "index"
    assert (sweep.interval.every, sweep.interval.period, sweep.expire_seconds) == (
        settings.LOOKALIKE_IDLE_SWEEP_SECONDS, IntervalSchedule.SECONDS,
        settings.LOOKALIKE_IDLE_SWEEP_SECONDS)
    every, _ = IntervalSchedule.objects.get_or_create(every=SWEEP, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.filter(name=LOST_SWEEP).update(interval=every, expire_seconds=SWEEP)
    env = {"LOOKALIKE_IDLE_STUCK_SECONDS": str(STUCK)}
    (worker,) = harness.start_workers("solo", env=env)
    harness.start_beat(env=env)
    lost = _drop_sends(monkeypatch)
    cls, data = images[0]
    product = product_create(name="lost", category=cls, image=upload(data))
    created = time.monotonic()
    assert [s.task for s in lost] == ["workers.tasks.embed_products"]
    monkeypatch.undo()  # the sweep's own sends go through

    bound = STUCK + SWEEP
    wait_for(settled(1), timeout=bound + 60, interval=0.2, what="the lost product ready")
    took = time.monotonic() - created
    assert Product.objects.get(pk=product.pk).status == Product.Status.READY
    assert f"re-queued 1 lost product(s): [{product.pk}]" in worker.log()
    # The bound is stuck + one interval; the rest is the embedding itself on a loaded machine.
    print(f"lost product ready after {took:.1f} s (bound {bound} s + the work)")


def test_products_waiting_behind_queued_work_are_left_alone(harness, images, settings):
    # No worker: the embed task of each upload waits in the queue.
    products = [product_create(name=f"waiting {i}", category=cls, image=upload(data))
                for i, (cls, data) in enumerate(images[:3])]
    Product.objects.update(status_changed_at=timezone.now() - timedelta(seconds=60))
    assert broker.queue_lengths()["embed"] == 3

    assert products_requeue_lost(stuck_after=STUCK) == {"requeued": 0, "busy": 1}
    assert broker.queue_lengths()["embed"] == 3  # nothing added

    # The broker loses them: the queue is empty, no worker is busy, so they were lost.
    harness.redis.client(0).delete(f"{settings.LOOKALIKE_NAMESPACE}:embed")
    assert broker.queue_lengths()["embed"] == 0
    assert products_requeue_lost(stuck_after=STUCK) == {"requeued": 3, "busy": 0}
    assert broker.queue_lengths()["embed"] == 1  # one batched task for the three
    # Touched: a second sweep right away does not queue them again.
    assert products_requeue_lost(stuck_after=STUCK) == {"requeued": 0, "busy": 0}
    assert len(products) == 3


def test_fresh_products_are_not_lost(harness, images, settings):
    cls, data = images[0]
    product_create(name="fresh", category=cls, image=upload(data))
    harness.redis.client(0).delete(f"{settings.LOOKALIKE_NAMESPACE}:embed")
    # Pending for less than the threshold: not lost yet.
    assert products_requeue_lost(stuck_after=60) == {"requeued": 0, "busy": 0}


def test_a_busy_worker_means_nothing_is_lost(harness, images, settings, monkeypatch):
    (worker,) = harness.start_workers("busy")
    harness.arm("index.locked", "pause-once")  # the index task holds the worker here
    cls, data = images[0]
    product_create(name="in the works", category=cls, image=upload(data))
    harness.paused("index.locked", timeout=120)
    Product.objects.update(status_changed_at=timezone.now() - timedelta(seconds=60))
    assert broker.queue_lengths() == {"embed": 0, "index": 0}
    states = broker.workers_state()
    assert [w.active for w in states] == [["workers.tasks.index_products"]], states
    assert products_requeue_lost(stuck_after=STUCK) == {"requeued": 0, "busy": 1}
    harness.release("index.locked")
    wait_for(settled(1), timeout=120, interval=0.2, what="the product ready once released")
    assert "lost product" not in worker.log()
