"""The single writer of the index: the Redis lock with its fencing token, then the store's flock,
and the matrix this process holds, brought up to date with the disk under them.

Every write to the matrix and to the neighbour table happens inside ``index_writer``: a Redis
lock with a fencing token (catalog.services.locking; one writer across processes and hosts),
then the store's flock, on this process's copy of the matrix refreshed from disk first. Each
matrix file is published, and each neighbour-table transaction committed, only after the
fencing check passes: a writer whose lock expired (or was taken over) aborts without writing.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from django.conf import settings
from django.utils import timezone

from catalog.engine import IndexStore, SpaceStore, matrix_cached, matrix_remember, matrix_store
from catalog.selectors.index_membership import product_categories, products_indexable_vectors
from catalog.services import queue
from catalog.services.locking import FencedLock, lock_name_for, writer_lock
from catalog.space import PROJECTION_FILE
from similarity import (
    NO_CATEGORY,
    ConcurrentWriterError,
    MatrixError,
    MatrixStore,
    NeighbourIndex,
    PartitionedStore,
    StaleMatrixError,
    failpoint,
    partitions_present,
    partitions_remove,
)

logger = logging.getLogger(__name__)


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


def categories_of(ids: np.ndarray) -> list[str]:
    """The category of each product of ``ids`` ("" for none or unknown), in order."""
    found = product_categories(product_ids=ids.tolist())
    return [found.get(pid, NO_CATEGORY) for pid in ids.tolist()]


def index_upsert(store: IndexStore, matrix: NeighbourIndex, ids: np.ndarray,
                 vectors: np.ndarray) -> set[int]:
    """``store.upsert``; a partitioned store also takes each product's category."""
    if isinstance(store, PartitionedStore):
        return store.upsert(matrix, ids, vectors, categories_of(ids))
    return store.upsert(matrix, ids, vectors)


def index_rebuild(store: IndexStore, ids: np.ndarray, vectors: np.ndarray) -> NeighbourIndex:
    """``store.rebuild`` (by category for a partitioned store), then the files of the other
    kind of index removed: lists inside categories and across the catalog never mix."""
    if isinstance(store, PartitionedStore):
        return store.rebuild(ids, vectors, categories_of(ids))
    matrix = store.rebuild(ids, vectors)
    partitions_remove(store.directory, store.fence)
    return matrix


def _load(store: IndexStore, matrix: NeighbourIndex | None) -> NeighbourIndex:
    """The stored index, loaded or brought up to date; a catalog-wide store is stale while the
    directory holds lists by category (a partitioned store checks the reverse itself)."""
    if isinstance(store, MatrixStore) and partitions_present(store.directory):
        raise StaleMatrixError("the index holds lists inside each category, not across the catalog")
    if matrix is None:
        return store.load()
    store.refresh(matrix)
    return matrix


def _quarantine(store: IndexStore) -> Path:
    """Move every matrix file aside (kept for inspection); the caller rebuilds."""
    aside = store.directory / f"corrupt-{timezone.now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    aside.mkdir()
    if isinstance(store, PartitionedStore) and store.root.is_dir():
        store.root.rename(aside / store.root.name)
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
        matrix = _load(store, matrix)
    except ConcurrentWriterError:
        raise
    except StaleMatrixError as exc:
        logger.warning("matrix in %s is stale (%s): rebuilding from the database",
                       store.directory, exc)
        matrix = index_rebuild(store, *products_indexable_vectors(space=target.space,
                                                                  candidates=True))
        # Products embedded by the old model are left out until re-embedded: do it now.
        queue.rebuild_enqueue(trigger="stale-matrix")
    except MatrixError as exc:
        aside = _quarantine(store)
        logger.error("matrix in %s unreadable (%s): files moved to %s, rebuilding from the "
                     "database", store.directory, exc, aside)
        matrix = index_rebuild(store, *products_indexable_vectors(space=target.space,
                                                                  candidates=True))
    matrix_remember(store, matrix)
    return matrix
