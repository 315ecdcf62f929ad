"""Guarantee 2, crash mid-write: the index worker is SIGKILLed while it writes, at a moment the
test chooses (a failpoint pauses the writer and names its pid). Nothing torn is ever served,
and the interrupted work completes: by redelivery (acks_late + reject_on_worker_lost, when the
pool child dies) or by the reconcile sweep (when the whole worker dies: Redis would only
redeliver after the visibility timeout, an hour by default)."""

from __future__ import annotations

import os
import signal
import time

import pytest
from django.utils import timezone

from catalog.engine import matrix_store
from catalog.models import Product
from catalog.services.products import product_create, products_bulk_create
from tests.reliability.conftest import STUCK_AFTER
from tests.reliability.support import (
    fashion_images,
    files_problems,
    settled,
    upload,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def images(model_path):
    return fashion_images(2, size=96)  # 20 garments


def catalog_of(images, n: int) -> None:
    products_bulk_create(
        files=[upload(data, f"{cls}-{i}.png") for i, (cls, data) in enumerate(images[:n])],
        category="Base",
    )
    wait_for(settled(n), timeout=90, what=f"{n} products settled")


def test_child_killed_after_the_delta_is_published_is_redelivered_and_completes(harness, images):
    (worker,) = harness.start_workers("w")
    catalog_of(images, 12)

    harness.arm("index.before_neighbours", "pause-once")
    cls, data = images[12]
    new = product_create(name="late", category=cls, image=upload(data))
    pid = harness.paused("index.before_neighbours")
    assert pid in worker.children(), "the failpoint did not pause the worker's pool child"
    # The redelivered run will stop at its first step, so the files can be checked at rest.
    harness.arm("index.acquire", "pause-once")
    os.kill(pid, signal.SIGKILL)

    second = harness.paused("index.acquire", timeout=60)
    assert second != pid and second in worker.children()  # a new child got the same task
    assert files_problems(harness.matrix_dir) == []
    assert new.pk in matrix_store().store.load()  # the delta was published before the kill...
    new.refresh_from_db()
    assert new.status == Product.Status.PROCESSING  # ...the neighbour rows were not written
    assert not new.neighbour_links.exists()

    harness.release("index.acquire")
    wait_for(settled(13), timeout=60, what="the interrupted work completed by redelivery")
    assert harness.temp_files() == []
    assert files_problems(harness.matrix_dir) == []
    assert "SIGKILL" in worker.log() or "signal 9" in worker.log()


def test_worker_killed_while_writing_the_matrix_is_repaired_by_the_sweep(harness, images):
    (first,) = harness.start_workers("first")
    catalog_of(images, 12)

    harness.arm("store.before_publish", "pause-once")
    cls, data = images[12]
    new = product_create(name="late", category=cls, image=upload(data))
    pid = harness.paused("store.before_publish")
    assert pid in first.children()
    assert harness.temp_files(), "the writer should be half way: temp file written"
    first.kill()  # the whole worker: main process and pool child, SIGKILL

    # Nothing torn: every published file loads without pickle, the store loads, without the
    # product whose delta was never published; the crashed writer's temp file is still there.
    assert files_problems(harness.matrix_dir) == []
    assert new.pk not in matrix_store().store.load()
    assert harness.temp_files()
    new.refresh_from_db()
    assert new.status != Product.Status.READY

    # A fresh worker, without failpoints; beat's reconcile sweep (sent as beat sends it) once the
    # product has been stuck for longer than the threshold.
    harness.start_workers("fresh", env={"LOOKALIKE_FAILPOINT_DIR": ""})
    stuck_since = Product.objects.get(pk=new.pk).status_changed_at
    time.sleep(max(0.0, STUCK_AFTER + 0.5 - (timezone.now() - stuck_since).total_seconds()))
    from workers.app import app

    app.send_task("workers.tasks.reconcile")
    wait_for(settled(13), timeout=60, what="the sweep completed the interrupted work")
    assert harness.temp_files() == []
    assert files_problems(harness.matrix_dir) == []
