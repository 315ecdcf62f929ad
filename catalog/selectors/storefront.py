"""The products and their stored neighbour lists as the storefront, the API and the admin show
them. Nothing here writes."""

from __future__ import annotations

from typing import Literal

from django.db.models import QuerySet
from django.db.models.fields.files import FieldFile

from catalog.models import MAX_NEIGHBOURS, ListRule, Product, ProductNeighbour, ProductPhoto

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


def product_photos(*, product: Product, failed: bool = False) -> list[FieldFile]:
    """The product's photos: its main photo, then its further photos by id; further photos
    whose embedding failed only with ``failed``. Reads ``product.photos`` (prefetched or not)."""
    further: list[FieldFile] = [photo.image for photo in product.photos.all()
                                if failed or photo.status != ProductPhoto.Status.FAILED]
    return [product.image, *further] if product.image else further


def neighbours_shown(*, product_id: int) -> QuerySet[ProductNeighbour]:
    """The stored rows of the product's list that may be shown, by rank. A neighbour just taken
    out of lists is left out until the index writer refills the list."""
    return (
        ProductNeighbour.objects.filter(product_id=product_id, neighbour__listed=True)
        .exclude(neighbour__rules_naming__kind=ListRule.Kind.EXCLUDE_EVERYWHERE)
        .order_by("rank")
    )


def product_neighbours(*, product: Product) -> list[ProductNeighbour]:
    """The stored top-10 of ``product`` that may be shown, by rank, each with its ``neighbour``
    loaded."""
    return list(neighbours_shown(product_id=product.pk).select_related("neighbour")[:MAX_NEIGHBOURS])


def neighbours_state(*, product_id: int, status: str, has_any: bool) -> NeighboursState:
    """"ready", "computing" or "failed" for the list of a product in ``status`` whose list
    shows rows (``has_any``) or not.

    A ready product without any neighbour row is still "computing" while other ready products
    exist (the index task has not written its list yet); alone in the catalog it is "ready"
    with an empty list.
    """
    if status == Product.Status.FAILED:
        return "failed"
    if status != Product.Status.READY:
        return "computing"
    if has_any:
        return "ready"
    others = Product.objects.filter(status=Product.Status.READY).exclude(pk=product_id).exists()
    return "computing" if others else "ready"


def product_neighbours_state(
    *, product: Product, neighbours: list[ProductNeighbour] | None = None
) -> NeighboursState:
    """``neighbours_state`` of ``product``, given its shown ``neighbours`` or reading its rows."""
    if neighbours is not None:
        has_any = bool(neighbours)
    else:
        has_any = (product.status == Product.Status.READY
                   and ProductNeighbour.objects.filter(product=product).exists())
    return neighbours_state(product_id=product.pk, status=product.status, has_any=has_any)
