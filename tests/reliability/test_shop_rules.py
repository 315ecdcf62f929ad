"""The shop's rules through real workers, in both index layouts: a catalog of 300 Fashion-MNIST
garments built by an embed worker and the index worker on a real Redis (a rebuild worker
computes the top-k layout's row blocks), then, while they run, 30 products taken out of lists
in batches, pins and exclusions set (one product excluded everywhere), photos changed, products
deleted, and the index worker's pool child SIGKILLed once mid-write; then the 30 put back and
some rules lifted; then a full rebuild through the workers, and the reconcile sweep. Once more
in the top-k layout with near-duplicates collapsed, 30 of the products being copies of others'
photos (the same bytes).

Whenever nothing is left to do (every product ready, no message queued or unacknowledged),
every stored list equals the brute force that applies the rules (tests/rules_reference.py), no
list holds a product kept out of lists, and search by photo never finds one.
"""

from __future__ import annotations

import time

import pytest

from catalog.engine import matrix_store
from catalog.models import ListRule, Product, RebuildRun
from catalog.services import merchandising
from catalog.services.products import product_update, products_bulk_create, products_delete
from catalog.task_names import RECONCILE
from similarity import PartitionedIndex
from tests.reliability.support import (
    SOLD_OUT,
    Cast,
    fashion_images,
    kill_the_index_child_mid_write,
    list_of,
    product,
    rebuild_through_the_worker,
    rules_applied,
    set_rules,
    settle_and_check,
    start_shop_workers,
    upload,
)
from tests.rules_reference import LIMIT
from workers.app import app

pytestmark = pytest.mark.django_db(transaction=True)

N = 300


@pytest.fixture(scope="module")
def garments(model_path) -> list[tuple[str, bytes]]:
    """300 garments for the catalog (30 per class) and 10 others for the changed photos."""
    return fashion_images(N // 10, size=96) + fashion_images(1, offset=N // 10, size=96)


def _copies_side_by_side() -> list[str]:
    """Lists that show two products with the same photo bytes."""
    sha = dict(Product.objects.values_list("pk", "image_sha256"))
    out = []
    for pid in Product.objects.values_list("pk", flat=True):
        shown = [sha[nid] for nid in list_of(pid)]
        if len(set(shown)) != len(shown):
            out.append(f"{pid}: {list_of(pid)}")
    return out


@pytest.mark.parametrize(("layout", "collapse"), [("dense", False), ("topk", False), ("topk", True)],
                         ids=["dense", "topk", "topk-collapsed"])
def test_rules_hold_through_workers_a_killed_writer_and_a_rebuild(harness, garments, settings, layout,
                                                                  collapse):
    settings.LOOKALIKE_INDEX_LAYOUT = layout
    settings.LOOKALIKE_COLLAPSE_DUPLICATES = collapse
    index_worker = start_shop_workers(harness, layout,
                                      LOOKALIKE_COLLAPSE_DUPLICATES="1" if collapse else "0")
    catalog, photos = garments[:N], garments[N:]
    if collapse:  # the last 30 are copies of the first 30's photos
        catalog = catalog[:N - 30] + catalog[:30]
    timings: dict[str, float] = {}

    start = time.monotonic()
    for first in range(0, N, 50):
        products_bulk_create(files=[upload(data, f"{cls.replace('/', '-')}.png")
                                    for cls, data in catalog[first:first + 50]], category="Catalog")
    timings["build"] = time.monotonic() - start + settle_and_check(harness, N, f"{N} products built")

    cast = Cast.draw(sorted(Product.objects.values_list("pk", flat=True)), seed=7)
    sold_out, deleted = cast.sold_out, cast.deleted

    # While the workers run: availability, rules, photos, deletions, and one killed writer.
    start = time.monotonic()
    merchandising.products_set_listed(product_ids=sold_out[:10], listed=False)
    rules = set_rules(cast)
    kill_the_index_child_mid_write(
        harness, index_worker,
        lambda: merchandising.products_set_listed(product_ids=sold_out[10:20], listed=False))
    merchandising.list_exclude_everywhere(target=product(cast.everywhere))
    for pid, (cls, data) in zip(cast.changed, photos, strict=False):
        product_update(product=product(pid), image=upload(data, f"{cls.replace('/', '-')}.png"))
    merchandising.products_set_listed(product_ids=sold_out[20:], listed=False)
    products_delete(product_ids=deleted)
    timings["changes"] = time.monotonic() - start + settle_and_check(
        harness, N - len(deleted), f"{SOLD_OUT} sold out, rules set, photos changed, deleted")
    assert Product.objects.filter(listed=False).count() == SOLD_OUT
    assert all(len(list_of(pid)) == LIMIT for pid in sold_out)  # each keeps its own list
    assert rules_applied(rules["lift"]) == []
    assert not ListRule.objects.filter(pk__in=[r.pk for r in rules["doomed"]]).exists()
    assert "SIGKILL" in index_worker.log() or "signal 9" in index_worker.log()

    # The 30 back, some rules lifted.
    start = time.monotonic()
    merchandising.products_set_listed(product_ids=sold_out[:15], listed=True)
    for rule in rules["lift"]:
        merchandising.list_rule_delete(rule=rule)
    merchandising.products_set_listed(product_ids=sold_out[15:], listed=True)
    timings["back"] = time.monotonic() - start + settle_and_check(
        harness, N - len(deleted), f"the {SOLD_OUT} listed again, rules lifted")
    assert not Product.objects.filter(listed=False).exists()
    kept = list(ListRule.objects.order_by("pk"))
    assert len(kept) == len(rules["keep"]) + 1  # the exclusion everywhere stays too
    assert rules_applied(rules["keep"]) == []

    # A full rebuild keeps every rule.
    start = time.monotonic()
    run = rebuild_through_the_worker()
    assert run.state == RebuildRun.State.DONE, run.message
    timings["rebuild"] = time.monotonic() - start + settle_and_check(
        harness, N - len(deleted), "the full rebuild")
    assert list(ListRule.objects.order_by("pk")) == kept
    assert rules_applied(rules["keep"]) == []
    index = matrix_store().store.load()  # lists inside categories: one index per category
    parts = index.parts.values() if isinstance(index, PartitionedIndex) else [index]
    assert {part.layout for part in parts} == {layout}

    # So does the reconcile sweep (sent as beat sends it), which rewrites every list that
    # differs from the index.
    app.send_task(RECONCILE)
    settle_and_check(harness, N - len(deleted), "the reconcile sweep")
    assert "workers.tasks.reconcile" in index_worker.log()
    assert rules_applied(rules["keep"]) == []
    if collapse:
        assert _copies_side_by_side() == []
    settled_after = ", ".join(f"{k} {v:.1f}" for k, v in timings.items())
    print(f"{layout}{' collapsed' if collapse else ''}: seconds until settled: {settled_after}")
