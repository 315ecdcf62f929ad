"""The periodic full rebuild (on the index queue): re-embed what is stale, rebuild the index,
rewrite every list that differs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from django.db.models import F, Q
from django.utils import timezone

from catalog.augmented_views import augmented_views
from catalog.engine import matrix_remember, matrix_store
from catalog.models import Product, RebuildRun
from catalog.search_vote import category_vote_refit
from catalog.selectors.further_photos import further_photos_stale, with_further_photos
from catalog.selectors.index_membership import (
    product_ids_all,
    products_candidates,
    products_indexable,
    products_indexable_vectors,
)
from catalog.services import queue
from catalog.services.index_writer import index_writer
from catalog.services.locking import Fence
from catalog.services.neighbour_sync import neighbours_sync_chunked, products_mark_ready
from catalog.services.product_embedding import products_embed_batch
from catalog.services.rebuild_index import Report, rebuild_index
from catalog.space import AugmentedViews, Space, projection_refit, space_name
from catalog.vectors import vector_key_current
from similarity import NeighbourIndex

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
    """Products (not failed) without a vector made by the current model and policy (with the
    current colour descriptor: catalog.vectors.vector_key_current) for their current image, or
    with a further photo (not failed) without one."""
    key = vector_key_current()
    qs = Product.objects.exclude(status=Product.Status.FAILED).filter(
        Q(vector__isnull=True) | ~Q(vector_key=key) | ~Q(embedded_image_sha256=F("image_sha256"))
        | Q(pk__in=further_photos_stale().values("product_id"))
    )
    return list(qs.order_by("pk").values_list("pk", flat=True))


@dataclass
class _Rebuilt:
    stale: int = 0
    failed: int = 0
    indexed: int = 0
    rewritten: int = 0
    colour: str = ""
    vote: str = ""

    def message(self) -> str:
        return (
            f"re-embedded {self.stale - self.failed} stale product(s) ({self.failed} failed); "
            f"matrix of {self.indexed} product(s); {self.rewritten} list(s) rewritten"
            + (f"; {self.colour}" if self.colour else "")
            + (f"; {self.vote}" if self.vote else "")
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


def _views(report: Report) -> AugmentedViews | None:
    """Augmented views of the indexable catalog for the robust projection (lda-blend space
    only), embedded before the writer lock is taken: they are only fitted on."""
    if space_name() != "lda-blend":
        return None
    ids = np.asarray(products_indexable().order_by("pk").values_list("pk", flat=True), dtype=np.int64)
    report(step="views", done=0, total=0)
    return augmented_views(ids, _categories(),
                           progress=lambda done, total: report(step="views", done=done, total=total))


def _rebuild_matrix(run: RebuildRun, report: Report, fence: Fence,
                    views: AugmentedViews | None, result: _Rebuilt) -> tuple[NeighbourIndex, Space]:
    """Refit the projection (lda-blend space: here and only here, on the catalog plus
    augmented views of it) and, with ``LOOKALIKE_COLOUR_WEIGHT="auto"``, choose the colour
    weight by catalog CV, choose search's category vote by catalog CV (both recorded in the
    run's message), then build the index in the new space (its meta records the projection key
    and the colour blend) and publish it under the fence (catalog.services.rebuild_index)."""
    ids, vectors, colours = products_indexable_vectors(with_colours=True)
    report(step="matrix", done=0, total=int(ids.size))
    categories = _categories()
    refit = projection_refit(ids, vectors, categories, vector_key_current(), views, colours)
    space = refit.space
    if refit.colour is not None:
        result.colour = refit.colour.summary()
    vote = category_vote_refit(ids, vectors, colours, categories, views, space)
    if vote is not None:
        result.vote = vote.summary()
    # Fitted on every product; the matrix holds those allowed in lists (the others are ruled).
    keep = np.isin(ids, np.fromiter(products_candidates().values_list("pk", flat=True), np.int64))
    ids = ids[keep]
    mapped = with_further_photos(ids, space.apply(vectors[keep], colours[keep]), space)
    store = matrix_store(space).store
    store.fence = fence
    matrix = rebuild_index(run, store, ids, mapped, report, fence)
    matrix_remember(store, matrix)
    report(step="matrix", done=int(ids.size), total=int(ids.size))
    return matrix, space


def _rewrite_lists(report: Report, matrix: NeighbourIndex, space: Space, fence: Fence) -> int:
    existing = product_ids_all()
    report(step="neighbours", done=0, total=len(existing))
    rewritten = neighbours_sync_chunked(
        matrix=matrix, product_ids=sorted(existing), existing=existing,
        progress=lambda done, total: report(done=done, total=total), fence=fence, space=space,
    )
    products_mark_ready(product_ids=set(products_indexable().values_list("pk", flat=True)),
                        fence=fence)
    return len(rewritten)


def _finish(run: RebuildRun, state: str, message: str, fields: list[str]) -> None:
    run.state, run.message, run.finished_at = state, message, timezone.now()
    run.save(update_fields=[*fields, "state", "message", "finished_at"])


def similarity_rebuild(
    *, trigger: str = "beat", progress: Callable[[str, int, int], None] | None = None
) -> RebuildRun:
    """Re-embed what is stale, rebuild the matrix from the database, sync every list.

    Steps recorded in a ``RebuildRun`` (step, done/total): ``embed`` (stale products,
    including any stuck in pending), ``views`` (lda-blend space: augmented views of the
    catalog embedded for the robust projection, catalog/augmented_views.py), ``matrix``
    (full build, published as a new generation), ``neighbours`` (every product's list
    compared with the matrix and rewritten where it differs), then state ``done``. A failure
    records state ``failed`` with the error, and re-raises. ``progress(step, done, total)``,
    if given, is called after every recorded progress update (the management command draws
    its progress bar with it).
    """
    run = RebuildRun.objects.create(trigger=trigger[:32], step="embed")

    def report(*, step: str | None = None, done: int | None = None, total: int | None = None) -> None:
        _progress(run, step=step, done=done, total=total)
        if progress is not None:
            progress(run.step, run.done, run.total)

    result = _Rebuilt()
    try:
        _reembed_stale(report, result)
        views = _views(report)
        with index_writer(matrix_store()) as lock:
            matrix, space = _rebuild_matrix(run, report, lock.check, views, result)
            result.indexed = len(matrix)
            result.rewritten = _rewrite_lists(report, matrix, space, lock.check)
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
