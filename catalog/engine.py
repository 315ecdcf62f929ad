"""The engine objects a process needs, built lazily from settings and cached per process.

Nothing here is created at import time: a Celery prefork child builds its own embedder on
its first task (TensorFlow is never imported: the converted LiteRT model is cached on disk).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from catalog.models import MAX_NEIGHBOURS
from catalog.space import Space, space_current
from catalog.vectors import embed_precision, image_limits, policy_key
from similarity import (
    LAYOUTS,
    WEIGHTS_SHA256,
    ImageEmbedder,
    MatrixError,
    MatrixMeta,
    MatrixStore,
    NeighbourIndex,
    PartitionedStore,
    default_threads,
    limit_math_threads,
)

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_worker_pool = {"size": 0}  # this worker's pool children (workers.control); 0 outside a worker
_embedders: dict[tuple[object, ...], ImageEmbedder] = {}
_matrices: dict[tuple[object, ...], NeighbourIndex] = {}


IndexStore = MatrixStore | PartitionedStore


@dataclass
class SpaceStore:
    """A matrix store and the similarity space whose vectors it holds.

    The index writer may move it to the space stored now (``follow``) when a rebuild fitted
    a new projection while the writer waited for its lock.
    """

    store: IndexStore
    space: Space

    def follow(self, other: SpaceStore) -> None:
        self.store.meta, self.store.dim, self.space = other.store.meta, other.store.dim, other.space


def worker_threads_limit() -> None:
    """Cap this worker process's BLAS and OpenMP threads (``LOOKALIKE_WORKER_MATH_THREADS``);
    called in every worker child at start (workers.control)."""
    pools = limit_math_threads(settings.LOOKALIKE_WORKER_MATH_THREADS)
    logger.info("math threads: %s", ", ".join(f"{p['internal_api']} {p['num_threads']}"
                                              for p in pools))


def worker_pool_size_set(size: int) -> None:
    """Record the worker's pool size, in its main process before the children fork."""
    _worker_pool["size"] = size


def embed_threads() -> int | None:
    """LiteRT threads for this process's embedder: ``LOOKALIKE_EMBED_THREADS`` if set; else in a
    worker's pool child, the cores shared out among the pool's children (on 2 cores, two
    embed processes of one thread imported 1.15x faster than one of two: bench/pipeline_bench.py);
    else None, LiteRT's default (all cores, at most 4)."""
    if settings.LOOKALIKE_EMBED_THREADS:
        return int(settings.LOOKALIKE_EMBED_THREADS)
    if _worker_pool["size"] > 1:
        return max(1, default_threads() // _worker_pool["size"])
    return None


def embedder_get() -> ImageEmbedder:
    """This process's embedder (created on first use, never inherited across a fork)."""
    threads = embed_threads()
    key = (
        os.getpid(),
        str(settings.LOOKALIKE_MODEL_DIR),
        settings.LOOKALIKE_PREPROCESS_POLICY,
        settings.LOOKALIKE_MAX_UPLOAD_BYTES,
        settings.LOOKALIKE_MAX_IMAGE_PIXELS,
        settings.LOOKALIKE_EMBED_PRECISION,
        threads,
    )
    with _lock:
        embedder = _embedders.get(key)
        if embedder is None:
            _embedders.clear()
            embedder = ImageEmbedder(
                model_dir=Path(settings.LOOKALIKE_MODEL_DIR),
                policy=settings.LOOKALIKE_PREPROCESS_POLICY,
                limits=image_limits(),
                precision=embed_precision(),
                num_threads=threads,
            )
            _embedders[key] = embedder
            logger.info("embedder ready: %s/%s, LiteRT threads %d", embedder.model.key,
                        embedder.policy.key, embedder.num_threads)
        return embedder


def matrix_store(space: Space | None = None) -> SpaceStore:
    """The store of the current similarity space (``space``, or ``space_current()``).

    The space's key is recorded with the policy key (``<policy>+<space key>``), so a matrix
    built under another projection is stale.
    """
    space = space_current() if space is None else space
    policy = policy_key() if not space.key else f"{policy_key()}+{space.key}"
    meta = MatrixMeta(weights_sha256=WEIGHTS_SHA256, policy=policy, metric=space.metric)
    if lists_within_category():
        return SpaceStore(store=_partitioned_store(meta, space.dim), space=space)
    store = MatrixStore(
        Path(settings.LOOKALIKE_MATRIX_DIR),
        meta=meta,
        k=MAX_NEIGHBOURS,
        max_items=settings.LOOKALIKE_MAX_ITEMS,
        dim=space.dim,
        layout="topk" if settings.LOOKALIKE_INDEX_LAYOUT == "topk" else "dense",
        engine=settings.LOOKALIKE_KNN_ENGINE,
    )
    if stored_layout(store) == "topk":
        store.layout = "topk"  # what is on disk: a catalog that already moved past the bound
    follow_layout(store)
    return SpaceStore(store=store, space=space)


def lists_within_category() -> bool:
    """Whether lists stay inside their product's category (``LOOKALIKE_LISTS_WITHIN_CATEGORY``)."""
    return bool(settings.LOOKALIKE_LISTS_WITHIN_CATEGORY)


def _partitioned_store(meta: MatrixMeta, dim: int) -> PartitionedStore:
    """One index per category (similarity.index.partitions), each in the layout its own size
    calls for under ``LOOKALIKE_INDEX_LAYOUT``."""
    layout = settings.LOOKALIKE_INDEX_LAYOUT
    if layout not in ("auto", *LAYOUTS):
        raise ValueError(f"LOOKALIKE_INDEX_LAYOUT must be auto, dense or topk, got {layout!r}")
    return PartitionedStore(
        Path(settings.LOOKALIKE_MATRIX_DIR), meta=meta, k=MAX_NEIGHBOURS,
        max_items=settings.LOOKALIKE_MAX_ITEMS, dim=dim, layout=layout,
        engine=settings.LOOKALIKE_KNN_ENGINE,
        max_deltas=lambda part: TOPK_MAX_DELTAS if part == "topk" else DENSE_MAX_DELTAS,
    )


def stored_layout(store: MatrixStore) -> str | None:
    """The layout on disk, or None (nothing stored, or unreadable: the writer rebuilds it)."""
    try:
        return store.stored_layout()
    except MatrixError:
        return None


def follow_layout(store: MatrixStore) -> None:
    """Compact a top-k store rarely: compaction rewrites its vectors file (5 GB at a million
    products), while a delta replays in milliseconds. A dense store compacts at the default
    (its base is at most 4·N² bytes, and every write lists the directory's deltas)."""
    store.max_deltas = TOPK_MAX_DELTAS if store.layout == "topk" else DENSE_MAX_DELTAS


TOPK_MAX_DELTAS = 5_000
DENSE_MAX_DELTAS = 500


def layout_for(n: int) -> str:
    """The layout a catalog of ``n`` indexed products should have (``LOOKALIKE_INDEX_LAYOUT``;
    "auto": dense up to ``LOOKALIKE_MAX_ITEMS``, top-k beyond)."""
    layout = settings.LOOKALIKE_INDEX_LAYOUT
    if layout not in ("auto", *LAYOUTS):
        raise ValueError(f"LOOKALIKE_INDEX_LAYOUT must be auto, dense or topk, got {layout!r}")
    if layout != "auto":
        return layout
    return "topk" if n > settings.LOOKALIKE_MAX_ITEMS else "dense"


def _matrix_cache_key(store: IndexStore) -> tuple[object, ...]:
    return (os.getpid(), str(store.directory.resolve()), type(store).__name__, store.meta,
            store.max_items, store.dim)


def matrix_cached(store: IndexStore) -> NeighbourIndex | None:
    return _matrices.get(_matrix_cache_key(store))


def matrix_remember(store: IndexStore, matrix: NeighbourIndex) -> None:
    with _lock:
        _matrices.clear()
        _matrices[_matrix_cache_key(store)] = matrix


def matrix_forget() -> None:
    with _lock:
        _matrices.clear()
