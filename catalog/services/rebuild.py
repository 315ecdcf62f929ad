"""The periodic full rebuild and the reconcile sweep (both run on the index queue)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from catalog.models import Product, RebuildRun
from catalog.services import queue
from catalog.services.embedding import products_embed_batch
from catalog.services.engine import matrix_remember, matrix_store, vector_key_current
from catalog.services.indexing import (
    existing_ids,
    index_repair,
    index_writer,
    indexable_vectors,
    neighbours_sync_chunked,
    products_mark_ready,
)
from catalog.services.space import projection_refit

logger = logging.getLogger(__name__)

_EMBED_CHUNK = 64


def _progress(run: RebuildRun, *, step: str | None = None, done: int | None = None,
              total: int | None = None, message: str | None = None) -> None:
    """Record progress in its own autocommitted write, so staff see it while it runs."""
    fields: dict[str, object] = {}
    for name, value in (("step", step), ("done", done), ("total", total), ("message", message)):
        if value is not None:
            setattr(run, name, value)
            fields[name] = value
    if fields:
        RebuildRun.objects.filter(pk=run.pk).update(**fields)


def stale_products() -> list[int]:
    """Products (not failed) without a vector made by the current model and policy for
    their current image."""
    key = vector_key_current()
    qs = Product.objects.exclude(status=Product.Status.FAILED).filter(
        Q(vector__isnull=True) | ~Q(vector_key=key) | ~Q(embedded_image_sha256=F("image_sha256"))
    )
    return list(qs.order_by("pk").values_list("pk", flat=True))




def similarity_rebuild(
    *, trigger: str = "beat", progress: Callable[[str, int, int], None] | None = None
) -> RebuildRun:
    """Re-embed what is stale, rebuild the matrix from the database, sync every list.

    Steps recorded in a ``RebuildRun`` (step, done/total): ``embed`` (stale products,
    including any stuck in pending), ``matrix`` (full build, published as a new
    generation), ``neighbours`` (every product's list compared with the matrix and
    rewritten where it differs), then state ``done``. A failure records state ``failed``
    with the error, and re-raises. ``progress(step, done, total)``, if given, is called after
    every recorded progress update (the management command draws its progress bar with it).
    """
    run = RebuildRun.objects.create(trigger=trigger[:32], step="embed")

    def report(*, step: str | None = None, done: int | None = None, total: int | None = None) -> None:
        _progress(run, step=step, done=done, total=total)
        if progress is not None:
            progress(run.step, run.done, run.total)

    try:
        stale = stale_products()
        report(step="embed", done=0, total=len(stale))
        failed = 0
        for start in range(0, len(stale), _EMBED_CHUNK):
            outcome = products_embed_batch(product_ids=stale[start : start + _EMBED_CHUNK])
            failed += len(outcome.failed)
            report(done=min(start + _EMBED_CHUNK, len(stale)))

        with index_writer(matrix_store()) as lock:
            ids, vectors = indexable_vectors()
            report(step="matrix", done=0, total=int(ids.size))
            # The projection (lda-blend space) is refitted here and only here; the matrix is
            # then built in the new space (its meta records the projection key).
            space = projection_refit(ids, vectors, vector_key_current())
            store = matrix_store(space)
            store.fence = lock.check
            matrix = store.rebuild(ids, space.apply(vectors))
            matrix_remember(store, matrix)
            report(done=int(ids.size))

            existing = existing_ids()
            report(step="neighbours", done=0, total=len(existing))
            rewritten = neighbours_sync_chunked(
                matrix=matrix,
                product_ids=sorted(existing),
                existing=existing,
                progress=lambda done, total: report(done=done, total=total),
                fence=lock.check,
            )
            products_mark_ready(set(ids.tolist()), fence=lock.check)
        run.state = RebuildRun.State.DONE
        run.step = "done"
        run.message = (
            f"re-embedded {len(stale) - failed} stale product(s) ({failed} failed); "
            f"matrix of {ids.size} product(s); {len(rewritten)} list(s) rewritten"
        )
    except Exception as exc:
        run.state = RebuildRun.State.FAILED
        run.message = f"{type(exc).__name__}: {exc}"
        run.finished_at = timezone.now()
        run.save(update_fields=["state", "message", "finished_at"])
        raise
    run.finished_at = timezone.now()
    run.save(update_fields=["state", "step", "message", "finished_at"])
    logger.info("rebuild %s: %s", run.pk, run.message)
    return run


def similarity_rebuild_enqueue(*, trigger: str = "admin") -> None:
    """Admin action "rebuild everything" / management command: queue the rebuild task."""
    queue.rebuild_enqueue(trigger=trigger)


def products_requeue_stuck(*, stuck_after: int | None = None) -> dict[str, int]:
    """Re-queue products left pending or processing for longer than the threshold.

    Their ``status_changed_at`` is touched, so one lost task causes one re-queue per
    threshold period, not one per sweep.
    """
    seconds = settings.LOOKALIKE_STUCK_AFTER_SECONDS if stuck_after is None else stuck_after
    cutoff = timezone.now() - timedelta(seconds=seconds)
    stuck = Product.objects.filter(
        status__in=[Product.Status.PENDING, Product.Status.PROCESSING],
        status_changed_at__lt=cutoff,
    )
    ids = list(stuck.order_by("pk").values_list("pk", flat=True))
    if ids:
        Product.objects.filter(pk__in=ids, status_changed_at__lt=cutoff).update(
            status_changed_at=timezone.now()
        )
        # The embed task skips products whose vector is current and queues their indexing.
        queue.embed_enqueue(product_ids=ids, robust=False)
        logger.warning("re-queued %d stuck product(s): %s", len(ids), ids[:20])
    return {"requeued": len(ids)}


def reconcile(*, stuck_after: int | None = None) -> dict[str, int]:
    """The sweep beat runs every 10 minutes: re-queue stuck products, repair drift."""
    result = products_requeue_stuck(stuck_after=stuck_after)
    result.update(index_repair())
    return result
