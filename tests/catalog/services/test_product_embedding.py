"""A further photo's vector and its product's lists (catalog.services.product_embedding)."""

from __future__ import annotations

import pytest

from catalog.models import Product
from catalog.services.indexing import index_apply
from catalog.services.product_embedding import products_embed_batch
from catalog.services.product_photos import product_photo_add, product_photo_remove
from tests.pipeline.helpers import upload
from tests.rules_reference import mismatches

pytestmark = pytest.mark.django_db


def _indexed_as(product: Product) -> str:
    return Product.objects.values_list("indexed_as", flat=True).get(pk=product.pk)


def test_a_further_photos_new_vector_leaves_its_products_lists_to_be_written(make_products,
                                                                             garments):
    """Once a further photo is embedded, failed or removed, the product's lists no longer
    count as written for its vector (``indexed_as``): an index task redelivered after its
    writer published the new vector and died before the lists redoes them."""
    products = make_products(6)
    index_apply(product_ids=products_embed_batch(product_ids=[p.pk for p in products]).to_index)
    owner = products[0]
    written = _indexed_as(owner)
    assert written

    photo = product_photo_add(product=owner, image=upload(garments[10][1], "more.png"))
    assert _indexed_as(owner) == written  # not embedded yet: the lists still hold
    assert products_embed_batch(product_ids=[owner.pk]).embedded == [owner.pk]
    assert _indexed_as(owner) == ""
    index_apply(product_ids=[owner.pk])
    assert _indexed_as(owner) == written
    assert mismatches() == []

    product_photo_remove(photo=photo)
    assert _indexed_as(owner) == ""
    index_apply(product_ids=[owner.pk])
    assert _indexed_as(owner) == written
    assert mismatches() == []
