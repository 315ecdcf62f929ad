"""similarity_rebuild and the beat schedule."""

from __future__ import annotations

import pytest

from catalog.models import Product, ProductNeighbour, RebuildRun
from catalog.services.indexing import index_apply
from catalog.services.product_embedding import products_embed_batch
from catalog.services.rebuild import similarity_rebuild
from catalog.vectors import vector_key_current
from tests.pipeline.helpers import neighbour_mismatches, stored_lists

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


