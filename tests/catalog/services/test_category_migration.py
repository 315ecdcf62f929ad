"""Switching ``LOOKALIKE_LISTS_WITHIN_CATEGORY`` is a migration: the stored index becomes stale,
the full rebuild rebuilds it (by category, or across the catalog) and rewrites every list, and
until a list is rewritten the storefront keeps showing the old one."""

from __future__ import annotations

import numpy as np
import pytest

from catalog import engine
from catalog.engine import matrix_store
from catalog.models import Product
from catalog.selectors import photo_search
from catalog.selectors.storefront import product_neighbours
from catalog.services import neighbour_sync
from catalog.services.indexing import index_apply
from catalog.services.product_embedding import products_embed_batch
from catalog.services.rebuild import similarity_rebuild
from similarity import PartitionedIndex, PartitionedStore, StaleMatrixError, partitions_present
from tests.catalog.services.test_adoption import create
from tests.pipeline.helpers import fashion_images, stored_lists
from tests.rules_reference import mismatches

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def garments40(model_path) -> list[tuple[str, bytes]]:
    return fashion_images(4)  # 10 classes x 4


def switch(settings, within: bool) -> None:
    settings.LOOKALIKE_LISTS_WITHIN_CATEGORY = within
    engine.matrix_forget()
    photo_search.search_index_clear()


def shown(pid: int) -> list[tuple[int, float]]:
    return [(n.neighbour_id, n.distance) for n in product_neighbours(product=Product.objects.get(pk=pid))]


def crossing() -> int:
    category = dict(Product.objects.values_list("pk", "category"))
    return sum(category[pid] != category[nid]
               for pid, rows in stored_lists().items() for _, nid, _ in rows)


def search_answers() -> bool:
    """Search by photo gives ten products (mid-migration it reads the database's vectors)."""
    photo_search.search_index_clear()
    vector = np.frombuffer(bytes(Product.objects.order_by("pk").first().vector), "<f4")
    return len(photo_search.products_search_by_vector(vector=vector, k=10)) == 10


@pytest.mark.parametrize("layout", ["auto", "topk"])
def test_switching_the_setting_is_migrated_by_the_rebuild(garments40, settings, monkeypatch,
                                                           layout):
    settings.LOOKALIKE_INDEX_LAYOUT = layout
    settings.LOOKALIKE_REBUILD_BLOCK_TIMEOUT = 0  # no rebuild worker here: the writer computes
    switch(settings, False)
    ids = [p.pk for p in create(garments40)]
    index_apply(product_ids=products_embed_batch(product_ids=ids).to_index)
    assert mismatches() == [] and crossing() > 0  # lists span the catalog
    old = stored_lists()

    switch(settings, True)
    store = matrix_store().store
    assert isinstance(store, PartitionedStore)
    with pytest.raises(StaleMatrixError):
        store.load()  # the catalog-wide index does not pass for lists by category
    assert search_answers()
    assert {pid: shown(pid) for pid in ids} == {
        pid: [(nid, dist) for _, nid, dist in rows] for pid, rows in old.items()}

    # While the rebuild rewrites lists, every list not yet rewritten is the old one.
    seen_mid_rewrite: list[bool] = []
    synced: set[int] = set()
    real_sync = neighbour_sync.neighbours_sync

    def watching_sync(**kwargs):
        synced.update(kwargs["product_ids"])
        pending = [pid for pid in ids if pid not in synced]
        seen_mid_rewrite.append(all(stored_lists().get(pid) == old[pid] for pid in pending))
        return real_sync(**kwargs)

    monkeypatch.setattr(neighbour_sync, "neighbours_sync", watching_sync)
    monkeypatch.setitem(neighbour_sync.neighbours_sync_chunked.__kwdefaults__, "chunk", 10)
    run = similarity_rebuild(trigger="test")
    assert "40 list(s) rewritten" in run.message, run.message
    assert len(seen_mid_rewrite) == 4 and all(seen_mid_rewrite)
    assert mismatches() == [] and crossing() == 0
    assert isinstance(matrix_store().store.load(), PartitionedIndex)
    assert not list(settings.LOOKALIKE_MATRIX_DIR.glob("base-*"))  # the catalog-wide files went

    # And back: lists across the catalog again, the partitions gone.
    switch(settings, False)
    assert search_answers()
    similarity_rebuild(trigger="test")
    assert mismatches() == [] and crossing() > 0
    assert not partitions_present(settings.LOOKALIKE_MATRIX_DIR)
    assert stored_lists() == old
