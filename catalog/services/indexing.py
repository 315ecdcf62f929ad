"""Index updates (the index queue): a product's place in the matrix and every list it affects.

``index_apply`` upserts the products whose vector is current and removes those that no longer
exist or failed, under the single writer (catalog.services.index_writer), then has the neighbour
table brought in line for exactly the products whose list changed
(catalog.services.neighbour_sync). ``index_repair`` is the reconcile sweep's full drift repair.
Running the same call twice leaves the same state: the second finds nothing to change.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from catalog.engine import IndexStore, SpaceStore, follow_layout, layout_for, matrix_store
from catalog.models import Product
from catalog.selectors.index_membership import (
    product_categories,
    product_ids_all,
    product_ids_existing,
    product_ids_keepable,
    products_awaiting_index,
    products_candidates,
    products_indexable,
    products_indexable_vectors,
    products_indexed,
)
from catalog.selectors.neighbour_rows import neighbour_lists_touching
from catalog.services.index_writer import categories_of, index_upsert, index_writer, matrix_open
from catalog.services.locking import FencedLock
from catalog.services.neighbour_sync import (
    Neighbours,
    collapsed_affected,
    matrix_lists,
    neighbours_sync,
    neighbours_sync_chunked,
    products_mark_ready,
)
from catalog.services.product_embedding import warn_unknown
from catalog.services.ruled_lists import ruled_affected
from catalog.space import Space
from similarity import (
    MatrixFullError,
    MatrixStore,
    NeighbourIndex,
    PartitionedIndex,
    failpoint,
)

logger = logging.getLogger(__name__)

_ATTEMPTS = 3
# Embedded products an index task takes along from the backlog behind it (index_apply).
ABSORB_MAX = 256


@dataclass
class _Plan:
    upsert_ids: np.ndarray
    upsert_vectors: np.ndarray
    remove_ids: set[int]
    #: Upserted ids the matrix already holds with that vector: a crashed run published them.
    unmoved: set[int]


def _plan(matrix: NeighbourIndex, product_ids: set[int], space: Space | None = None,
          settled: Collection[int] = ()) -> _Plan:
    """What to upsert and remove (of ``product_ids``: reads only their rows); products in
    ``settled`` (lists committed for their current vector, ``products_indexed``) whose vector
    the matrix holds are left out."""
    up_ids, up_vecs = products_indexable_vectors(product_ids=product_ids, space=space,
                                                  candidates=True)
    unmoved = _held(matrix, up_ids, up_vecs)
    keep_rows = [i for i, pid in enumerate(up_ids.tolist())
                 if pid not in settled or pid not in unmoved]
    up_ids, up_vecs = up_ids[keep_rows], up_vecs[keep_rows]
    asked_present = {pid for pid in product_ids if pid in matrix}
    keep = product_ids_keepable(product_ids=asked_present)
    return _Plan(up_ids, up_vecs, asked_present - keep, unmoved - set(settled))


def _held(matrix: NeighbourIndex, ids: np.ndarray, vectors: np.ndarray) -> set[int]:
    """Of ``ids``, those the matrix holds with exactly these vectors (and, lists inside
    categories, in their category's partition: a product whose category changed moves)."""
    if isinstance(matrix, PartitionedIndex):
        cats = categories_of(ids)
        return {pid for pid, vec, cat in zip(ids.tolist(), vectors, cats, strict=True)
                if matrix.holds(pid, vec, cat)}
    return {pid for pid, vec in zip(ids.tolist(), vectors, strict=True)
            if pid in matrix and np.array_equal(matrix.vector(pid), vec)}


def _holds(matrix: NeighbourIndex, ids: set[int], space: Space) -> bool:
    """Whether the matrix holds every one of ``ids`` with its current vector (and category)."""
    up_ids, up_vecs = products_indexable_vectors(product_ids=ids, space=space, candidates=True)
    return up_ids.size == len(ids) and len(_held(matrix, up_ids, up_vecs)) == len(ids)


def _mark_full(ids: Iterable[int], exc: MatrixFullError) -> None:
    Product.objects.filter(pk__in=list(ids)).update(
        status=Product.Status.FAILED,
        error_message=f"matrix_full: {exc}",
        status_changed_at=timezone.now(),
    )


def _switch_layout_if_growing(store: IndexStore, matrix: NeighbourIndex, plan: _Plan) -> None:
    """Move a dense index to the top-k layout (in place) before the plan would take it past
    ``LOOKALIKE_MAX_ITEMS`` (layout "auto"). The dense matrix's exact lists become the top-k
    base as they are, so no list changes and none disappears. (A partitioned store moves each
    category's partition by itself.)"""
    if not isinstance(store, MatrixStore) or matrix.layout != "dense":
        return
    incoming = sum(1 for pid in plan.upsert_ids.tolist() if pid not in matrix)
    if layout_for(len(matrix) + incoming) != "topk":
        return
    logger.warning("the catalog grows past %d products: moving the index to the top-k layout",
                   settings.LOOKALIKE_MAX_ITEMS)
    matrix.replace_state(store.convert(matrix, "topk"))
    store.layout = "topk"
    follow_layout(store)


def _apply_plan(store: IndexStore, matrix: NeighbourIndex, plan: _Plan) -> tuple[set[int], set[int]]:
    """Publish the plan's upsert and removal; (ids whose list may have changed, ids upserted).

    Products that do not fit (``MatrixFullError``) are marked failed and taken out.
    """
    _switch_layout_if_growing(store, matrix, plan)
    changed: set[int] = set()
    upserted: set[int] = set()
    if plan.upsert_ids.size:
        try:
            changed |= index_upsert(store, matrix, plan.upsert_ids, plan.upsert_vectors)
            upserted = set(plan.upsert_ids.tolist())
        except MatrixFullError as exc:
            logger.error("cannot index %s: %s", plan.upsert_ids.tolist(), exc)
            _mark_full(plan.upsert_ids.tolist(), exc)
            plan.remove_ids |= {pid for pid in plan.upsert_ids.tolist() if pid in matrix}
    if plan.remove_ids:
        changed |= store.remove(matrix, sorted(plan.remove_ids))
    return changed, upserted


def _without_ghosts(store: IndexStore, matrix: NeighbourIndex, to_sync: set[int],
                    ) -> tuple[set[int], set[int], dict[int, Neighbours]]:
    """(the products whose lists to write, the ids of theirs and their neighbours that the
    database holds, their lists in the matrix), after removing from the matrix every product
    they involve that the database no longer holds (deleted behind the services' back).
    Indexed queries of these ids only, not of the whole catalog."""
    while True:
        lists = matrix_lists(matrix=matrix, product_ids=to_sync)
        ids = to_sync | {nid for lst in lists.values() for nid, _ in lst}
        existing = product_ids_existing(product_ids=ids)
        ghosts = sorted(pid for pid in ids if pid in matrix and pid not in existing)
        if not ghosts:
            return to_sync, existing, lists
        logger.warning("removing %d product(s) deleted behind the index's back: %s",
                       len(ghosts), ghosts[:10])
        to_sync = to_sync | store.remove(matrix, ghosts)  # ends: the matrix shrinks each time


def _index_locked(target: SpaceStore, matrix: NeighbourIndex, asked: set[int],
                  settled: set[int], lock: FencedLock) -> set[int]:
    """``index_apply``'s work under the writer lock: apply the plan, then write the lists
    (retried if a neighbour is deleted meanwhile)."""
    plan = _plan(matrix, asked, target.space, settled)
    changed, upserted = _apply_plan(target.store, matrix, plan)
    # ``asked``: a product kept out of lists has no row of the matrix but a list of its own.
    to_sync = asked | changed | upserted | plan.remove_ids
    to_sync |= neighbour_lists_touching(matrix=matrix, product_ids=asked | upserted | plan.remove_ids,
                                        unmoved=plan.unmoved)
    to_sync |= ruled_affected(matrix=matrix, space=target.space, new_ids=plan.upsert_ids,
                              new_vectors=plan.upsert_vectors, removed=bool(plan.remove_ids))
    to_sync |= collapsed_affected(matrix=matrix, new_ids=plan.upsert_ids,
                                  new_vectors=plan.upsert_vectors, removed=bool(plan.remove_ids))
    ready = upserted | {pid for pid in asked if pid not in matrix}
    for attempt in range(_ATTEMPTS):
        to_sync, existing, lists = _without_ghosts(target.store, matrix, to_sync)
        failpoint("index.before_neighbours")
        try:
            return neighbours_sync(matrix=matrix, product_ids=to_sync, existing=existing,
                                   fence=lock.check, ready=ready, read=lists, space=target.space)
        except IntegrityError:
            # A neighbour was deleted between reading the ids and writing: look again.
            if attempt == _ATTEMPTS - 1:
                raise
            logger.info("a neighbour vanished while writing lists; retrying")
    return set()  # pragma: no cover - the loop returns or raises


def index_apply(*, product_ids: Iterable[int]) -> set[int]:
    """Bring the given products' place in the matrix and every affected list up to date.

    Under the store's lock: upsert the products whose vector is current, remove those that
    no longer exist or failed, rewrite the neighbour rows of exactly the products whose list
    changed, and mark the indexed products ready. A product deleted behind the services'
    back (no task for it) leaves the matrix when a list this task writes holds it, or at the
    reconcile sweep (``index_repair``). Embedded products waiting behind this task are taken
    along (up to ``ABSORB_MAX``); products already indexed for their vector are skipped.
    Every read is of the products involved, never of the whole catalog. Returns the ids
    whose stored list was rewritten.
    """
    asked = {int(pid) for pid in product_ids}
    settled = products_indexed(product_ids=asked)
    target = matrix_store()
    with index_writer(target) as lock:
        matrix = matrix_open(target)
        asked |= products_awaiting_index(limit=ABSORB_MAX)
        if asked <= settled and _holds(matrix, asked, target.space):
            return set()  # a task whose products an earlier one took along
        return _index_locked(target, matrix, asked, settled, lock)


def index_apply_counted(*, product_ids: Iterable[int]) -> dict[str, int]:
    """``index_apply`` for the index task: also warns about, and counts, products this
    deployment's database does not hold (deleted since, or a stranger's task)."""
    asked = sorted({int(pid) for pid in product_ids})
    present = product_ids_existing(product_ids=asked)
    unknown = [pid for pid in asked if pid not in present]
    if unknown:
        warn_unknown(unknown, task="index")
    return {"lists_rewritten": len(index_apply(product_ids=asked)), "unknown": len(unknown)}


def index_remove(*, product_ids: Iterable[int]) -> set[int]:
    """Forget deleted (or failed) products and repair every list that held them.

    The same as ``index_apply``: ids that no longer exist are removed from the matrix.
    """
    return index_apply(product_ids=product_ids)


def _misplaced(matrix: NeighbourIndex) -> set[int]:
    """Products held in another category's partition than their own (lists inside categories)."""
    if not isinstance(matrix, PartitionedIndex):
        return set()
    held = {pid: cat for cat, part in matrix.parts.items() for pid in part.ids.tolist()}
    return {pid for pid, cat in product_categories(product_ids=held).items() if held[pid] != cat}


def index_repair() -> dict[str, int]:
    """Full drift repair (the reconcile sweep): matrix membership and every stored list.

    Indexable products missing from the matrix are added, products in the matrix that may
    not be there are removed, and every stored list that differs from the matrix is
    rewritten. Cheap compared with a rebuild: no distance is recomputed from scratch.
    """
    target = matrix_store()
    store = target.store
    with index_writer(target) as lock:
        store.cleanup_temp()  # temp files of writers that crashed
        matrix = matrix_open(target)
        in_matrix = set(matrix.ids.tolist())
        indexable = set(products_indexable().values_list("pk", flat=True))
        keep = product_ids_keepable()
        missing = set(products_candidates().values_list("pk", flat=True)) - in_matrix
        missing |= _misplaced(matrix)
        extra = in_matrix - keep
        ids, vecs = products_indexable_vectors(product_ids=missing, space=target.space,
                                               candidates=True)
        _apply_plan(store, matrix, _Plan(ids, vecs, extra, set()))
        existing = product_ids_all()
        rewritten = neighbours_sync_chunked(
            matrix=matrix, product_ids=sorted(existing), existing=existing, fence=lock.check,
            space=target.space,
        )
        products_mark_ready(product_ids=indexable, fence=lock.check)
    return {"added": len(missing), "removed": len(extra), "lists_rewritten": len(rewritten)}
