"""The held-out retrieval figure of the live catalog (``evaluate_similarity``).

The in-sample figure (catalog.selectors_quality) scores the stored lists; in the lda-blend
space the projection behind them was fitted on the very labels it is scored against. Here the
space is refitted k times, each time without the fold it scores (similarity/evaluation/kfold.py): the
same fit the rebuild does (``catalog.space.space_fit``: the robust projection on the products
plus augmented views of them, the colour blend of the settings), minus the fold's products and
their views. Every READY product with a current vector is in the catalog each fold queries.
Nothing is written (the views are embedded in memory only).
"""

from __future__ import annotations

import numpy as np

from catalog.models import MAX_NEIGHBOURS, Product
from catalog.services.indexing import indexable_vectors
from catalog.services.views import augmented_views
from catalog.space import AugmentedViews, Space, space_fit, space_name
from similarity import QualityReport, Transform, kfold_report, l2_normalise

DEFAULT_FOLDS = 4


def _in_space(space: Space, vectors: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Vectors of the space, ranked by euclidean distance as its matrix ranks them."""
    z = space.apply(vectors, colours).astype(np.float64)
    return l2_normalise(z) if space.metric == "cosine" else z


def similarity_quality_heldout(*, folds: int = DEFAULT_FOLDS, k: int = MAX_NEIGHBOURS,
                               seed: int = 0) -> QualityReport:
    """Precision@k and mAP@k of the READY labelled products, each ranked against the whole
    catalog in a space fitted without its fold (see the module)."""
    ids, vectors, colours = indexable_vectors(with_colours=True)
    categories = dict(Product.objects.filter(status=Product.Status.READY).values_list("pk", "category"))
    keep = np.asarray([pid in categories for pid in ids.tolist()], dtype=bool)
    ids, vectors, colours = ids[keep], vectors[keep], colours[keep]
    labels = [categories.get(pid, "").strip() for pid in ids.tolist()]
    views = augmented_views(ids, categories) if space_name() == "lda-blend" else None

    def fit(train: np.ndarray) -> Transform:
        train_ids = set(ids[train].tolist())
        fold_views = None
        if views is not None:
            seen = np.isin(views.of, list(train_ids))
            fold_views = AugmentedViews(views.vectors[seen], views.of[seen])
        space = space_fit(ids, vectors, {pid: categories[pid] for pid in train_ids}, fold_views)
        z = _in_space(space, vectors, colours)
        return lambda rows: z[rows]

    return kfold_report(labels, fit, k=k, folds=folds, seed=seed)
