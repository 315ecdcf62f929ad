"""The periodic full rebuild and the reconcile sweep (both run on the index queue)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from catalog import broker, task_names
from catalog.engine import layout_for, matrix_remember, matrix_store
from catalog.models import Product, RebuildRun
from catalog.services import queue
from catalog.services.embedding import products_embed_batch
from catalog.services.indexing import (
    existing_ids,
    index_repair,
    index_writer,
    indexable_vectors,
    neighbours_sync_chunked,
    products_mark_ready,
)
from catalog.services.rebuild_blocks import rebuild_blocks_collect, rebuild_blocks_plan
from catalog.space import projection_refit
from catalog.vectors import vector_key_current
from similarity.layout import NeighbourIndex
from similarity.rebuild import discard_input
from similarity.store import MatrixStore

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




Report = Callable[..., None]


@dataclass
class _Rebuilt:
    stale: int = 0
    failed: int = 0
    indexed: int = 0
    rewritten: int = 0

    def message(self) -> str:
        return (
            f"re-embedded {self.stale - self.failed} stale product(s) ({self.failed} failed); "
            f"matrix of {self.indexed} product(s); {self.rewritten} list(s) rewritten"
        )


def _reembed_stale(report: Report, result: _Rebuilt) -> None:
    stale = stale_products()
    result.stale = len(stale)
    report(step="embed", done=0, total=len(stale))
    for start in range(0, len(stale), _EMBED_CHUNK):
        outcome = products_embed_batch(product_ids=stale[start : start + _EMBED_CHUNK])
        result.failed += len(outcome.failed)
        report(done=min(start + _EMBED_CHUNK, len(stale)))


def _categories() -> dict[int, str]:
    return dict(Product.objects.exclude(category="").values_list("pk", "category"))


def _rebuild_matrix(run: RebuildRun, report: Report, fence: Callable[[], None]) -> NeighbourIndex:
    """Refit the projection (lda-blend space: here and only here), then build the index in
    the new space (its meta records the projection key) and publish it under the fence: the
    dense matrix here, the top-k layout in row blocks spread over the rebuild workers."""
    ids, vectors = indexable_vectors()
    report(step="matrix", done=0, total=int(ids.size))
    space = projection_refit(ids, vectors, _categories(), vector_key_current())
    store = matrix_store(space).store
    store.fence = fence
    store.layout = layout_for(int(ids.size))
    if store.layout == "topk":
        matrix = _rebuild_in_blocks(run, store, ids, space.apply(vectors), report, fence)
    else:
        matrix = store.rebuild(ids, space.apply(vectors))
    matrix_remember(store, matrix)
    report(step="matrix", done=int(ids.size), total=int(ids.size))
    return matrix


def _rebuild_in_blocks(run: RebuildRun, store: MatrixStore, ids: np.ndarray, vectors: np.ndarray,
                       report: Report, fence: Callable[[], None]) -> NeighbourIndex:
    input_dir = store.rebuild_input(ids, vectors)
    try:
        metric, k = store.meta.metric, store.k
        rebuild_blocks_plan(run=run, input_dir=input_dir, metric=metric, k=k)
        report(step="blocks", done=0, total=run.blocks.count())
        blocks = rebuild_blocks_collect(
            run=run, input_dir=input_dir, metric=metric, k=k, fence=fence,
            progress=lambda done, total: report(step="blocks", done=done, total=total),
        )
        return store.publish_rebuild(input_dir, blocks)
    finally:
        discard_input(input_dir)


def _rewrite_lists(report: Report, matrix: NeighbourIndex, fence: Callable[[], None]) -> int:
    existing = existing_ids()
    report(step="neighbours", done=0, total=len(existing))
    rewritten = neighbours_sync_chunked(
        matrix=matrix, product_ids=sorted(existing), existing=existing,
        progress=lambda done, total: report(done=done, total=total), fence=fence,
    )
    products_mark_ready(set(matrix.ids.tolist()), fence=fence)
    return len(rewritten)


def _finish(run: RebuildRun, state: str, message: str, fields: list[str]) -> None:
    run.state, run.message, run.finished_at = state, message, timezone.now()
    run.save(update_fields=[*fields, "state", "message", "finished_at"])


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

    result = _Rebuilt()
    try:
        _reembed_stale(report, result)
        with index_writer(matrix_store()) as lock:
            matrix = _rebuild_matrix(run, report, lock.check)
            result.indexed = len(matrix)
            result.rewritten = _rewrite_lists(report, matrix, lock.check)
    except Exception as exc:
        _finish(run, RebuildRun.State.FAILED, f"{type(exc).__name__}: {exc}", [])
        raise
    run.step = "done"
    _finish(run, RebuildRun.State.DONE, result.message(), ["step"])
    logger.info("rebuild %s: %s", run.pk, run.message)
    return run


def similarity_rebuild_enqueue(*, trigger: str = "admin") -> None:
    """Admin action "rebuild everything" / management command: queue the rebuild task."""
    queue.rebuild_enqueue(trigger=trigger)


def _stuck_since(cutoff: datetime) -> QuerySet[Product]:
    return Product.objects.filter(
        status__in=[Product.Status.PENDING, Product.Status.PROCESSING],
        status_changed_at__lt=cutoff,
    )


def _requeue(cutoff: datetime, *, why: str) -> list[int]:
    """Re-queue products stuck since before ``cutoff``, touching ``status_changed_at`` so one
    lost task causes one re-queue per period, not one per sweep."""
    ids = list(_stuck_since(cutoff).order_by("pk").values_list("pk", flat=True))
    if ids:
        _stuck_since(cutoff).filter(pk__in=ids).update(status_changed_at=timezone.now())
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
    waiting = {name: n for name, n in broker.queue_lengths().items() if n}
    if waiting:
        return f"queued: {waiting}"
    for worker in broker.workers_state():
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
    if not _stuck_since(cutoff).exists():
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
