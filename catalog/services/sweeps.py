"""The sweeps beat runs to find lost work: the fast lost-task sweep (every 30 s, only while
the pipeline is idle) and the reconcile sweep (every 10 minutes: re-queue what is stuck, repair
drifted lists)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from catalog import task_names
from catalog.models import Product, ProductPhoto
from catalog.selectors.broker_state import queue_lengths, workers_state
from catalog.services import queue
from catalog.services.indexing import index_repair

logger = logging.getLogger(__name__)


def _stuck_since(cutoff: datetime) -> QuerySet[Product]:
    return Product.objects.filter(
        status__in=[Product.Status.PENDING, Product.Status.PROCESSING],
        status_changed_at__lt=cutoff,
    )


def _photos_stuck_since(cutoff: datetime) -> QuerySet[ProductPhoto]:
    """Further photos waiting for their embedding since before ``cutoff`` (not those of a
    failed product: the embed step leaves them until the product gets a new image)."""
    return ProductPhoto.objects.filter(
        status=ProductPhoto.Status.PENDING, status_changed_at__lt=cutoff,
    ).exclude(product__status=Product.Status.FAILED)


def _anything_stuck(cutoff: datetime) -> bool:
    return _stuck_since(cutoff).exists() or _photos_stuck_since(cutoff).exists()


def _requeue(cutoff: datetime, *, why: str) -> list[int]:
    """Re-queue products stuck (or with a further photo stuck) since before ``cutoff``,
    touching ``status_changed_at`` so one lost task causes one re-queue per period, not one
    per sweep."""
    ids = sorted({*_stuck_since(cutoff).values_list("pk", flat=True),
                  *_photos_stuck_since(cutoff).values_list("product_id", flat=True)})
    if ids:
        now = timezone.now()
        _stuck_since(cutoff).filter(pk__in=ids).update(status_changed_at=now)
        _photos_stuck_since(cutoff).filter(product_id__in=ids).update(status_changed_at=now)
        # The embed task skips products whose vector is current and queues their indexing.
        queue.embed_enqueue(product_ids=ids, robust=False)
        logger.warning("re-queued %d %s product(s): %s", len(ids), why, ids[:20])
    return ids


def products_requeue_stuck(*, stuck_after: int | None = None) -> dict[str, int]:
    """Re-queue products left pending or processing for longer than the threshold
    (``LOOKALIKE_STUCK_AFTER_SECONDS``), whatever the broker says: the slow safety net."""
    seconds = settings.LOOKALIKE_STUCK_AFTER_SECONDS if stuck_after is None else stuck_after
    return {"requeued": len(_requeue(timezone.now() - timedelta(seconds=seconds), why="stuck"))}


def pipeline_busy(*, ignore_task: str = task_names.SWEEP_LOST) -> str | None:
    """Why the pipeline is not idle (messages waiting, a worker running or holding a task),
    or None when it is: then a product still pending was lost, not waiting its turn."""
    waiting = {name: n for name, n in queue_lengths().items() if n}
    if waiting:
        return f"queued: {waiting}"
    for worker in workers_state():
        running = [name for name in worker.active if name != ignore_task]
        if running or worker.reserved:
            return f"worker {worker.name} busy: {running or [f'{worker.reserved} reserved']}"
    return None


def products_requeue_lost(*, stuck_after: int | None = None) -> dict[str, int]:
    """The fast sweep: products pending or processing for ``LOOKALIKE_IDLE_STUCK_SECONDS``
    while every queue is empty and every worker idle lost their task: re-queue them now.

    Products merely waiting behind a long import are left alone (the queues are not empty
    or a worker is busy).
    """
    seconds = settings.LOOKALIKE_IDLE_STUCK_SECONDS if stuck_after is None else stuck_after
    cutoff = timezone.now() - timedelta(seconds=seconds)
    if not _anything_stuck(cutoff):
        return {"requeued": 0, "busy": 0}
    busy = pipeline_busy()
    if busy is not None:
        logger.info("products pending, but the pipeline is busy (%s): not re-queuing", busy)
        return {"requeued": 0, "busy": 1}
    return {"requeued": len(_requeue(cutoff, why="lost")), "busy": 0}


def reconcile(*, stuck_after: int | None = None) -> dict[str, int]:
    """The sweep beat runs every 10 minutes: re-queue stuck products, repair drift."""
    result = products_requeue_stuck(stuck_after=stuck_after)
    result.update(index_repair())
    return result
