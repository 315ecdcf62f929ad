"""Lists inside the category through real workers, in both index layouts: 150 Fashion-MNIST
garments (category = their class) built by an embed worker and the index worker on a real
Redis; then, while they run, products change category, are taken out of lists, deleted and
re-photographed; then put back and moved again; then a full rebuild (in the top-k layout, every
category's row blocks computed by a rebuild worker) and the reconcile sweep.

Whenever nothing is left to do, every stored list equals the brute force that applies the rules
inside the product's category (tests/rules_reference.py), no list holds a product of another
category, and search by photo with a category finds only that category.
"""

from __future__ import annotations

import numpy as np
import pytest

from catalog.engine import matrix_store
from catalog.models import Product, ProductNeighbour, RebuildBlock, RebuildRun
from catalog.selectors.photo_search import products_search_by_vector, search_index_clear
from catalog.services import merchandising
from catalog.services.products import product_update, products_bulk_create, products_delete
from catalog.task_names import RECONCILE
from similarity import PartitionedIndex
from tests.reliability.support import (
    fashion_images,
    rebuild_through_the_worker,
    settle_and_check,
    upload,
)
from tests.rules_reference import LIMIT
from workers.app import app

pytestmark = pytest.mark.django_db(transaction=True)

PER_CLASS = 15
N = 10 * PER_CLASS


@pytest.fixture(scope="module")
def garments(model_path) -> list[tuple[str, bytes]]:
    """150 garments (15 per class) and 10 others for the changed photos."""
    return fashion_images(PER_CLASS, size=96) + fashion_images(1, offset=PER_CLASS, size=96)


def _cross_category() -> list[str]:
    """Stored list entries whose neighbour is of another category than the list's product."""
    category = dict(Product.objects.values_list("pk", "category"))
    rows = ProductNeighbour.objects.values_list("product_id", "neighbour_id")
    return [f"{pid} ({category[pid]}) lists {nid} ({category[nid]})" for pid, nid in rows
            if category[pid] != category[nid]][:5]


def _search_stays_in_category(category: str) -> list[str]:
    search_index_clear()
    out = []
    for product in Product.objects.filter(listed=True).order_by("pk")[:5]:
        vector = np.frombuffer(bytes(product.vector), "<f4")
        found = products_search_by_vector(vector=vector, k=LIMIT, category=category)
        if not found or {p.category for p, _ in found} != {category}:
            out.append(f"search by {product.pk}'s photo in {category}: {found}")
    return out


def _move(ids: list[int], category: str) -> None:
    for pid in ids:
        product_update(product=Product.objects.get(pk=pid), category=category)


def _check(harness, n: int, what: str) -> None:
    settle_and_check(harness, n, what)
    assert _cross_category() == [], what


@pytest.mark.parametrize("layout", ["dense", "topk"])
def test_lists_stay_inside_the_category_through_workers(harness, garments, settings, layout):
    settings.LOOKALIKE_INDEX_LAYOUT = layout
    settings.LOOKALIKE_LISTS_WITHIN_CATEGORY = True
    env = {"LOOKALIKE_INDEX_LAYOUT": layout, "LOOKALIKE_LISTS_WITHIN_CATEGORY": "1"}
    harness.start_workers("embed", queues="embed", env=env)
    (index_worker,) = harness.start_workers("index", queues="index", env=env)
    harness.start_workers("blocks", queues="rebuild", env=env)  # top-k partitions' row blocks
    catalog, photos = garments[:N], garments[N:]
    for cls in sorted({cls for cls, _ in catalog}):
        products_bulk_create(files=[upload(data, f"g{i}.png")
                                    for i, (c, data) in enumerate(catalog) if c == cls],
                             category=cls)
    _check(harness, N, f"{N} products built")
    index = matrix_store().store.load()
    assert isinstance(index, PartitionedIndex) and len(index.parts) == 10
    assert {part.layout for part in index.parts.values()} == {layout}

    shirts = list(Product.objects.filter(category="Shirt").order_by("pk").values_list("pk", flat=True))
    coats = list(Product.objects.filter(category="Coat").order_by("pk").values_list("pk", flat=True))
    _move(shirts[:4], "T-shirt/top")
    merchandising.products_set_listed(product_ids=coats[:5] + shirts[4:6], listed=False)
    products_delete(product_ids=coats[5:7])
    for pid, (_, data) in zip([coats[7], shirts[6]], photos, strict=False):
        product_update(product=Product.objects.get(pk=pid), image=upload(data, "new.png"))
    _move([coats[8]], "Pullover")
    _check(harness, N - 2, "moved, sold out, deleted, re-photographed")
    assert Product.objects.filter(category="T-shirt/top").count() == PER_CLASS + 4

    merchandising.products_set_listed(product_ids=coats[:5] + shirts[4:6], listed=True)
    _move(shirts[:2], "Shirt")
    _move([coats[8]], "Coat")
    _check(harness, N - 2, "listed again, moved back")
    assert _search_stays_in_category("Coat") == []

    run = rebuild_through_the_worker()
    assert run.state == RebuildRun.State.DONE, run.message
    blocks = list(run.blocks.all())
    assert {b.category for b in blocks} == ({c for c, _ in catalog} if layout == "topk" else set())
    assert all(b.state == RebuildBlock.State.DONE for b in blocks)
    _check(harness, N - 2, "the full rebuild")
    app.send_task(RECONCILE)
    _check(harness, N - 2, "the reconcile sweep")
    assert "workers.tasks.reconcile" in index_worker.log()
