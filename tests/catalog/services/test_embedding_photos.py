"""The embed step with further photos (catalog.services.product_embedding), with the real model,
then the real index writer and search by photo: every list equals the brute force over each
product's vector of all its photos."""

from __future__ import annotations

import numpy as np
import pytest

from catalog.models import Product, ProductPhoto
from catalog.selectors.photo_search import products_search_by_vector, search_index_clear
from catalog.services.indexing import index_apply
from catalog.services.product_embedding import products_embed_batch
from catalog.services.product_photos import (
    product_photo_add,
    product_photo_change,
    product_photo_remove,
)
from catalog.vectors import vector_key_current
from similarity import COLOUR_KEY
from tests.pipeline.helpers import upload
from tests.rules_reference import mismatches, product_vectors_of

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_search_cache():
    search_index_clear()
    yield
    search_index_clear()


def _indexed(products: list[Product]) -> None:
    outcome = products_embed_batch(product_ids=[p.pk for p in products])
    index_apply(product_ids=outcome.to_index)


def _vector_of(product: Product) -> np.ndarray:
    product.refresh_from_db()
    return product_vectors_of([product])[product.pk]


def _search(vector: np.ndarray) -> list[tuple[int, float]]:
    return [(p.pk, d) for p, d in products_search_by_vector(vector=vector, k=Product.objects.count())]


@pytest.mark.parametrize("layout", ["dense", "topk"])
def test_further_photos_are_embedded_and_the_lists_and_search_follow(
    settings, make_products, garments, layout,
):
    settings.LOOKALIKE_INDEX_LAYOUT = layout
    products = make_products(12)
    _indexed(products)
    a, b = products[0], products[1]
    before = _vector_of(a)
    assert _search(before)[0] == (a.pk, 0.0)  # search has loaded its vectors
    photos_a = [product_photo_add(product=a, image=upload(data)) for _, data in garments[12:14]]
    good_b = product_photo_add(product=b, image=upload(garments[14][1]))
    bad_b = product_photo_add(product=b, image=upload(garments[15][1]))
    with bad_b.image.storage.open(bad_b.image.name, "wb") as fh:  # corrupted after upload
        fh.write(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)

    outcome = products_embed_batch(product_ids=[a.pk, b.pk])

    assert sorted(outcome.to_index) == [a.pk, b.pk] and outcome.failed == []
    for photo in [*photos_a, good_b]:
        photo.refresh_from_db()
        assert photo.status == ProductPhoto.Status.READY and photo.error_message == ""
        assert photo.vector_key == vector_key_current() and photo.colour_key == COLOUR_KEY
        assert photo.embedded_image_sha256 == photo.image_sha256
        vec = photo.vector_array()
        assert vec is not None and vec.shape == (1280,) and np.isfinite(vec).all() and vec.any()
        assert photo.colour is not None
    bad_b.refresh_from_db()
    assert bad_b.status == ProductPhoto.Status.FAILED and bad_b.vector is None
    assert bad_b.error_message.startswith("truncated: ")
    for product in (a, b):  # the products stay as they were: ready, listed, with their lists
        product.refresh_from_db()
        assert product.status == Product.Status.READY and product.vector is not None
    assert mismatches() != []  # their vectors changed; the lists are not rewritten yet

    rewritten = index_apply(product_ids=outcome.to_index)

    assert {a.pk, b.pk} <= rewritten
    assert mismatches() == []
    after = _vector_of(a)
    assert not np.array_equal(after, before)
    hits = _search(after)
    assert len({pid for pid, _ in hits}) == len(hits) == len(products)
    assert hits[0][0] == a.pk and hits[0][1] == pytest.approx(0.0, abs=1e-3)
    assert dict(_search(before))[a.pk] > 0.0  # no longer its main photo's vector


def test_removing_a_further_photo_brings_the_product_back_to_its_main_photo(
    make_products, garments, django_capture_on_commit_callbacks,
):
    products = make_products(10)
    _indexed(products)
    a = products[0]
    main_only = _vector_of(a)
    photo = product_photo_add(product=a, image=upload(garments[12][1]))
    _indexed([a])
    assert not np.array_equal(_vector_of(a), main_only) and mismatches() == []
    with django_capture_on_commit_callbacks() as callbacks:
        product_photo_remove(photo=photo)
    index_apply(product_ids=callbacks[-1].kwargs["product_ids"])
    assert mismatches() == []
    assert np.array_equal(_vector_of(a), main_only)
    assert _search(main_only)[0] == (a.pk, 0.0)


def test_a_changed_photo_rejected_stops_counting_in_lists_and_search(make_products, garments):
    products = make_products(10)
    _indexed(products)
    a = products[0]
    main_only = _vector_of(a)
    photo = product_photo_add(product=a, image=upload(garments[12][1]))
    _indexed([a])
    assert _search(main_only)[0][1] > 0.0  # search counts the further photo
    product_photo_change(photo=photo, image=upload(garments[13][1]))
    photo.refresh_from_db()
    assert photo.status == ProductPhoto.Status.PENDING and photo.vector is not None
    assert not np.array_equal(_vector_of(a), main_only)
    assert mismatches() == []  # the previous vector counts until the new image is embedded
    with photo.image.storage.open(photo.image.name, "wb") as fh:  # corrupted after upload
        fh.write(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)

    outcome = products_embed_batch(product_ids=[a.pk])
    index_apply(product_ids=outcome.to_index)

    photo.refresh_from_db()
    assert photo.status == ProductPhoto.Status.FAILED and photo.vector is None
    assert mismatches() == []
    assert np.array_equal(_vector_of(a), main_only)
    assert _search(main_only)[0] == (a.pk, 0.0)
