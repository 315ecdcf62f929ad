"""catalog.selectors.product_photos: how many photos products have."""

import pytest

from catalog.models import Product, ProductPhoto
from catalog.selectors.product_photos import products_photo_counts
from tests.catalog.readside import make_product

pytestmark = pytest.mark.django_db


def test_photo_counts_hold_the_main_photo_and_the_further_ones():
    one, three, gone = make_product("one"), make_product("three"), make_product("gone")
    for n in range(2):
        ProductPhoto.objects.create(product=three, image=f"products/{n}.png")
    Product.objects.filter(pk=gone.pk).delete()
    assert products_photo_counts(product_ids=[one.pk, three.pk, gone.pk]) == {one.pk: 1, three.pk: 3}
    assert three.photos_counted() == 3
