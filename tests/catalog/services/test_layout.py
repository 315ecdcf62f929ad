"""In-process: the index moves from the dense matrix to the top-k layout when the
catalog grows past ``LOOKALIKE_MAX_ITEMS``, with every list exact and none lost on the way,
and the top-k layout's full rebuild goes through row blocks, across the catalog or by
category."""

from __future__ import annotations

import numpy as np
import pytest
from django.utils import timezone

from catalog import engine
from catalog.models import Product, ProductNeighbour, RebuildBlock
from catalog.services.indexing import index_apply, index_remove
from catalog.services.rebuild import similarity_rebuild
from catalog.vectors import vector_key_current
from tests.pipeline.helpers import neighbour_mismatches
from tests.rules_reference import mismatches

pytestmark = pytest.mark.django_db

BOUND = 25


def _add(rng: np.random.Generator, n: int, category: str = "c") -> list[int]:
    key = vector_key_current()
    start = Product.objects.count() + 10_000 * int(rng.integers(1, 1000))
    made = [Product.objects.create(
        name=f"p{start + i}", slug=f"p-{start + i}", category=category, image=f"x/{start + i}.png",
        image_sha256=f"{start + i:064d}", embedded_image_sha256=f"{start + i:064d}",
        status=Product.Status.PROCESSING, status_changed_at=timezone.now(), vector_key=key,
        vector=rng.normal(size=1280).astype("<f4").tobytes(),
    ) for i in range(n)]
    return [p.pk for p in made]


def _stored_layout() -> str:
    return engine.matrix_store().store.load().layout


def _no_ready_product_without_a_list() -> list[int]:
    ready = set(Product.objects.filter(status=Product.Status.READY).values_list("pk", flat=True))
    listed = set(ProductNeighbour.objects.values_list("product_id", flat=True))
    return sorted(ready - listed) if len(ready) > 1 else []


def test_a_catalog_grown_past_the_bound_switches_layout_with_every_list_exact(settings):
    settings.LOOKALIKE_MAX_ITEMS = BOUND
    rng = np.random.default_rng(7)
    layouts = []
    for step in range(24):
        op = rng.choice(["add", "add", "add", "update", "delete"]) if step > 2 else "add"
        ids = list(Product.objects.values_list("pk", flat=True))
        if op == "add":
            index_apply(product_ids=_add(rng, int(rng.integers(1, 5))))
        elif op == "update":
            pid = int(rng.choice(ids))
            Product.objects.filter(pk=pid).update(
                vector=rng.normal(size=1280).astype("<f4").tobytes(), image_sha256=f"u{step:063d}",
                embedded_image_sha256=f"u{step:063d}")
            index_apply(product_ids=[pid])
        else:
            doomed = [int(x) for x in rng.choice(ids, size=2, replace=False)]
            Product.objects.filter(pk__in=doomed).delete()
            index_remove(product_ids=doomed)
        assert neighbour_mismatches() == [], f"step {step} ({op})"
        assert _no_ready_product_without_a_list() == [], f"step {step} ({op})"
        layouts.append(_stored_layout())
    assert Product.objects.count() > BOUND
    assert layouts[0] == "dense" and layouts[-1] == "topk"
    switch = layouts.index("topk")
    assert set(layouts[switch:]) == {"topk"}  # once past the bound it stays top-k


def test_the_top_k_rebuild_goes_through_row_blocks(settings, no_broker):
    settings.LOOKALIKE_INDEX_LAYOUT = "topk"
    settings.LOOKALIKE_REBUILD_BLOCK_ROWS = 7
    settings.LOOKALIKE_REBUILD_BLOCK_TIMEOUT = 0  # no rebuild worker here: the writer computes
    rng = np.random.default_rng(3)
    _add(rng, 30)
    run = similarity_rebuild(trigger="test")
    assert run.state == "done", run.message
    blocks = list(run.blocks.order_by("start"))
    assert [(b.start, b.stop) for b in blocks] == [(0, 7), (7, 14), (14, 21), (21, 28), (28, 30)]
    assert all(b.state == RebuildBlock.State.DONE and "pid" in b.worker for b in blocks)
    sent = [s for s in no_broker if s.task == "workers.tasks.rebuild_block"]
    assert sorted(s.kwargs["block_id"] for s in sent) == [b.pk for b in blocks]
    assert {s.kwargs["metric"] for s in sent} == {"euclidean"}
    assert neighbour_mismatches() == []
    assert _stored_layout() == "topk"
    assert not list(engine.matrix_store().store.directory.glob("rebuild-*"))  # input removed


def test_lists_inside_categories_rebuild_each_top_k_partition_in_row_blocks(settings, no_broker):
    settings.LOOKALIKE_LISTS_WITHIN_CATEGORY = True
    settings.LOOKALIKE_MAX_ITEMS = 12  # coats and dresses are top-k partitions, hats dense
    settings.LOOKALIKE_REBUILD_BLOCK_ROWS = 7
    settings.LOOKALIKE_REBUILD_BLOCK_TIMEOUT = 0  # no rebuild worker here: the writer computes
    rng = np.random.default_rng(5)
    for category, n in (("coats", 20), ("dresses", 15), ("hats", 5)):
        _add(rng, n, category)
    run = similarity_rebuild(trigger="test")
    assert run.state == "done", run.message
    blocks = [(b.category, b.start, b.stop) for b in run.blocks.order_by("category", "start")]
    assert blocks == [("coats", 0, 7), ("coats", 7, 14), ("coats", 14, 20),
                      ("dresses", 0, 7), ("dresses", 7, 14), ("dresses", 14, 15)]
    assert all(b.state == RebuildBlock.State.DONE for b in run.blocks.all())
    sent = [s for s in no_broker if s.task == "workers.tasks.rebuild_block"]
    assert sorted(s.kwargs["block_id"] for s in sent) == sorted(run.blocks.values_list("pk", flat=True))
    assert mismatches() == []
    index = engine.matrix_store().store.load()
    assert {c: part.layout for c, part in index.parts.items()} == {
        "coats": "topk", "dresses": "topk", "hats": "dense"}
    assert not list(engine.matrix_store().store.directory.rglob("rebuild-*"))  # inputs removed


def test_with_no_rebuild_worker_answering_the_writer_computes_the_blocks_at_once(
        settings, caplog, no_broker):
    settings.LOOKALIKE_INDEX_LAYOUT = "topk"
    settings.LOOKALIKE_REBUILD_BLOCK_ROWS = 10
    settings.LOOKALIKE_REBUILD_BLOCK_TIMEOUT = 600  # what it would wait with workers expected
    _add(np.random.default_rng(4), 25)
    with caplog.at_level("WARNING", logger="catalog.services.rebuild_blocks"):
        run = similarity_rebuild(trigger="test")  # asks the test broker: no worker there
    assert run.state == "done", run.message
    assert "no rebuild worker answers: the writer computes the 3 blocks itself" in caplog.text
    assert "no rebuild block finished" not in caplog.text
    assert neighbour_mismatches() == []


def test_a_rebuild_removes_the_inputs_a_stopped_rebuild_left_behind(settings, no_broker):
    settings.LOOKALIKE_INDEX_LAYOUT = "topk"
    settings.LOOKALIKE_REBUILD_BLOCK_TIMEOUT = 0
    _add(np.random.default_rng(6), 12)
    directory = engine.matrix_store().store.directory
    left = directory / "rebuild-0123456789ab"  # as a writer SIGKILLed mid-rebuild leaves it
    left.mkdir(parents=True)
    (left / "vectors.npy").write_bytes(b"partial")
    run = similarity_rebuild(trigger="test")
    assert run.state == "done", run.message
    assert not left.exists()
    assert not list(directory.rglob("rebuild-*"))
    assert neighbour_mismatches() == []
