"""Vectors → distance matrix → neighbour rows (the index queue: one writer at a time).

Every write to the matrix and to the neighbour table happens inside ``index_writer``: a Redis
lock with a fencing token (catalog.services.locking; one writer across processes and hosts),
then the store's flock, on this process's copy of the matrix refreshed from disk first. Each
matrix file is published, and each neighbour-table transaction committed, only after the
fencing check passes: a writer whose lock expired (or was taken over) aborts without writing.
The neighbour table is then brought in line with the matrix for exactly the products whose
list changed: each such list is compared with the stored rows and rewritten (delete + insert,
in one transaction) only when it differs.
Running the same call twice leaves the same state: the second finds nothing to change.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, overload

import numpy as np
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from catalog.engine import (
    SpaceStore,
    follow_layout,
    layout_for,
    matrix_cached,
    matrix_remember,
    matrix_store,
)
from catalog.models import MAX_NEIGHBOURS, Product, ProductNeighbour
from catalog.services import queue
from catalog.services.embedding import warn_unknown
from catalog.services.locking import FencedLock, lock_name_for, writer_lock
from catalog.space import PROJECTION_FILE, Space
from catalog.vectors import colour_from_bytes, vector_from_bytes, vector_key_current
from similarity import (
    COLOUR_DIM,
    EMBEDDING_DIM,
    ConcurrentWriterError,
    MatrixError,
    MatrixFullError,
    MatrixStore,
    NeighbourIndex,
    StaleMatrixError,
    chunked,
    duplicate_groups,
    failpoint,
)

logger = logging.getLogger(__name__)

Neighbours = list[tuple[int, float]]
Fence = Callable[[], None]
_CHUNK = 500
_ATTEMPTS = 3
_COLLAPSE_CANDIDATES = 3 * MAX_NEIGHBOURS
# Embedded products an index task takes along from the backlog behind it (index_apply).
ABSORB_MAX = 256


@contextlib.contextmanager
def index_writer(target: SpaceStore) -> Iterator[FencedLock]:
    """The single-writer section for ``target``: Redis lock + fencing token, then its flock.

    Inside, the store's ``fence`` is the lock's check, so every file the store publishes is
    fenced; callers pass ``lock.check`` as ``fence`` to ``neighbours_sync`` too. A rebuild may
    have stored a new projection while this writer waited for the lock: the target follows
    the space stored now (never writing a matrix of the previous projection).
    """
    store = target.store
    timeout = settings.LOOKALIKE_INDEX_LOCK_TIMEOUT
    failpoint("index.acquire")
    with writer_lock(lock_name_for(store.directory), blocking_timeout=timeout) as lock:
        failpoint("index.locked")
        with store.lock(timeout=timeout):
            now = matrix_store()
            if (now.store.meta, now.store.dim) != (store.meta, store.dim):
                target.follow(now)
            store.fence = lock.check
            try:
                yield lock
            finally:
                store.fence = None
        failpoint("index.unlocked")


def indexable_products() -> QuerySet[Product]:
    """Products whose vector is current for their current image: these belong in the matrix."""
    return (
        Product.objects.filter(vector__isnull=False, vector_key=vector_key_current())
        .exclude(status=Product.Status.FAILED)
        .exclude(image_sha256="")
        .filter(embedded_image_sha256=F("image_sha256"))
    )


def _keepable_ids(ids: Iterable[int] | None = None) -> set[int]:
    """Products allowed to stay in the matrix: a current-model vector, not failed.

    A product whose image just changed keeps its old vector (and list) until re-embedded.
    """
    qs = Product.objects.filter(vector__isnull=False, vector_key=vector_key_current()).exclude(
        status=Product.Status.FAILED
    )
    if ids is None:
        return set(qs.values_list("pk", flat=True))
    found: set[int] = set()
    for chunk in chunked(sorted(set(ids)), _CHUNK):
        found.update(qs.filter(pk__in=chunk).values_list("pk", flat=True))
    return found


@overload
def indexable_vectors(
    ids: Collection[int] | None = None, *, space: Space | None = None,
    with_colours: Literal[False] = False,
) -> tuple[np.ndarray, np.ndarray]: ...


@overload
def indexable_vectors(
    ids: Collection[int] | None = None, *, space: None = None, with_colours: Literal[True],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


def indexable_vectors(
    ids: Collection[int] | None = None, *, space: Space | None = None, with_colours: bool = False,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids int64, vectors float32 N x EMBEDDING_DIM) of indexable products, by id, read with
    their colour descriptors; with ``space``, the vectors are mapped into it (N x space.dim, its
    stored projection and colour blend); with ``with_colours`` (raw vectors only), also the
    colour descriptors (float32 N x COLOUR_DIM; zeros where none of the current version)."""
    out_ids: list[int] = []
    out_vecs: list[np.ndarray] = []
    out_cols: list[np.ndarray] = []

    def take(qs: Iterable[tuple[int, bytes | memoryview | None, bytes | memoryview | None, str]]) -> None:
        for pk, vector, colour, colour_key in qs:
            if vector is not None:  # indexable products always have one
                out_ids.append(pk)
                out_vecs.append(vector_from_bytes(vector))
                out_cols.append(colour_from_bytes(colour, colour_key))

    base = indexable_products().order_by("pk").values_list("pk", "vector", "colour", "colour_key")
    if ids is None:
        take(base.iterator(chunk_size=1000))
    else:
        for chunk in chunked(sorted(set(ids)), _CHUNK):
            take(base.filter(pk__in=chunk))
    vecs = np.stack(out_vecs) if out_vecs else np.empty((0, EMBEDDING_DIM), np.float32)
    cols = np.stack(out_cols) if out_cols else np.empty((0, COLOUR_DIM), np.float32)
    ids_out = np.asarray(out_ids, dtype=np.int64)
    if with_colours:
        return ids_out, vecs, cols
    if space is not None:
        vecs = space.apply(vecs, cols)
    return ids_out, vecs


def _table(model: type[Product] | type[ProductNeighbour]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def existing_ids() -> set[int]:
    """Every product id. Every index task that writes needs it (a product deleted behind the
    services' back must leave the index before any changed set can be trusted), so it is one
    plain query, without the ORM's per-row work (profiled: 23 ms of a task at N = 10,000)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {_table(Product)}")  # noqa: S608 - a quoted model table name
        return {row[0] for row in cursor.fetchall()}


def _quarantine(store: MatrixStore) -> Path:
    """Move every matrix file aside (kept for inspection); the caller rebuilds."""
    aside = store.directory / f"corrupt-{timezone.now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    aside.mkdir()
    for path in store.directory.glob("*.npz"):
        if path.name == PROJECTION_FILE:
            continue  # not matrix data: the projection the matrix is rebuilt in
        path.rename(aside / path.name)
    return aside


def matrix_open(target: SpaceStore) -> NeighbourIndex:
    """This process's matrix, brought up to date with the disk (call under the lock).

    The matrix is derived data: if the files are stale (other weights, policy, metric) or
    unreadable, it is rebuilt from the vectors in the database.
    """
    store = target.store
    matrix = matrix_cached(store)
    try:
        if matrix is None:
            matrix = store.load()
        else:
            store.refresh(matrix)
    except ConcurrentWriterError:
        raise
    except StaleMatrixError as exc:
        logger.warning("matrix in %s is stale (%s): rebuilding from the database",
                       store.directory, exc)
        matrix = store.rebuild(*indexable_vectors(space=target.space))
        # Products embedded by the old model are left out until re-embedded: do it now.
        queue.rebuild_enqueue(trigger="stale-matrix")
    except MatrixError as exc:
        aside = _quarantine(store)
        logger.error("matrix in %s unreadable (%s): files moved to %s, rebuilding from the "
                     "database", store.directory, exc, aside)
        matrix = store.rebuild(*indexable_vectors(space=target.space))
    matrix_remember(store, matrix)
    return matrix


# ---------------------------------------------------------------------------- neighbour rows


def _awaiting_reembed(ids: Collection[int]) -> set[int]:
    """Of ``ids``, products whose vector is from an older model or policy (not failed).

    After the model, policy or space changes (an adoption), their lists stay as they are
    until the beat rebuild re-embeds them and writes the new lists: no list goes empty.
    """
    if not ids:
        return set()
    key = vector_key_current()
    found: set[int] = set()
    for chunk in chunked(sorted(set(ids)), _CHUNK):
        found.update(
            Product.objects.filter(pk__in=chunk, vector__isnull=False)
            .exclude(vector_key=key)
            .exclude(status=Product.Status.FAILED)
            .values_list("pk", flat=True)
        )
    return found


def _list_k(matrix: NeighbourIndex) -> int | None:
    """How many neighbours a list is made from: the matrix's k, or with duplicates collapsed,
    spare candidates, so that copies skipped still leave ten places filled."""
    if settings.LOOKALIKE_COLLAPSE_DUPLICATES:
        return min(_COLLAPSE_CANDIDATES, max(len(matrix) - 1, 0))
    return None


def _wanted_lists(
    matrix: NeighbourIndex, product_ids: Iterable[int], existing: Collection[int],
    read: Mapping[int, Neighbours] | None = None,
) -> dict[int, Neighbours]:
    """Each existing product's top-10 from the matrix, skipping neighbours gone from the DB
    (``read``: lists already read from this matrix, ``_matrix_lists``)."""
    wanted: dict[int, Neighbours] = {}
    collapsing = settings.LOOKALIKE_COLLAPSE_DUPLICATES
    product_ids = list(product_ids)
    migrating = _awaiting_reembed([pid for pid in product_ids if pid not in matrix])
    k = _list_k(matrix)
    for pid in product_ids:
        if pid not in existing:
            continue  # deleted: its rows went with it
        if pid in migrating:
            continue  # its old list stays visible until the rebuild re-embeds it
        if pid not in matrix:
            wanted[pid] = []
            continue
        nbrs = read[pid] if read is not None and pid in read else matrix.neighbours(pid, k=k)
        if any(nid not in existing for nid, _ in nbrs):
            wider = matrix.neighbours(pid, k=max(len(matrix) - 1, 0))
            limit = _COLLAPSE_CANDIDATES if collapsing else MAX_NEIGHBOURS
            nbrs = [(nid, d) for nid, d in wider if nid in existing][:limit]
        wanted[pid] = [(int(nid), float(d)) for nid, d in nbrs]
    if collapsing:
        _collapse_duplicates(wanted)
    return wanted


def _collapse_duplicates(wanted: dict[int, Neighbours]) -> None:
    """Keep only the best-ranked of every group of near-duplicates in each list (in place),
    then cut to ten: raw vectors within ``LOOKALIKE_DUPLICATE_THRESHOLD`` cosine distance, or
    the same image bytes (similarity/index/dedup.py, docs/quality.md)."""
    candidates = sorted({nid for lst in wanted.values() for nid, _ in lst})
    if not candidates:
        return
    rows: dict[int, tuple[str, bytes | memoryview | None]] = {}
    for chunk in chunked(candidates, _CHUNK):
        rows.update(
            (pk, (sha, vector)) for pk, sha, vector in Product.objects.filter(
                pk__in=chunk, vector__isnull=False
            ).values_list("pk", "image_sha256", "vector")
        )
    known = [pid for pid in candidates if pid in rows]
    position = {pid: i for i, pid in enumerate(known)}
    groups = (
        duplicate_groups(np.stack([vector_from_bytes(rows[pid][1] or b"") for pid in known]),
                         float(settings.LOOKALIKE_DUPLICATE_THRESHOLD))
        if known else np.empty(0, np.int64)
    )
    by_sha: dict[str, int] = {}
    for pid in known:  # identical image bytes join the first group seen with them
        sha = rows[pid][0]
        if sha:
            first = by_sha.setdefault(sha, int(groups[position[pid]]))
            groups[groups == groups[position[pid]]] = first
    for pid, lst in wanted.items():
        seen: set[int] = set()
        kept: Neighbours = []
        for nid, d in lst:
            group = int(groups[position[nid]]) if nid in position else -1 - nid
            if group in seen:
                continue
            seen.add(group)
            kept.append((nid, d))
            if len(kept) == MAX_NEIGHBOURS:
                break
        wanted[pid] = kept


def stored_lists(product_ids: Iterable[int]) -> dict[int, list[tuple[int, int, float]]]:
    """The stored rows as (rank, neighbour id, distance), by rank, per product (plain SQL:
    the ORM's per-row work was a tenth of an index task)."""
    stored: dict[int, list[tuple[int, int, float]]] = {}
    sql = (f"SELECT product_id, rank, neighbour_id, distance FROM {_table(ProductNeighbour)} "  # noqa: S608
           "WHERE product_id IN ({}) ORDER BY product_id, rank")
    with connection.cursor() as cursor:
        for chunk in chunked(sorted(set(product_ids)), _CHUNK):
            cursor.execute(sql.format(", ".join(["%s"] * len(chunk))), chunk)
            for pid, rank, nid, dist in cursor.fetchall():
                stored.setdefault(pid, []).append((rank, nid, dist))
    return stored


def _first_difference(stored: list[tuple[int, int, float]], wanted: Neighbours) -> int | None:
    """The first rank (1-based) where the stored rows and the wanted list differ, or None."""
    for rank, (row, want) in enumerate(zip(stored, wanted, strict=False), start=1):
        if row != (rank, *want):
            return rank
    if len(stored) == len(wanted):
        return None
    return min(len(stored), len(wanted)) + 1


def _write_lists(lists: dict[int, tuple[int, Neighbours]]) -> None:
    """Rewrite each list from its first changed rank on: ``lists[pid] = (rank, list)``.

    A product entering a list moves only the ranks below it, so most of a list's rows stay;
    plain ``executemany`` (a model instance per row cost the index worker most of its time:
    profiled 4.3 of 6.9 s for 2,600 rows a batch at N = 3,000).
    """
    table = _table(ProductNeighbour)
    quote = connection.ops.quote_name
    columns = ", ".join(quote(c) for c in ("product_id", "neighbour_id", "rank", "distance"))
    delete = f"DELETE FROM {table} WHERE product_id = %s AND {quote('rank')} >= %s"  # noqa: S608
    insert = f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s, %s)"  # noqa: S608
    ids = sorted(lists)
    rows = [(pid, nid, rank, dist) for pid in ids
            for rank, (nid, dist) in enumerate(lists[pid][1], start=1) if rank >= lists[pid][0]]
    starts = [(pid, lists[pid][0]) for pid in ids]
    with connection.cursor() as cursor:
        for part in chunked(starts, 5000):
            cursor.executemany(delete, part)
        for chunk in chunked(rows, 5000):
            cursor.executemany(insert, chunk)


def neighbours_sync(
    *, matrix: NeighbourIndex, product_ids: Iterable[int], existing: Collection[int],
    fence: Fence | None = None, ready: Collection[int] = (),
    read: Mapping[int, Neighbours] | None = None,
) -> set[int]:
    """Rewrite, in one transaction, the stored lists of ``product_ids`` that differ from the
    matrix (missing neighbours skipped); return the ids rewritten. ``ready``: products to
    mark ready in the same transaction (``products_mark_ready``), so that a product turns
    ready together with its list, for one commit and one fence. ``read``: the matrix's lists
    of these products, if the caller has them already.

    ``fence`` (the writer lock's check) is called right before the commit: if it raises, the
    transaction rolls back and nothing is written.
    """
    with transaction.atomic():
        wanted = _wanted_lists(matrix, sorted(set(product_ids)), existing, read)
        stored = stored_lists(wanted)
        differ = {}
        for pid, lst in wanted.items():
            first = _first_difference(stored.get(pid, []), lst)
            if first is not None:
                differ[pid] = (first, lst)
        _write_lists(differ)
        products_mark_ready(ready)
        if (differ or ready) and fence is not None:
            fence()
    return set(differ)


def neighbours_sync_chunked(
    *, matrix: NeighbourIndex, product_ids: Sequence[int], existing: Collection[int],
    chunk: int = _CHUNK, progress: Callable[[int, int], None] | None = None,
    fence: Fence | None = None,
) -> set[int]:
    """Like ``neighbours_sync`` but one transaction per ``chunk`` products, with progress."""
    rewritten: set[int] = set()
    ids = sorted(set(product_ids))
    for done, part in enumerate(chunked(ids, chunk), start=1):
        rewritten |= neighbours_sync(matrix=matrix, product_ids=part, existing=existing,
                                     fence=fence)
        if progress is not None:
            progress(min(done * chunk, len(ids)), len(ids))
    return rewritten


# ---------------------------------------------------------------------------- services


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
    up_ids, up_vecs = indexable_vectors(product_ids, space=space)
    unmoved = {pid for pid, vec in zip(up_ids.tolist(), up_vecs, strict=True)
               if pid in matrix and np.array_equal(matrix.vector(pid), vec)}
    keep_rows = [i for i, pid in enumerate(up_ids.tolist())
                 if pid not in settled or pid not in unmoved]
    up_ids, up_vecs = up_ids[keep_rows], up_vecs[keep_rows]
    asked_present = {pid for pid in product_ids if pid in matrix}
    keep = _keepable_ids(asked_present)
    return _Plan(up_ids, up_vecs, asked_present - keep, unmoved - set(settled))


def _holds(matrix: NeighbourIndex, ids: set[int], space: Space) -> bool:
    """Whether the matrix holds every one of ``ids`` with its current vector."""
    up_ids, up_vecs = indexable_vectors(ids, space=space)
    return up_ids.size == len(ids) and not matrix.plan_upsert(up_ids, up_vecs)[0].size


def _current_sql() -> tuple[str, str]:
    """(SQL condition: the product's vector is current for its image, given the current vector
    key as its one parameter; SQL of its ``indexed_as`` marker for that vector)."""
    quote = connection.ops.quote_name
    marker = f"{quote('vector_key')} || ':' || {quote('embedded_image_sha256')}"
    return (f"{quote('vector_key')} = %s AND "
            f"{quote('embedded_image_sha256')} = {quote('image_sha256')}", marker)


def products_indexed(ids: Iterable[int]) -> set[int]:
    """Of ``ids``, the ready products whose lists were committed for their current vector
    (``indexed_as``). Read before the vectors: a product re-embedded in between then shows
    a vector the matrix lacks, and is indexed. Plain SQL, like ``products_mark_ready``."""
    current, marker = _current_sql()
    sql = (f"SELECT id FROM {_table(Product)} WHERE {current} AND "  # noqa: S608
           f"{connection.ops.quote_name('status')} = %s AND "
           f"{connection.ops.quote_name('indexed_as')} = {marker} AND id IN ({{}})")
    found: set[int] = set()
    with connection.cursor() as cursor:
        for chunk in chunked(sorted(set(ids)), _CHUNK):
            cursor.execute(sql.format(", ".join(["%s"] * len(chunk))),
                           [vector_key_current(), Product.Status.READY, *chunk])
            found.update(row[0] for row in cursor.fetchall())
    return found


def products_awaiting_index(limit: int) -> set[int]:
    """Up to ``limit`` embedded products waiting for the index. An index task takes them
    along with its own, so a backlog behind a busy index worker goes in a few large batches
    (their own tasks then find nothing to do); a task's fixed cost is paid once."""
    return set(
        indexable_products().filter(status=Product.Status.PROCESSING)
        .order_by("pk").values_list("pk", flat=True)[:limit]
    )


def lists_touching(matrix: NeighbourIndex, ids: Collection[int],
                   unmoved: Collection[int] = ()) -> set[int]:
    """Products whose list may involve ``ids``: their stored rows hold one of them (an indexed
    query), or, for ``unmoved``, their top-k in the matrix does.

    After a crash between publishing a matrix delta and writing the neighbour rows, the
    redelivered task finds the matrix already up to date (the upsert writes nothing and
    reports no change): this is how it still finds, and repairs, every list the crashed run
    should have rewritten. The pass over the matrix's N x k lists is made only for those
    products (``_Plan.unmoved``), so that an ordinary task reads no more than its own rows.
    """
    found = matrix.holders(unmoved) if unmoved else set()
    for chunk in chunked(sorted(ids), _CHUNK):
        found.update(
            ProductNeighbour.objects.filter(neighbour_id__in=chunk)
            .values_list("product_id", flat=True)
        )
    return found


def _matrix_lists(matrix: NeighbourIndex, product_ids: Collection[int]) -> dict[int, Neighbours]:
    """The matrix's lists (as ``_wanted_lists`` reads them) of those of ``product_ids`` it holds."""
    k = _list_k(matrix)
    return {pid: matrix.neighbours(pid, k=k) for pid in product_ids if pid in matrix}


def _mark_full(ids: Iterable[int], exc: MatrixFullError) -> None:
    Product.objects.filter(pk__in=list(ids)).update(
        status=Product.Status.FAILED,
        error_message=f"matrix_full: {exc}",
        status_changed_at=timezone.now(),
    )


def _switch_layout_if_growing(store: MatrixStore, matrix: NeighbourIndex, plan: _Plan) -> None:
    """Move a dense index to the top-k layout (in place) before the plan would take it past
    ``LOOKALIKE_MAX_ITEMS`` (layout "auto"). The dense matrix's exact lists become the top-k
    base as they are, so no list changes and none disappears."""
    if matrix.layout != "dense":
        return
    incoming = sum(1 for pid in plan.upsert_ids.tolist() if pid not in matrix)
    if layout_for(len(matrix) + incoming) != "topk":
        return
    logger.warning("the catalog grows past %d products: moving the index to the top-k layout",
                   settings.LOOKALIKE_MAX_ITEMS)
    matrix.replace_state(store.convert(matrix, "topk"))
    store.layout = "topk"
    follow_layout(store)


def _apply_plan(store: MatrixStore, matrix: NeighbourIndex, plan: _Plan) -> tuple[set[int], set[int]]:
    """Publish the plan's upsert and removal; (ids whose list may have changed, ids upserted).

    Products that do not fit (``MatrixFullError``) are marked failed and taken out.
    """
    _switch_layout_if_growing(store, matrix, plan)
    changed: set[int] = set()
    upserted: set[int] = set()
    if plan.upsert_ids.size:
        try:
            changed |= store.upsert(matrix, plan.upsert_ids, plan.upsert_vectors)
            upserted = set(plan.upsert_ids.tolist())
        except MatrixFullError as exc:
            logger.error("cannot index %s: %s", plan.upsert_ids.tolist(), exc)
            _mark_full(plan.upsert_ids.tolist(), exc)
            plan.remove_ids |= {pid for pid in plan.upsert_ids.tolist() if pid in matrix}
    if plan.remove_ids:
        changed |= store.remove(matrix, sorted(plan.remove_ids))
    return changed, upserted


def _without_ghosts(store: MatrixStore, matrix: NeighbourIndex, to_sync: set[int],
                    ) -> tuple[set[int], set[int], dict[int, Neighbours]]:
    """(the products whose lists to write, the ids of theirs and their neighbours that the
    database holds, their lists in the matrix), after removing from the matrix every product
    they involve that the database no longer holds (deleted behind the services' back).
    Indexed queries of these ids only, not of the whole catalog."""
    while True:
        lists = _matrix_lists(matrix, to_sync)
        ids = to_sync | {nid for lst in lists.values() for nid, _ in lst}
        existing = existing_ids_among(ids)
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
    to_sync = changed | upserted | plan.remove_ids
    to_sync |= lists_touching(matrix, asked | upserted | plan.remove_ids, plan.unmoved)
    for attempt in range(_ATTEMPTS):
        to_sync, existing, lists = _without_ghosts(target.store, matrix, to_sync)
        failpoint("index.before_neighbours")
        try:
            return neighbours_sync(matrix=matrix, product_ids=to_sync, existing=existing,
                                   fence=lock.check, ready=upserted, read=lists)
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
    settled = products_indexed(asked)
    target = matrix_store()
    with index_writer(target) as lock:
        matrix = matrix_open(target)
        asked |= products_awaiting_index(ABSORB_MAX)
        if asked <= settled and _holds(matrix, asked, target.space):
            return set()  # a task whose products an earlier one took along
        return _index_locked(target, matrix, asked, settled, lock)


def index_apply_counted(*, product_ids: Iterable[int]) -> dict[str, int]:
    """``index_apply`` for the index task: also warns about, and counts, products this
    deployment's database does not hold (deleted since, or a stranger's task)."""
    asked = sorted({int(pid) for pid in product_ids})
    present = existing_ids_among(asked)
    unknown = [pid for pid in asked if pid not in present]
    if unknown:
        warn_unknown(unknown, task="index")
    return {"lists_rewritten": len(index_apply(product_ids=asked)), "unknown": len(unknown)}


def existing_ids_among(ids: Iterable[int]) -> set[int]:
    found: set[int] = set()
    for chunk in chunked(sorted(set(ids)), _CHUNK):
        found.update(Product.objects.filter(pk__in=chunk).values_list("pk", flat=True))
    return found


def products_mark_ready(ids: Collection[int], *, fence: Fence | None = None) -> None:
    """Mark indexed products ready and record the vector their lists were written for
    (call after the lists are written, under the writer's fence: ``fence`` is called before
    the writes, ``neighbours_sync(ready=...)`` fences its own commit).

    Plain SQL (the ORM's query building was half of this call's time); only rows that change
    are written: the rebuild and the reconcile sweep pass every id."""
    if not ids:
        return
    if fence is not None:
        fence()
    table, quote = _table(Product), connection.ops.quote_name
    current, marker = _current_sql()
    ready = (f"UPDATE {table} SET {quote('status')} = %s, {quote('status_changed_at')} = %s "  # noqa: S608
             f"WHERE {current} AND {quote('status')} IN (%s, %s) AND id IN ({{}})")
    mark = (f"UPDATE {table} SET {quote('indexed_as')} = {marker} "  # noqa: S608
            f"WHERE {current} AND {quote('indexed_as')} <> {marker} AND id IN ({{}})")
    key = vector_key_current()
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    status = Product.Status
    with connection.cursor() as cursor:
        for chunk in chunked(sorted(ids), _CHUNK):
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(ready.format(marks), [status.READY, now, key, status.PENDING,
                                                 status.PROCESSING, *chunk])
            cursor.execute(mark.format(marks), [key, *chunk])


def index_remove(*, product_ids: Iterable[int]) -> set[int]:
    """Forget deleted (or failed) products and repair every list that held them.

    The same as ``index_apply``: ids that no longer exist are removed from the matrix.
    """
    return index_apply(product_ids=product_ids)


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
        indexable = set(indexable_products().values_list("pk", flat=True))
        keep = _keepable_ids()
        missing = indexable - in_matrix
        extra = in_matrix - keep
        ids, vecs = indexable_vectors(missing, space=target.space)
        _apply_plan(store, matrix, _Plan(ids, vecs, extra, set()))
        existing = existing_ids()
        rewritten = neighbours_sync_chunked(
            matrix=matrix, product_ids=sorted(existing), existing=existing, fence=lock.check
        )
        products_mark_ready(indexable & set(matrix.ids.tolist()), fence=lock.check)
    return {"added": len(missing), "removed": len(extra), "lists_rewritten": len(rewritten)}
