"""What the REST API reads: products by SKU, filtered pages of them, a product's list with
its state, and API keys by their secret. Nothing here writes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple

from django.db.models import QuerySet

from catalog.models import ApiKey, Product
from catalog.selectors.storefront import neighbours_shown, neighbours_state

ListState = Literal["ready", "computing", "refreshing", "failed"]


class SimilarCard(NamedTuple):
    """One entry of a list as the API shows it: the stored row and the neighbour's fields."""

    rank: int
    distance: float
    sku: str
    name: str
    category: str
    slug: str
    image: str


@dataclass(frozen=True)
class SimilarList:
    """Everything a product's list answer is made of (its repr names the answer exactly)."""

    sku: str
    status: str
    state: ListState
    cards: tuple[SimilarCard, ...]


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


def product_similar_list(*, sku: str, limit: int) -> SimilarList | None:
    """The product's stored list (at most ``limit``) and its state, None for an unknown SKU:
    two small queries, no model instances. While the product is re-embedded (pending or
    processing) its last stored list stays valid: "refreshing"."""
    head = Product.objects.filter(sku=sku).values_list("pk", "status").first()
    if head is None:
        return None
    pk, status = head
    rows = neighbours_shown(product_id=pk).values_list(
        "rank", "distance", "neighbour__sku", "neighbour__name", "neighbour__category",
        "neighbour__slug", "neighbour__image")[:limit]
    cards = tuple(SimilarCard(*row) for row in rows)
    state: ListState = neighbours_state(product_id=pk, status=status, has_any=bool(cards))
    if state == "computing" and cards:
        state = "refreshing"
    return SimilarList(sku=sku, status=status, state=state, cards=cards)


def api_key_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_key_find(*, raw: str) -> ApiKey | None:
    """The key whose secret is ``raw`` (revoked or not), or None."""
    return ApiKey.objects.filter(key_sha256=api_key_hash(raw)).first()
