"""What the REST API reads: products by SKU, filtered pages of them, a product's list with
its state, and API keys by their secret. Nothing here writes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from django.db.models import QuerySet

from catalog.models import ApiKey, Product, ProductNeighbour
from catalog.selectors.storefront import product_neighbours, product_neighbours_state

ListState = Literal["ready", "computing", "refreshing", "failed"]


@dataclass(frozen=True)
class SimilarList:
    state: ListState
    neighbours: list[ProductNeighbour]


def product_get_by_sku(*, sku: str) -> Product | None:
    return Product.objects.filter(sku=sku).first()


def products_filter(*, category: str | None = None, status: str | None = None,
                    listed: bool | None = None,
                    updated_since: datetime | None = None) -> QuerySet[Product]:
    """Products of the API's list, each filter applied when given."""
    qs = Product.objects.all()
    if category:
        qs = qs.filter(category=category)
    if listed is not None:
        qs = qs.filter(listed=listed)
    if status:
        qs = qs.filter(status=status)
    if updated_since is not None:
        qs = qs.filter(updated_at__gte=updated_since)
    return qs


def product_similar_list(*, product: Product, limit: int) -> SimilarList:
    """The product's stored list (at most ``limit``) and its state. While the product is
    re-embedded (pending or processing) its last stored list stays valid: "refreshing"."""
    neighbours = product_neighbours(product=product)
    state: ListState = product_neighbours_state(product=product, neighbours=neighbours)
    if state == "computing" and neighbours:
        state = "refreshing"
    return SimilarList(state=state, neighbours=neighbours[:limit])


def api_key_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_key_find(*, raw: str) -> ApiKey | None:
    """The key whose secret is ``raw`` (revoked or not), or None."""
    return ApiKey.objects.filter(key_sha256=api_key_hash(raw)).first()
