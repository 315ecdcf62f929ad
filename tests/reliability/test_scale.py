"""Through real workers: a catalog imported across the dense/top-k bound, and the
distributed rebuild with a block worker SIGKILLed mid-block.

The bound is 150 here (``LOOKALIKE_MAX_ITEMS``; 20,000 by default) so that a test imports
across it in seconds.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from catalog import engine
from catalog.models import Product, ProductNeighbour, RebuildBlock, RebuildRun
from catalog.services.products import products_bulk_create
from tests.reliability.support import fashion_images, problems, settled, upload, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

BOUND = 150


@pytest.fixture(scope="module")
def garments(model_path):
    return fashion_images(20, size=96)  # 200 garments


def _ready_without_a_list() -> list[int]:
    ready = set(Product.objects.filter(status=Product.Status.READY).values_list("pk", flat=True))
    listed = set(ProductNeighbour.objects.values_list("product_id", flat=True))
    return sorted(ready - listed) if len(ready) > 1 else []


def test_an_import_across_the_bound_switches_layout_and_never_empties_a_list(
        harness, garments, settings):
    settings.LOOKALIKE_MAX_ITEMS = BOUND
    harness.start_workers("embed", queues="embed", env={"LOOKALIKE_MAX_ITEMS": str(BOUND)})
    harness.start_workers("index", queues="index", env={"LOOKALIKE_MAX_ITEMS": str(BOUND)})
    for start in range(0, len(garments), 20):
        chunk = garments[start:start + 20]
        products_bulk_create(files=[upload(data, f"{cls}.png") for cls, data in chunk],
                             category="Import")
    empty_seen: list[int] = []
    deadline = time.monotonic() + 300
    while problems(200) and time.monotonic() < deadline:
        empty_seen += _ready_without_a_list()  # what the storefront would show as "computing"
        time.sleep(0.05)
    assert problems(200) == []
    assert empty_seen == []
    engine.matrix_forget()
    assert engine.matrix_store().store.load().layout == "topk"
    assert "moving the index to the top-k layout" in harness.logs()


def test_the_distributed_rebuild_survives_a_block_worker_killed_mid_block(
        harness, garments, settings):
    env = {"LOOKALIKE_INDEX_LAYOUT": "topk", "LOOKALIKE_REBUILD_BLOCK_ROWS": "40"}
    settings.LOOKALIKE_INDEX_LAYOUT = "topk"
    harness.start_workers("pipeline", queues="embed,index", env=env)
    products_bulk_create(files=[upload(data, f"{cls}.png") for cls, data in garments[:120]],
                         category="Rebuild")
    wait_for(settled(120), timeout=300, interval=0.5, what="120 products indexed")

    harness.start_workers("block-a", "block-b", queues="rebuild", env=env)
    harness.arm("rebuild.block", "pause-once")
    from catalog.services.queue import rebuild_enqueue

    rebuild_enqueue(trigger="test", robust=False)
    victim = harness.paused("rebuild.block", timeout=180)
    os.kill(victim, signal.SIGKILL)  # the block worker's child dies holding the block
    harness.release("rebuild.block")

    def finished() -> bool | str:
        run = RebuildRun.objects.order_by("-started_at").first()
        return bool(run and run.state != RebuildRun.State.RUNNING) or "rebuild still running"

    wait_for(finished, timeout=300, interval=0.5, what="the rebuild to finish")
    run = RebuildRun.objects.order_by("-started_at").first()
    assert run.state == RebuildRun.State.DONE, run.message
    blocks = list(run.blocks.order_by("start"))
    assert [(b.start, b.stop) for b in blocks] == [(0, 40), (40, 80), (80, 120)]
    assert all(b.state == RebuildBlock.State.DONE for b in blocks)
    assert max(b.attempts for b in blocks) >= 2  # the killed block was computed again
    assert "no rebuild worker answers" not in harness.logs()  # the writer saw the workers
    assert problems(120) == []
    assert not list(harness.matrix_dir.glob("rebuild-*"))
