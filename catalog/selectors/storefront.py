"""The products and their stored neighbour lists as the storefront, the API and the admin show
them. Nothing here writes."""

from __future__ import annotations

from typing import Literal

from django.db.models import QuerySet

from catalog.models import MAX_NEIGHBOURS, ListRule, Product, ProductNeighbour

NeighboursState = Literal["ready", "computing", "failed"]


def product_list(*, category: str | None = None) -> QuerySet[Product]:
    """Listed products for the storefront, newest first, optionally of one category (a product
    not listed keeps its page, reached by its address, but leaves the catalog's pages)."""
    qs = Product.objects.filter(listed=True)
    if category:
        qs = qs.filter(category=category)
    return qs.order_by("-created_at", "-id")


def product_categories() -> list[str]:
    """Distinct category names, sorted."""
    return list(
        Product.objects.filter(listed=True).order_by("category")
        .values_list("category", flat=True).distinct()
    )


def product_get_by_slug(*, slug: str) -> Product | None:
    return Product.objects.filter(slug=slug).first()


def product_get(*, product_id: int) -> Product | None:
    return Product.objects.filter(pk=product_id).first()


def product_neighbours(*, product: Product) -> list[ProductNeighbour]:
    """The stored top-10 of ``product``, by rank, each with its ``neighbour`` loaded. A
    neighbour just taken out of lists is left out until the index writer refills the list."""
    return list(
        ProductNeighbour.objects.filter(product=product, neighbour__listed=True)
        .exclude(neighbour__rules_naming__kind=ListRule.Kind.EXCLUDE_EVERYWHERE)
        .select_related("neighbour")
        .order_by("rank")[:MAX_NEIGHBOURS]
    )


def product_neighbours_state(
    *, product: Product, neighbours: list[ProductNeighbour] | None = None
) -> NeighboursState:
    """"ready", "computing" or "failed" for the product's neighbour list.

    A ready product without any neighbour row is still "computing" while other ready products
    exist (the index task has not written its list yet); alone in the catalog it is "ready"
    with an empty list.
    """
    if product.status == Product.Status.FAILED:
        return "failed"
    if product.status != Product.Status.READY:
        return "computing"
    if neighbours is None:
        has_any = ProductNeighbour.objects.filter(product=product).exists()
    else:
        has_any = bool(neighbours)
    if has_any:
        return "ready"
    others = Product.objects.filter(status=Product.Status.READY).exclude(pk=product.pk).exists()
    return "computing" if others else "ready"
