"""The similarity space: what the neighbour matrix and search by photo compare.

``LOOKALIKE_SPACE``:

- ``"raw"``: the stored 1,280-d embeddings as they are, with ``LOOKALIKE_METRIC``.
- ``"lda-blend"``: the embeddings mapped by a projection learned from the catalog's own
  category labels (``similarity.embedding.projection.fit_robust_blend`` on the catalog plus augmented
  views of it, or ``fit_blend`` without views; docs/quality.md), unit vectors compared by
  euclidean distance (which ranks like cosine on them). With a colour weight
  w > 0, the garment's colour descriptor (similarity/embedding/colour.py) is put beside the projected
  shape vector, ``blend_colour(shape, colour, w)``, exactly as bench/experiments/shop_quality.py's combined
  configuration does; the space key then ends in ``+colour:<colour key>:w=<w>``, so changing
  the weight makes the matrix stale.

The colour weight: ``LOOKALIKE_COLOUR_WEIGHT`` when it is a number; when it is ``"auto"`` (the
default) the full rebuild chooses it by cross-validation inside the catalog
(``colour_weight_choose``, similarity/evaluation/colour_cv.py) and stores it in
``projection.npz`` with the projection, so lists and search use the same one. A catalog too
small to fit a projection uses ``FALLBACK_COLOUR_WEIGHT``.

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
from collections.abc import Callable, Mapping, Sequence
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
    ColourChoice,
    blend_colour,
    choose_colour_weight,
    fit_blend,
    fit_robust_blend,
    fsync_dir,
    l2_normalise,
    read_blend,
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

AUTO = "auto"
FALLBACK_COLOUR_WEIGHT = 1.0  # the shop-photo benchmark's catalog-CV choice
CV_MAX_PRODUCTS = 2000  # labelled products the colour weight's CV samples (it refits per fold)

# (projection, vector key, colour weight chosen with it or None)
Loaded = tuple[BlendProjection, str, float | None]
_cache_lock = threading.Lock()
_cache: dict[tuple, Loaded | None] = {}


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

    def comparable(self, vectors: np.ndarray, colours: np.ndarray | None = None) -> np.ndarray:
        """(N, dim) float64 vectors of this space that euclidean distance ranks as the index
        and search rank them (unit vectors under the cosine metric)."""
        z = self.apply(vectors, colours).astype(np.float64)
        return l2_normalise(z) if self.metric == "cosine" else z

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


def colour_weight_setting() -> float | None:
    """``LOOKALIKE_COLOUR_WEIGHT`` checked: a fixed weight (0 turns colour off), or None for
    ``"auto"`` (chosen by the rebuild)."""
    value = settings.LOOKALIKE_COLOUR_WEIGHT
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return None
    try:
        weight = float(value)
    except (TypeError, ValueError):
        weight = float("nan")
    if not weight >= 0:
        raise ValueError(f'LOOKALIKE_COLOUR_WEIGHT must be "auto" or a number 0 or more, got {value!r}')
    return weight


def projection_path() -> Path:
    return Path(settings.LOOKALIKE_MATRIX_DIR) / PROJECTION_FILE


# ------------------------------------------------------------------------------ persistence


def projection_save(projection: BlendProjection, vector_key: str, colour_weight: float | None = None) -> Path:
    """Write the projection (and the colour weight chosen with it) atomically (temp file,
    fsync, rename, fsync the directory)."""
    path = projection_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = None if colour_weight is None else {"colour_weight": colour_weight}
    save_blend(path, projection, vector_key, extra)
    return path


def projection_remove() -> None:
    path = projection_path()
    if path.exists():
        path.unlink()
        fsync_dir(path.parent)


def projection_load() -> tuple[BlendProjection, str] | None:
    """(projection, vector key it was fitted on), or None without a (readable) file."""
    loaded = _projection_read()
    return None if loaded is None else (loaded[0], loaded[1])


def _projection_read() -> Loaded | None:
    """(projection, vector key, stored colour weight or None), or None without a (readable)
    file. Cached per process by the file's inode, size and mtime."""
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
        projection, vector_key, extra = read_blend(path)
        loaded: Loaded | None = (projection, vector_key, extra.get("colour_weight"))
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


def _with_colour(space: Space, weight: float) -> Space:
    """The lda-blend space with the colour descriptor beside it (weight > 0), or as it is."""
    if not weight:
        return space
    return Space(name=space.name, key=f"{space.key}+colour:{COLOUR_KEY}:w={weight:g}",
                 metric=space.metric, dim=space.dim + COLOUR_DIM, projection=space.projection,
                 colour_weight=weight)


def _weight(stored: float | None) -> float:
    """The colour weight in use: the setting's, else the one stored with the projection."""
    fixed = colour_weight_setting()
    if fixed is not None:
        return fixed
    return FALLBACK_COLOUR_WEIGHT if stored is None else stored


def _cosine_fallback() -> Space:
    return _with_colour(Space(name="lda-blend", key="lda-blend:none", metric="cosine",
                              dim=EMBEDDING_DIM), _weight(None))


def _blend_space(projection: BlendProjection | None, weight: float | None) -> Space:
    if projection is None:
        return _cosine_fallback()
    return _with_colour(Space(name="lda-blend", key=f"lda-blend:{projection.key}", metric="euclidean",
                              dim=projection.output_dim, projection=projection), _weight(weight))


def space_current() -> Space:
    """The space writers and search use now (reads the stored projection, never fits).
    The raw space is the reference: no projection, no colour."""
    if space_name() == "raw":
        return Space(name="raw", key="", metric=settings.LOOKALIKE_METRIC, dim=EMBEDDING_DIM)
    loaded = _projection_read()
    if loaded is None or loaded[1] != vector_key_current():
        return _cosine_fallback()  # not fitted yet, or fitted on vectors of another policy
    return _blend_space(loaded[0], loaded[2])


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
        views = AugmentedViews(*_views_of(views, labelled))
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


def _cv_sample(ids: np.ndarray, categories: Mapping[int, str]) -> np.ndarray:
    """Rows of the labelled products the colour weight's CV scores: all, or a seeded sample of
    ``CV_MAX_PRODUCTS``."""
    rows = np.asarray([i for i, pid in enumerate(ids.tolist()) if categories.get(pid)], dtype=np.int64)
    if rows.size <= CV_MAX_PRODUCTS:
        return rows
    return np.sort(np.random.default_rng(0).choice(rows, size=CV_MAX_PRODUCTS, replace=False))


def colour_weight_choose(ids: np.ndarray, vectors: np.ndarray, colours: np.ndarray,
                         categories: Mapping[int, str], views: AugmentedViews | None = None
                         ) -> ColourChoice | None:
    """The colour weight by stratified 4-fold CV inside the catalog (similarity/evaluation/
    colour_cv.py): each fold's products ranked in the shape space refitted without the fold
    (and its views), the stored vectors and views reused. None when fewer than two categories."""
    rows = _cv_sample(ids, categories)
    sub_ids, sub_vectors = ids[rows], vectors[rows]
    labels = [categories[pid] for pid in sub_ids.tolist()]
    if len(set(labels)) < 2:
        return None

    def fit_shape(train: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        seen = {int(sub_ids[r]): labels[r] for r in train.tolist()}
        fold_views = None if views is None else AugmentedViews(*_views_of(views, list(seen)))
        projection = _fit_projection(sub_ids, sub_vectors, seen, fold_views)
        z = l2_normalise(sub_vectors) if projection is None else projection.transform(sub_vectors)
        return lambda r: z[r]

    choice = choose_colour_weight(labels, colours[rows], fit_shape)
    logger.info("%s", choice.summary())
    return choice


def _views_of(views: AugmentedViews, products: list[int]) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isin(views.of, products)
    return views.vectors[keep], views.of[keep]


@dataclass(frozen=True)
class Refit:
    """The space the rebuild fitted, and the colour weight's choice when it made one."""

    space: Space
    colour: ColourChoice | None = None


def projection_refit(
    ids: np.ndarray, vectors: np.ndarray, categories: Mapping[int, str], vector_key: str,
    views: AugmentedViews | None = None, colours: np.ndarray | None = None,
) -> Refit:
    """Fit the projection on the products among ``ids`` that have a category (and on
    ``views`` of them: ``fit_robust_blend``), choose the colour weight (``"auto"``, given the
    products' ``colours``) and store both (full rebuild only, under the index writer lock);
    return the new space.

    ``categories`` maps product id to its (non-empty) category. Raw space: nothing to fit.
    """
    if space_name() == "raw":
        return Refit(space_current())
    projection = _fit_projection(ids, vectors, categories, views)
    if projection is None:
        projection_remove()
        return Refit(_cosine_fallback())
    choice = None
    if colour_weight_setting() is None and colours is not None:
        choice = colour_weight_choose(ids, vectors, colours, categories, views)
    projection_save(projection, vector_key, None if choice is None else choice.weight)
    return Refit(space_current(), choice)


def space_fit(ids: np.ndarray, vectors: np.ndarray, categories: Mapping[int, str],
              views: AugmentedViews | None = None) -> Space:
    """The space ``projection_refit`` would fit on these products, kept in memory (not stored),
    with the colour weight in use now: the held-out evaluation refits it without the fold it
    scores."""
    if space_name() == "raw":
        return space_current()
    loaded = _projection_read()
    stored = None if loaded is None else loaded[2]
    return _blend_space(_fit_projection(ids, vectors, categories, views), stored)
