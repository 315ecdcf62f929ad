"""similarity_rebuild and the beat schedule."""

from __future__ import annotations

import pytest

from catalog.models import Product, ProductNeighbour, ProductPhoto, RebuildRun
from catalog.services.indexing import index_apply
from catalog.services.product_embedding import products_embed_batch
from catalog.services.product_photos import product_photo_add
from catalog.services.rebuild import similarity_rebuild, stale_products
from catalog.vectors import vector_key_current
from tests.pipeline.helpers import neighbour_mismatches, stored_lists, upload
from tests.rules_reference import mismatches

pytestmark = pytest.mark.django_db


def test_rebuild_reembeds_stale_and_rewrites_every_list(make_products):
    products = make_products(15)
    ids = [p.pk for p in products]
    index_apply(product_ids=products_embed_batch(product_ids=ids[:12]).to_index)
    # drift: a vector from another model, a lost list, 3 products never embedded
    Product.objects.filter(pk=ids[0]).update(vector_key="old-model/old-policy")
    ProductNeighbour.objects.filter(product_id=ids[5]).delete()

    run = similarity_rebuild(trigger="test")

    run.refresh_from_db()
    assert run.state == RebuildRun.State.DONE and run.step == "done"
    assert run.finished_at is not None and run.trigger == "test"
    assert run.done == run.total == 15
    assert "re-embedded 4 stale" in run.message
    assert set(Product.objects.values_list("vector_key", flat=True)) == {vector_key_current()}
    assert set(Product.objects.values_list("status", flat=True)) == {Product.Status.READY}
    assert all(len(rows) == 10 for rows in stored_lists().values()) and len(stored_lists()) == 15
    assert neighbour_mismatches() == []
    # and again: nothing to change
    again = similarity_rebuild(trigger="test")
    assert "re-embedded 0 stale" in again.message and "0 list(s) rewritten" in again.message


def test_rebuild_reembeds_a_stale_further_photo_and_every_list_counts_all_photos(
    make_products, garments,
):
    products = make_products(12)
    a, b, c = products[0], products[1], products[2]
    photos = [product_photo_add(product=p, image=upload(data))
              for p, (_, data) in zip((a, a, b, c), garments[12:16], strict=True)]
    index_apply(product_ids=products_embed_batch(product_ids=[p.pk for p in products]).to_index)
    assert mismatches() == []
    stale, failed = photos[0], photos[3]
    ProductPhoto.objects.filter(pk=stale.pk).update(vector_key="old-model/old-policy")
    ProductPhoto.objects.filter(pk=failed.pk).update(  # rejected: stays out, never stale
        status=ProductPhoto.Status.FAILED, vector=None, vector_key="", embedded_image_sha256="")
    assert stale_products() == [a.pk]

    run = similarity_rebuild(trigger="test")

    run.refresh_from_db()
    assert run.state == RebuildRun.State.DONE and "re-embedded 1 stale" in run.message
    stale.refresh_from_db()
    assert stale.vector_key == vector_key_current() and stale.status == ProductPhoto.Status.READY
    assert stale.embedded_image_sha256 == stale.image_sha256 and stale.vector is not None
    assert ProductPhoto.objects.get(pk=failed.pk).status == ProductPhoto.Status.FAILED
    assert set(Product.objects.values_list("status", flat=True)) == {Product.Status.READY}
    assert mismatches() == []
    assert stale_products() == []
    again = similarity_rebuild(trigger="test")
    assert "re-embedded 0 stale" in again.message and "0 list(s) rewritten" in again.message


def test_rebuild_failure_is_recorded(make_products, monkeypatch):
    from catalog.services import rebuild

    make_products(2)

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(rebuild, "products_indexable_vectors", boom)
    with pytest.raises(RuntimeError):
        similarity_rebuild(trigger="test")
    run = RebuildRun.objects.get()
    assert run.state == RebuildRun.State.FAILED and "disk on fire" in run.message


