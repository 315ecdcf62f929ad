"""Products kept in step with a shop's own system, by SKU (the REST API's writes)."""

from __future__ import annotations

from typing import Literal

from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import transaction

from catalog.models import Product
from catalog.services.products import CheckedImage, image_check, product_create, product_update
from catalog.services.skus import sku_validate

PutOutcome = Literal["created", "changed", "unchanged"]
# The reason given when a concurrent create of the same SKU wrote something else.
SKU_CONFLICT = "sku_conflict"
_NAME_MAX = Product._meta.get_field("name").max_length or 200


def _fingerprint(product: Product) -> tuple[str, str, str]:
    return product.name, product.category, product.image_sha256


def _created_meanwhile(*, sku: str, name: str, category: str,
                       checked: CheckedImage) -> tuple[Product, PutOutcome]:
    """Another transaction created ``sku`` after this one looked for it: the same name,
    category and photo is this PUT's answer too ("unchanged"); anything else is a conflict."""
    product = Product.objects.select_for_update().filter(sku=sku).first()
    if product is not None and _fingerprint(product) == (name[:_NAME_MAX], category,
                                                         checked.sha256):
        return product, "unchanged"
    raise ValidationError(
        f"another request created SKU {sku!r} at the same time with another name, category or "
        "photo; nothing of this one was written: send it again to replace that product",
        code=SKU_CONFLICT)


@transaction.atomic
def product_create_new(*, sku: str, name: str, category: str,
                       checked: CheckedImage) -> tuple[Product, PutOutcome]:
    """Create ``sku``, which no product had when the caller looked. If another transaction
    created it since: "unchanged" when that one wrote the same name, category and photo,
    else ``ValidationError`` code ``sku_conflict`` (nothing written)."""
    try:
        return product_create(name=name, category=category, image=checked, sku=sku), "created"
    except ValidationError as exc:
        if exc.code != "sku_taken":
            raise
    return _created_meanwhile(sku=sku, name=name, category=category, checked=checked)


@transaction.atomic
def product_put(*, sku: str, name: str, category: str,
                image: File | CheckedImage) -> tuple[Product, PutOutcome]:
    """Create the product ``sku`` or replace its name, category and photo. The same name,
    category and photo bytes again change nothing and queue nothing ("unchanged"); a new photo
    makes it pending and queues it. The photo is checked as the admin checks it.

    If another transaction creates ``sku`` while this one creates it too, this one is
    "unchanged" when it would have written the same, else ``ValidationError`` code
    ``sku_conflict`` (nothing written)."""
    sku_validate(sku)
    checked = image if isinstance(image, CheckedImage) else image_check(image)
    product = Product.objects.select_for_update().filter(sku=sku).first()
    if product is None:
        return product_create_new(sku=sku, name=name, category=category, checked=checked)
    before = _fingerprint(product)
    product_update(product=product, name=name, category=category, image=checked)
    return product, "unchanged" if _fingerprint(product) == before else "changed"
