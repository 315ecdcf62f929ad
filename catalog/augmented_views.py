"""Augmented views of the catalog's own photos, for fitting the robust projection at the rebuild.

Each view is a product's image shot again the shopper's way (similarity/evaluation/shots.py:
``reshoot`` under a seeded ``shopper_shot``: the garment smaller or larger, off-centre, tilted,
on an off-white or grey background, JPEG), then preprocessed and embedded like an upload. The
views' vectors are used only while fitting (``catalog.space.projection_refit``, and the held-out
evaluation's ``space_fit``), never stored.

``VIEWS_PER_PRODUCT`` views of every labelled product, at most ``LOOKALIKE_PROJECTION_VIEWS``
in all (beyond that, a seeded sample of the products). Seeds depend only on the product id and
the view number, so a rebuild of an unchanged catalog fits the same projection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from itertools import repeat

import numpy as np
from django.conf import settings
from PIL import Image

from catalog.engine import embedder_get
from catalog.models import Product
from catalog.space import AugmentedViews
from catalog.vectors import image_limits
from similarity import ImageEmbedder, ImageRejected, chunked, load_image, reshoot, shopper_shot

logger = logging.getLogger(__name__)

VIEWS_PER_PRODUCT = 2  # as bench/experiments/shop_quality.py fits its robust projection
_BATCH = 64
_THREADS = 2

Progress = Callable[[int, int], None]


def views_sample(ids: np.ndarray, categories: Mapping[int, str], limit: int) -> list[int]:
    """The labelled products among ``ids`` that get views: all of them, or a seeded sample of
    ``limit // VIEWS_PER_PRODUCT`` when there are more."""
    labelled = [pid for pid in ids.tolist() if categories.get(pid)]
    room = max(0, limit) // VIEWS_PER_PRODUCT
    if len(labelled) <= room:
        return labelled
    pick = np.random.default_rng(0).choice(len(labelled), size=room, replace=False)
    return [labelled[i] for i in sorted(pick.tolist())]


def _view_arrays(embedder: ImageEmbedder, pid: int, name: str) -> list[np.ndarray]:
    """The policy's input arrays of the product's views ([] if its image cannot be read)."""
    field = Product._meta.get_field("image")
    try:
        if not name:
            raise FileNotFoundError(f"product {pid} has no image")
        with field.storage.open(name, "rb") as handle:
            img: Image.Image = load_image(handle.read(), limits=image_limits())
    except (FileNotFoundError, ImageRejected) as exc:
        logger.info("product %s: no views (%s)", pid, exc)
        return []
    out = []
    for view in range(VIEWS_PER_PRODUCT):
        shot = shopper_shot(np.random.default_rng([pid, view]))
        out.append(embedder.policy.to_array(reshoot(img, shot)))
    return out


def augmented_views(ids: np.ndarray, categories: Mapping[int, str],
                    progress: Progress | None = None) -> AugmentedViews | None:
    """Embed the views of the sampled products (see the module); None when there are none."""
    chosen = views_sample(ids, categories, settings.LOOKALIKE_PROJECTION_VIEWS)
    if not chosen:
        return None
    embedder = embedder_get()
    vectors: list[np.ndarray] = []
    of: list[int] = []
    done = 0
    with ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="views") as pool:
        for chunk in chunked(chosen, _BATCH // VIEWS_PER_PRODUCT):
            names = dict(Product.objects.filter(pk__in=chunk).values_list("pk", "image"))
            arrays = list(pool.map(_view_arrays, repeat(embedder), chunk,
                                   [names.get(pid, "") for pid in chunk]))
            flat = [a for views in arrays for a in views]
            if flat:
                vectors.append(embedder.embed_arrays(np.stack(flat)))
            of.extend(pid for pid, views in zip(chunk, arrays, strict=True) for _ in views)
            done += len(chunk)
            if progress is not None:
                progress(done, len(chosen))
    if not of:
        return None
    return AugmentedViews(np.concatenate(vectors), np.asarray(of, dtype=np.int64))
