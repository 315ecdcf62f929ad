"""The similarity space: what the neighbour matrix and search by photo compare.

``LOOKALIKE_SPACE``:

- ``"raw"``: the stored 1,280-d embeddings as they are, with ``LOOKALIKE_METRIC``.
- ``"lda-blend"``: the embeddings mapped by a projection learned from the catalog's own
  category labels (``similarity.embedding.projection.fit_robust_blend`` on the catalog plus augmented
  views of it, or ``fit_blend`` without views; docs/quality.md), unit vectors compared by
  euclidean distance (which ranks like cosine on them). With ``LOOKALIKE_COLOUR_WEIGHT``
  w > 0, the garment's colour descriptor (similarity/embedding/colour.py) is put beside the projected
  shape vector, ``blend_colour(shape, colour, w)``, exactly as bench/experiments/shop_quality.py's combined
  configuration does; the space key then ends in ``+colour:<colour key>:w=<w>``, so changing
  the weight makes the matrix stale.

The projection is fitted only by the full rebuild (``projection_refit``), on the indexable
labelled products, and persisted as ``projection.npz`` in the matrix directory (written to a
temp file, fsynced, renamed; read with ``allow_pickle=False``). Between rebuilds every
vector (incremental index updates, search queries) goes through the *stored* projection,
never a refitted one. Its key, and the vector key it was fitted on, are part of the matrix
metadata (``MatrixMeta.policy`` reads ``<policy key>+lda-blend:<projection key>``), so a
matrix built under another projection is stale. When the catalog is too small to fit
(fewer than two categories, or too few labelled products) the space is plain cosine on the
raw vectors (``lda-blend:none``) until a rebuild can fit.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np
from django.conf import settings

from catalog.vectors import vector_key_current
from similarity import (
    COLOUR_DIM,
    COLOUR_KEY,
    EMBEDDING_DIM,
    BlendProjection,
    blend_colour,
    fit_blend,
    fit_robust_blend,
    fsync_dir,
    load_blend,
    save_blend,
)

logger = logging.getLogger(__name__)

SPACES = ("raw", "lda-blend")
PROJECTION_FILE = "projection.npz"
BLEND_WEIGHT = 1.0
BLEND_PCA_DIM = 1024
BLEND_SHRINKAGE = 0.05
INVARIANT_DIM = 512  # the garment-invariant visual half (bench/experiments/shop_quality.py's CV choice)
INVARIANT_SHRINKAGE = 0.5

_cache_lock = threading.Lock()
_cache: dict[tuple, tuple[BlendProjection, str] | None] = {}


@dataclass(frozen=True)
class Space:
    """``key`` is "" for the raw space, else ``lda-blend:<projection key or none>``, followed by
    ``+colour:<colour key>:w=<weight>`` when the colour descriptor is blended in."""

    name: str
    key: str
    metric: str
    dim: int
    projection: BlendProjection | None = None
    colour_weight: float = 0.0

    def apply(self, vectors: np.ndarray, colours: np.ndarray | None = None) -> np.ndarray:
        """(N, 1280) raw vectors (and their (N, COLOUR_DIM) colour descriptors; missing ones
        count as zeros) to (N, dim) float32 vectors of this space."""
        vectors = np.asarray(vectors)
        if vectors.shape[0] == 0:
            return np.empty((0, self.dim), np.float32)
        if self.projection is None and not self.colour_weight:
            return np.asarray(vectors, dtype=np.float32)
        return self._map(vectors, colours).astype(np.float32)

    def query(self, vector: np.ndarray, colour: np.ndarray | None = None) -> np.ndarray:
        """One raw vector (and its colour descriptor) to this space (float64)."""
        vector = np.asarray(vector, dtype=np.float64).reshape(-1)
        if self.projection is None and not self.colour_weight:
            return vector
        return self._map(vector[None], None if colour is None else np.asarray(colour)[None])[0]

    def _map(self, vectors: np.ndarray, colours: np.ndarray | None) -> np.ndarray:
        shape = vectors if self.projection is None else self.projection.transform(vectors)
        if not self.colour_weight:
            return np.asarray(shape, dtype=np.float64)
        if colours is None:
            colours = np.zeros((vectors.shape[0], COLOUR_DIM), np.float32)
        return blend_colour(shape, colours, self.colour_weight)


def space_name() -> str:
    name = settings.LOOKALIKE_SPACE
    if name not in SPACES:
        raise ValueError(f"LOOKALIKE_SPACE must be one of {SPACES}, got {name!r}")
    return name


def colour_weight() -> float:
    """``LOOKALIKE_COLOUR_WEIGHT``, checked (0 turns colour off)."""
    weight = float(settings.LOOKALIKE_COLOUR_WEIGHT)
    if not weight >= 0:
        raise ValueError(f"LOOKALIKE_COLOUR_WEIGHT must be 0 or more, got {weight!r}")
    return weight


def projection_path() -> Path:
    return Path(settings.LOOKALIKE_MATRIX_DIR) / PROJECTION_FILE


# ------------------------------------------------------------------------------ persistence


def projection_save(projection: BlendProjection, vector_key: str) -> Path:
    """Write the projection atomically (temp file, fsync, rename, fsync the directory)."""
    path = projection_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_blend(path, projection, vector_key)
    return path


def projection_remove() -> None:
    path = projection_path()
    if path.exists():
        path.unlink()
        fsync_dir(path.parent)


def projection_load() -> tuple[BlendProjection, str] | None:
    """(projection, vector key it was fitted on), or None without a (readable) file.

    Cached per process by the file's inode, size and mtime.
    """
    path = projection_path()
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    try:
        loaded: tuple[BlendProjection, str] | None = load_blend(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.error("projection %s unreadable (%s): using the cosine space", path, exc)
        loaded = None
    with _cache_lock:
        _cache.clear()
        _cache[key] = loaded
    return loaded


# ------------------------------------------------------------------------------ the space


def _with_colour(space: Space) -> Space:
    """The lda-blend space with the colour descriptor beside it (weight > 0), or as it is."""
    weight = colour_weight()
    if not weight:
        return space
    return Space(name=space.name, key=f"{space.key}+colour:{COLOUR_KEY}:w={weight:g}",
                 metric=space.metric, dim=space.dim + COLOUR_DIM, projection=space.projection,
                 colour_weight=weight)


def _cosine_fallback() -> Space:
    return _with_colour(Space(name="lda-blend", key="lda-blend:none", metric="cosine",
                              dim=EMBEDDING_DIM))


def _blend_space(projection: BlendProjection | None) -> Space:
    if projection is None:
        return _cosine_fallback()
    return _with_colour(Space(name="lda-blend", key=f"lda-blend:{projection.key}", metric="euclidean",
                              dim=projection.output_dim, projection=projection))


def space_current() -> Space:
    """The space writers and search use now (reads the stored projection, never fits).
    The raw space is the reference: no projection, no colour."""
    if space_name() == "raw":
        return Space(name="raw", key="", metric=settings.LOOKALIKE_METRIC, dim=EMBEDDING_DIM)
    loaded = projection_load()
    if loaded is None or loaded[1] != vector_key_current():
        return _cosine_fallback()  # not fitted yet, or fitted on vectors of another policy
    return _blend_space(loaded[0])


class FitParams(TypedDict):
    weight: float
    pca_dim: int
    shrinkage: float


@dataclass(frozen=True)
class AugmentedViews:
    """Vectors of augmented (shopper-style) views of catalog products, for fitting only:
    ``of[i]`` is the product id view ``i`` shows."""

    vectors: np.ndarray  # (M, 1280)
    of: np.ndarray  # (M,) int64 product ids


def fit_params(labels: Sequence[str], views: int = 0) -> FitParams | None:
    """fit_blend's parameters for these labels (plus ``views`` augmented vectors fitted with
    them), or None when the catalog is too small.

    ``pca_dim`` is 1024, lowered to stay below (vectors fitted on - categories) and never
    below the LDA's ``categories - 1`` dimensions.
    """
    counts = Counter(labels)
    classes = len(counts)
    if classes < 2:
        return None
    pca_dim = min(BLEND_PCA_DIM, EMBEDDING_DIM, len(labels) + views - classes - 1)
    if pca_dim < classes - 1:
        return None
    return {"weight": BLEND_WEIGHT, "pca_dim": pca_dim, "shrinkage": BLEND_SHRINKAGE}


def _fit(vectors: np.ndarray, ids: list[int], labels: list[str], views: AugmentedViews | None,
         params: FitParams) -> BlendProjection:
    """The robust blend on the products plus their views (bench/experiments/shop_quality.py's combined
    configuration), or the plain blend without views."""
    if views is None or views.of.size == 0:
        return fit_blend(vectors, labels, **params)
    row = {pid: i for i, pid in enumerate(ids)}
    of = np.asarray([row[int(pid)] for pid in views.of.tolist()], dtype=np.int64)
    invariant_dim = min(INVARIANT_DIM, len(ids) + of.size - 1)
    return fit_robust_blend(vectors, labels, views.vectors, [labels[i] for i in of.tolist()],
                            augmented_of=of, invariant_dim=invariant_dim,
                            invariant_shrinkage=INVARIANT_SHRINKAGE, **params)


def _fit_projection(ids: np.ndarray, vectors: np.ndarray, categories: Mapping[int, str],
                    views: AugmentedViews | None) -> BlendProjection | None:
    """The projection of the products among ``ids`` that have a category (and of their
    ``views``), or None when they are too few to fit."""
    rows = [i for i, pid in enumerate(ids.tolist()) if categories.get(pid)]
    labelled = [int(ids[i]) for i in rows]
    labels = [categories[pid] for pid in labelled]
    if views is not None:
        keep = np.isin(views.of, labelled)
        views = AugmentedViews(views.vectors[keep], views.of[keep])
    n_views = 0 if views is None else int(views.of.size)
    params = fit_params(labels, n_views)
    if params is None:
        logger.warning("too few labelled products (%d in %d categories) to fit the projection: "
                       "cosine space", len(labels), len(set(labels)))
        return None
    projection = _fit(vectors[rows], labelled, labels, views, params)
    logger.info("projection %s fitted on %d products in %d categories and %d views (pca_dim %s)",
                projection.key, len(labels), len(set(labels)), n_views, params["pca_dim"])
    return projection


def projection_refit(
    ids: np.ndarray, vectors: np.ndarray, categories: Mapping[int, str], vector_key: str,
    views: AugmentedViews | None = None,
) -> Space:
    """Fit the projection on the products among ``ids`` that have a category (and on
    ``views`` of them: ``fit_robust_blend``) and store it (full rebuild only, under the index
    writer lock); return the new space.

    ``categories`` maps product id to its (non-empty) category. Raw space: nothing to fit.
    """
    if space_name() == "raw":
        return space_current()
    projection = _fit_projection(ids, vectors, categories, views)
    if projection is None:
        projection_remove()
        return _cosine_fallback()
    projection_save(projection, vector_key)
    return space_current()


def space_fit(ids: np.ndarray, vectors: np.ndarray, categories: Mapping[int, str],
              views: AugmentedViews | None = None) -> Space:
    """The space ``projection_refit`` would fit on these products, kept in memory (not stored):
    the held-out evaluation refits it without the fold it scores."""
    if space_name() == "raw":
        return space_current()
    return _blend_space(_fit_projection(ids, vectors, categories, views))
