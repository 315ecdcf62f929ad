"""Products kept in step with a shop's own system, by SKU (the REST API's writes)."""

from __future__ import annotations

from typing import Literal

from django.core.files import File
from django.db import transaction

from catalog.models import Product
from catalog.services.products import CheckedImage, image_check, product_create, product_update
from catalog.services.skus import sku_validate

PutOutcome = Literal["created", "changed", "unchanged"]


def _fingerprint(product: Product) -> tuple[str, str, str]:
    return product.name, product.category, product.image_sha256


@transaction.atomic
def product_put(*, sku: str, name: str, category: str,
                image: File | CheckedImage) -> tuple[Product, PutOutcome]:
    """Create the product ``sku`` or replace its name, category and photo. The same name,
    category and photo bytes again change nothing and queue nothing ("unchanged"); a new photo
    makes it pending and queues it. The photo is checked as the admin checks it."""
    sku_validate(sku)
    checked = image if isinstance(image, CheckedImage) else image_check(image)
    product = Product.objects.select_for_update().filter(sku=sku).first()
    if product is None:
        return product_create(name=name, category=category, image=checked, sku=sku), "created"
    before = _fingerprint(product)
    product_update(product=product, name=name, category=category, image=checked)
    return product, "unchanged" if _fingerprint(product) == before else "changed"
