"""Reads for measuring retrieval quality: the catalog's stored neighbour lists, scored against
the products' own categories. Nothing here writes; the metric math is similarity.evaluation.metrics's.
"""

from __future__ import annotations

from catalog.models import MAX_NEIGHBOURS, Product, ProductNeighbour
from similarity import QualityReport, evaluate

_CHUNK = 2000


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
