"""Search by photo with the shopper's category: given, every category (``all``), or predicted
from the photo. Nothing here writes.

Without a category, the query's nearest products vote (the vote the last full rebuild chose
for this catalog: catalog/search_vote.py). When the vote is confident the results are the
nearest products of the predicted category, and the answer says it was predicted, so the
shopper can change it; otherwise (or with ``LOOKALIKE_SEARCH_PREDICT_CATEGORY`` off, or
before a rebuild chose a vote) every category is searched. Products not allowed in lists
never appear (catalog/selectors/photo_search.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from catalog.engine import embedder_get
from catalog.models import Product
from catalog.search_vote import category_vote_current
from catalog.selectors.photo_search import products_search_by_vector

ALL_CATEGORIES = "all"


@dataclass(frozen=True)
class PhotoSearch:
    """The results, the category they are limited to (None: every category) and, when that
    category was predicted rather than given, the prediction."""

    results: list[tuple[Product, float]]
    category: str | None
    predicted_category: str | None = None
    vector: np.ndarray | None = None  # the query as embedded, to search it again
    colour: np.ndarray | None = None


def products_search_by_photo(*, image_bytes: bytes, k: int, category: str | None = None) -> PhotoSearch:
    """Search by photo with the shopper's category (see the module): ``category`` a category,
    ``"all"``, or None to predict it. Raises ``ImageRejected`` for an unusable image."""
    vector, colour = embedder_get().embed_with_colour(image_bytes)
    found = products_search_with_category(vector=vector, colour=colour, k=k, category=category)
    return replace(found, vector=vector, colour=colour)


def products_search_with_category(*, vector: np.ndarray, colour: np.ndarray | None, k: int,
                                  category: str | None = None) -> PhotoSearch:
    """As :func:`products_search_by_photo`, from the query's vector and colour descriptor."""
    if category == ALL_CATEGORIES:
        return PhotoSearch(products_search_by_vector(vector=vector, colour=colour, k=k), None)
    if category:
        return PhotoSearch(products_search_by_vector(vector=vector, colour=colour, k=k, category=category),
                           category)
    vote = category_vote_current()
    if vote is None:
        return PhotoSearch(products_search_by_vector(vector=vector, colour=colour, k=k), None)
    nearest = products_search_by_vector(vector=vector, colour=colour, k=max(k, vote.size))
    predicted = vote.predict([product.category for product, _ in nearest])
    if not predicted.confident:
        return PhotoSearch(nearest[:k], None)
    chosen = str(predicted.category)
    return PhotoSearch(products_search_by_vector(vector=vector, colour=colour, k=k, category=chosen),
                       chosen, chosen)
