"""The catalog's retrieval quality, scored against the products' own categories (``manage.py
evaluate_similarity``). Nothing here writes; the metric math is similarity.evaluation.metrics's.

- In-sample (``similarity_quality``): the stored neighbour lists. In the lda-blend space the
  projection behind them was fitted on the very labels they are scored against.
- Held-out (``similarity_quality_heldout``): the space is refitted k times, each time without
  the fold it scores (similarity/evaluation/kfold.py): the same fit the rebuild does
  (``catalog.space.space_fit``: the robust projection on the products plus augmented views of
  them, the colour blend of the settings), minus the fold's products and their views. Every
  READY product with a current vector is in the catalog each fold queries. The views are
  embedded in memory only.
"""

from __future__ import annotations

import numpy as np

from catalog.augmented_views import augmented_views
from catalog.models import MAX_NEIGHBOURS, Product, ProductNeighbour
from catalog.selectors.index_membership import products_indexable_vectors
from catalog.space import AugmentedViews, space_fit, space_name
from similarity import QualityReport, Transform, evaluate, kfold_report

_CHUNK = 2000
DEFAULT_FOLDS = 4


def similarity_quality(*, k: int = MAX_NEIGHBOURS) -> QualityReport:
    """Precision@k and mAP@k of the READY products' stored neighbour lists (category = label).

    - Queries: READY products with a non-blank category (unlabelled ones are not scored).
    - Their ranked list: their ProductNeighbour rows by rank, as the storefront shows them; a
      neighbour is relevant when it is READY and its category equals the product's (a row
      pointing at a product that is not READY, or unlabelled, is a wrong place). A missing
      row counts as a wrong place too (a product still waiting for its list scores 0).
    - The catalog any list could draw from: every READY product. It gives each product's
      number of relevant items (other READY products of its category) and the number of
      places that could be filled (READY products - 1, so a catalog smaller than k + 1 is
      not penalised for short lists).
    - A product alone in its category is not scored (nothing correct could be listed).

    Definitions in similarity.evaluation.metrics.
    """
    ready = dict(
        Product.objects.filter(status=Product.Status.READY)
        .order_by("pk")
        .values_list("pk", "category")
        .iterator(chunk_size=_CHUNK)
    )
    queries = {pk: cat for pk, cat in ready.items() if cat.strip()}
    lists: dict[int, list[int]] = {pk: [] for pk in queries}
    links = (
        ProductNeighbour.objects.filter(product__status=Product.Status.READY, rank__lte=k)
        .order_by("product_id", "rank")
        .values_list("product_id", "neighbour_id")
        .iterator(chunk_size=_CHUNK)
    )
    for product_id, neighbour_id in links:
        if product_id in lists:
            lists[product_id].append(neighbour_id)
    order = sorted(queries)
    return evaluate(
        [queries[pk] for pk in order],
        [[ready.get(nid) or None for nid in lists[pk]] for pk in order],
        catalog_labels=list(ready.values()),
        k=k,
        queries_in_catalog=True,
    )


def similarity_quality_heldout(*, folds: int = DEFAULT_FOLDS, k: int = MAX_NEIGHBOURS,
                               seed: int = 0) -> QualityReport:
    """Precision@k and mAP@k of the READY labelled products, each ranked against the whole
    catalog in a space fitted without its fold (see the module)."""
    ids, vectors, colours = products_indexable_vectors(with_colours=True)
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
        z = space.comparable(vectors, colours)
        return lambda rows: z[rows]

    return kfold_report(labels, fit, k=k, folds=folds, seed=seed)
