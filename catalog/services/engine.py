"""The engine objects a process needs, built lazily from settings and cached per process.

Nothing here is created at import time: a Celery prefork child builds its own embedder on
its first task (TensorFlow is never imported: the converted LiteRT model is cached on disk).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings

from catalog.models import EMBEDDING_DIM, MAX_NEIGHBOURS
from similarity.embedding import ImageEmbedder
from similarity.images import ImageLimits
from similarity.matrix import DistanceMatrix
from similarity.preprocess import get_policy
from similarity.runtime import ModelIdentity
from similarity.store import MatrixMeta, MatrixStore
from similarity.weights import WEIGHTS_SHA256

if TYPE_CHECKING:
    from catalog.services.space import Space

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_embedders: dict[tuple, ImageEmbedder] = {}
_matrices: dict[tuple, DistanceMatrix] = {}


def image_limits() -> ImageLimits:
    return ImageLimits(
        max_bytes=settings.LOOKALIKE_MAX_UPLOAD_BYTES,
        max_pixels=settings.LOOKALIKE_MAX_IMAGE_PIXELS,
    )


def policy_key() -> str:
    return get_policy(settings.LOOKALIKE_PREPROCESS_POLICY).key


def vector_key_current() -> str:
    """What a current vector is keyed by: ``<model key>/<policy key>`` (no model load needed)."""
    return f"{ModelIdentity().key}/{policy_key()}"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def vector_to_bytes(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").reshape(EMBEDDING_DIM).tobytes()


def vector_from_bytes(data: bytes | memoryview) -> np.ndarray:
    return np.frombuffer(bytes(data), dtype="<f4").reshape(EMBEDDING_DIM)


def embedder_get() -> ImageEmbedder:
    """This process's embedder (created on first use, never inherited across a fork)."""
    key = (
        os.getpid(),
        str(settings.LOOKALIKE_DATA_DIR),
        settings.LOOKALIKE_PREPROCESS_POLICY,
        settings.LOOKALIKE_MAX_UPLOAD_BYTES,
        settings.LOOKALIKE_MAX_IMAGE_PIXELS,
    )
    with _lock:
        embedder = _embedders.get(key)
        if embedder is None:
            _embedders.clear()
            embedder = ImageEmbedder(
                data_dir=Path(settings.LOOKALIKE_DATA_DIR),
                policy=settings.LOOKALIKE_PREPROCESS_POLICY,
                limits=image_limits(),
            )
            _embedders[key] = embedder
            logger.info("embedder ready: %s/%s", embedder.model.key, embedder.policy.key)
        return embedder


def matrix_store(space: Space | None = None) -> MatrixStore:
    """The store of the current similarity space (``space``, or ``space_current()``).

    The space's key is recorded with the policy key (``<policy>+<space key>``), so a matrix
    built under another projection is stale; ``store.space`` is the space it was made for.
    """
    from catalog.services.space import space_current

    space = space_current() if space is None else space
    policy = policy_key() if not space.key else f"{policy_key()}+{space.key}"
    store = MatrixStore(
        Path(settings.LOOKALIKE_MATRIX_DIR),
        meta=MatrixMeta(weights_sha256=WEIGHTS_SHA256, policy=policy, metric=space.metric),
        k=MAX_NEIGHBOURS,
        max_items=settings.LOOKALIKE_MAX_ITEMS,
        dim=space.dim,
    )
    store.space = space  # type: ignore[attr-defined]
    return store


def _matrix_cache_key(store: MatrixStore) -> tuple:
    return (os.getpid(), str(store.directory.resolve()), store.meta, store.max_items, store.dim)


def matrix_cached(store: MatrixStore) -> DistanceMatrix | None:
    return _matrices.get(_matrix_cache_key(store))


def matrix_remember(store: MatrixStore, matrix: DistanceMatrix) -> None:
    with _lock:
        _matrices.clear()
        _matrices[_matrix_cache_key(store)] = matrix


def matrix_forget() -> None:
    with _lock:
        _matrices.clear()
