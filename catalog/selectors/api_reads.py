"""What the REST API reads: products by SKU, filtered pages of them, a product's list with
its state, and API keys by their secret. Nothing here writes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple

from django.db import connection
from django.db.models import QuerySet

from catalog.models import ApiKey, ListRule, Product, ProductNeighbour
from catalog.plain_sql import quoted_table
from catalog.selectors.storefront import neighbours_state

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
    """Products of the API's list, each filter applied when given, with their further photos."""
    qs = Product.objects.prefetch_related("photos")
    if category:
        qs = qs.filter(category=category)
    if listed is not None:
        qs = qs.filter(listed=listed)
    if status:
        qs = qs.filter(status=status)
    if updated_since is not None:
        qs = qs.filter(updated_at__gte=updated_since)
    return qs


def _similar_sql() -> str:
    """The product (by SKU) with each row of its list that may be shown, by rank: the rule of
    ``storefront.neighbours_shown`` (the neighbour listed, not excluded everywhere) in one
    statement. A product without such rows gives one row of NULLs after its id and status."""
    product, links, rules = (quoted_table(m) for m in (Product, ProductNeighbour, ListRule))
    # Table names only (quoted): every value is a parameter.
    shown = (f"EXISTS (SELECT 1 FROM {product} s WHERE s.id = n.neighbour_id AND s.listed) "  # noqa: S608
             f"AND NOT EXISTS (SELECT 1 FROM {rules} r WHERE r.target_id = n.neighbour_id "
             "AND r.kind = %s)")
    return (
        "SELECT p.id, p.status, n.rank, n.distance, m.sku, m.name, m.category, m.slug, m.image "  # noqa: S608
        f"FROM {product} p LEFT JOIN {links} n ON n.product_id = p.id AND {shown} "
        f"LEFT JOIN {product} m ON m.id = n.neighbour_id "
        "WHERE p.sku = %s ORDER BY n.rank LIMIT %s"
    )


def product_similar_list(*, sku: str, limit: int) -> SimilarList | None:
    """The product's stored list (at most ``limit``) and its state, None for an unknown SKU:
    one plain query (the ORM's work was most of the answer's time). While the product is
    re-embedded (pending or processing) its last stored list stays valid: "refreshing"."""
    with connection.cursor() as cursor:
        cursor.execute(_similar_sql(), [ListRule.Kind.EXCLUDE_EVERYWHERE.value, sku, limit])
        rows = cursor.fetchall()
    if not rows:
        return None
    pk, status = rows[0][:2]
    cards = tuple(SimilarCard(*row[2:]) for row in rows if row[2] is not None)
    state: ListState = neighbours_state(product_id=pk, status=status, has_any=bool(cards))
    if state == "computing" and cards:
        state = "refreshing"
    return SimilarList(sku=sku, status=status, state=state, cards=cards)


def api_key_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_key_find(*, raw: str) -> ApiKey | None:
    """The key whose secret is ``raw`` (revoked or not), or None."""
    return ApiKey.objects.filter(key_sha256=api_key_hash(raw)).first()
