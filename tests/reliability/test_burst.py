"""Guarantee 1, burst: 200 products in a few seconds, two workers, every task delivered twice."""

from __future__ import annotations

import re
import time

import pytest

from catalog.models import Product
from catalog.services.products import product_create, products_bulk_create
from tests.reliability.support import fashion_images, problems, settled, upload, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

SIZES = (64, 112, 160, 224)


@pytest.fixture(scope="module")
def burst_images(model_path):
    """200 distinct Fashion-MNIST garments (20 per class), 64 to 224 px."""
    images = []
    for n, size in enumerate(SIZES):
        images += fashion_images(5, offset=5 * n, size=size)
    assert len(images) == 200
    return images


def test_burst_of_200_with_every_task_delivered_twice(harness, burst_images, settings):
    # Every task (the embed tasks sent from here, the index tasks the workers send) goes twice,
    # with one task id, as a redelivering broker would send it.
    dup = {"LOOKALIKE_TEST_DUPLICATE_SENDS": "1"}
    harness.start_workers("a", "b", env=dup)
    settings.LOOKALIKE_TEST_DUPLICATE_SENDS = 1

    start = time.monotonic()
    # 150 through bulk uploads of 15, 50 one by one: as the admin creates them.
    for batch in range(10):
        items = burst_images[batch * 15 : (batch + 1) * 15]
        products_bulk_create(
            files=[upload(data, f"{cls}-{batch}-{i}.png") for i, (cls, data) in enumerate(items)],
            category="Burst",
        )
    for i, (cls, data) in enumerate(burst_images[150:]):
        product_create(name=f"{cls} single {i}", category=cls, image=upload(data))
    created_in = time.monotonic() - start
    assert Product.objects.count() == 200
    assert created_in < 20, f"creating 200 products took {created_in:.1f} s"

    wait_for(settled(200), timeout=150, interval=1.0, what="200 products settled")
    assert problems(200) == []
    # both workers took part, and duplicates really were delivered
    for worker in harness.workers:
        assert "Task workers.tasks.index_products" in worker.log(), worker.name
    received = sum(len(re.findall(r"Task workers\.tasks\.embed_products\[\S+\] received", w.log()))
                   for w in harness.workers)
    assert received == 2 * 60, f"{received} embed deliveries logged, expected 2 x 60"
