"""catalog.selectors.further_photos: which further photos count, and each product's vector of
all its photos in the similarity space."""

from __future__ import annotations

import numpy as np
import pytest
from django.utils import timezone

from catalog.models import Product, ProductPhoto
from catalog.selectors import further_photos
from catalog.selectors.further_photos import (
    further_photos_counted,
    further_photos_stale,
    products_photo_counts,
    with_further_photos,
)
from catalog.space import space_current
from catalog.vectors import vector_key_current
from similarity import PhotoGroups, product_vectors
from tests.catalog.readside import make_product

pytestmark = pytest.mark.django_db

RNG = np.random.default_rng(7)


def _blob() -> bytes:
    return RNG.normal(size=1280).astype("<f4").tobytes()


def _product(n: int) -> Product:
    tag = f"{n:064d}"
    return Product.objects.create(
        name=f"p{n}", slug=f"p-{n}", sku=f"s{n}", category="Coat", image=f"x/{tag}.png",
        image_sha256=tag, embedded_image_sha256=tag, status=Product.Status.READY,
        status_changed_at=timezone.now(), vector_key=vector_key_current(), vector=_blob())


def _photo(product: Product, *, status: str = ProductPhoto.Status.READY, key: str | None = None,
           vector: bool = True, same_image: bool = True) -> ProductPhoto:
    tag = f"{int(RNG.integers(1 << 60)):064d}"
    return ProductPhoto.objects.create(
        product=product, image=f"x/{tag}.png", image_sha256=tag,
        embedded_image_sha256=tag if same_image else "0" * 64, status=status,
        vector_key=vector_key_current() if key is None else key,
        vector=_blob() if vector else None)


def test_which_further_photos_count_and_which_are_stale():
    p = _product(1)
    counted = _photo(p)
    changed = _photo(p, status=ProductPhoto.Status.PENDING, same_image=False)
    other_model = _photo(p, key="old-model/old-policy")
    failed = _photo(p, status=ProductPhoto.Status.FAILED, vector=False, key="")
    pending = _photo(p, status=ProductPhoto.Status.PENDING, vector=False, key="")
    # A photo whose image changed counts with its previous vector until it is re-embedded.
    assert set(further_photos_counted()) == {counted, changed}
    assert set(further_photos_stale()) == {changed, other_model, pending}
    assert failed not in set(further_photos_stale())


def test_each_product_gets_the_vector_of_all_its_counted_photos():
    alone, two, three = _product(1), _product(2), _product(3)
    photos_two = [_photo(two)]
    photos_three = [_photo(three), _photo(three)]
    _photo(three, status=ProductPhoto.Status.FAILED, vector=False, key="")
    _photo(two, key="old-model/old-policy")
    ids = np.array([alone.pk, two.pk, three.pk], dtype=np.int64)
    main = np.stack([np.frombuffer(bytes(p.vector), "<f4") for p in (alone, two, three)])
    space = space_current()

    got = with_further_photos(ids, space.apply(main), space)

    assert got.dtype == np.float32 and got.shape == main.shape
    assert got[0].tobytes() == main[0].tobytes()  # no further photo: its own vector, bit for bit
    for row, (product, photos) in enumerate([(two, photos_two), (three, photos_three)], start=1):
        stacked = np.stack([np.frombuffer(bytes(product.vector), "<f4"),
                            *(np.frombuffer(bytes(ph.vector), "<f4") for ph in photos)])
        want = product_vectors(stacked, PhotoGroups.from_counts([len(stacked)]))[0]
        np.testing.assert_array_equal(got[row], want.astype(np.float32))


@pytest.mark.parametrize("read_all_from", [1_000, 0])  # IN lists of ids, or one read of all
def test_a_subset_of_products_reads_only_their_photos(monkeypatch, read_all_from):
    monkeypatch.setattr(further_photos, "_READ_ALL_FROM", read_all_from)
    a, b = _product(1), _product(2)
    _photo(a)
    photo = _photo(b)
    ids = np.array([b.pk], dtype=np.int64)
    main = np.frombuffer(bytes(b.vector), "<f4")[None, :]
    space = space_current()
    got = with_further_photos(ids, space.apply(main), space)
    stacked = np.stack([main[0], np.frombuffer(bytes(photo.vector), "<f4")])
    want = product_vectors(stacked, PhotoGroups.from_counts([2]))
    np.testing.assert_array_equal(got, want.astype(np.float32))


def test_photo_counts_hold_the_main_photo_and_the_further_ones():
    one, three, gone = make_product("one"), make_product("three"), make_product("gone")
    for n in range(2):
        ProductPhoto.objects.create(product=three, image=f"products/{n}.png")
    Product.objects.filter(pk=gone.pk).delete()
    assert products_photo_counts(product_ids=[one.pk, three.pk, gone.pk]) == {one.pk: 1, three.pk: 3}
    assert three.photos_counted() == 3
