"""SKUs: the shop's own product ids. Derived from a file name when none is given, and kept
unique by a numbered suffix, as slugs are."""

from __future__ import annotations

import re
from collections.abc import Sequence

from django.core.exceptions import ValidationError

from catalog.models import SKU_MAX, SKU_RE, Product

_INVALID_RUN = re.compile(r"[^A-Za-z0-9._-]+")


# Path segments under /api/v1/products/ that name endpoints, not products.
RESERVED_SKUS = frozenset({"batch"})


def sku_validate(sku: str) -> str:
    """``sku`` if it is a valid SKU; else a ``ValidationError`` (code ``bad_sku``) naming it."""
    if not SKU_RE.match(sku):
        raise ValidationError(
            f"SKU {sku[:80]!r} is invalid: use letters, digits, '.', '_' and '-', start with a "
            f"letter or digit, at most {SKU_MAX} characters",
            code="bad_sku",
        )
    if sku in RESERVED_SKUS:
        raise ValidationError(f"SKU {sku!r} is reserved: /api/v1/products/{sku} is an endpoint",
                              code="bad_sku")
    return sku


def sku_from_stem(stem: str) -> str:
    """A valid SKU made from a file name's stem ("Blue shirt (2)" → "Blue-shirt-2")."""
    cleaned = _INVALID_RUN.sub("-", stem).lstrip("._-")[: SKU_MAX - 6].rstrip("._-") or "product"
    return f"{cleaned}-1" if cleaned in RESERVED_SKUS else cleaned


def skus_unique(bases: Sequence[str]) -> list[str]:
    """A free SKU per base, in one query for the batch: a taken base gets "-2", "-3", …"""
    taken = set(Product.objects.filter(sku__in=set(bases)).values_list("sku", flat=True))
    skus: list[str] = []
    for base in bases:
        sku, n = base, 1
        # Numbered candidates were not in the first query: ask for each (rare).
        while sku in taken or (n > 1 and Product.objects.filter(sku=sku).exists()):
            n += 1
            sku = f"{base}-{n}"
        taken.add(sku)
        skus.append(sku)
    return skus


def sku_free(sku: str, *, exclude_pk: int | None = None) -> None:
    """Raise ``ValidationError`` (code ``sku_taken``) if another product has ``sku``."""
    others = Product.objects.filter(sku=sku)
    if exclude_pk is not None:
        others = others.exclude(pk=exclude_pk)
    if others.exists():
        raise ValidationError(f"the SKU {sku!r} is already used", code="sku_taken")
