"""An embed worker with a pool of several children shares the cores out among their LiteRT
interpreters (catalog.engine.embed_threads), and its products become ready."""

from __future__ import annotations

import re

import pytest

from catalog.models import Product
from catalog.services.products import products_bulk_create
from similarity.embedding.runtime import default_threads
from tests.reliability.support import fashion_images, settled, upload, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_each_child_of_an_embed_pool_of_two_takes_its_share_of_the_cores(harness, model_path):
    (worker,) = harness.start_workers("pool", concurrency=2, env={"LOOKALIKE_EMBED_THREADS": "0"})
    images = fashion_images(2, offset=5, size=80)  # 20 garments, in two embed tasks
    products = products_bulk_create(
        files=[upload(data, f"{cls}-{i}.png") for i, (cls, data) in enumerate(images)],
        category="Pool",
    )
    wait_for(settled(len(products)), timeout=180, what="the pool's products settled")
    assert Product.objects.filter(status=Product.Status.READY).count() == len(products)
    ready = re.findall(r"embedder ready: .*, LiteRT threads (\d+)", worker.log())
    assert ready, "no pool child built an embedder"
    assert {int(n) for n in ready} == {max(1, default_threads() // 2)}
