"""End to end through Redis and a real worker: upload → embed → index → neighbours → repairs."""

from __future__ import annotations

import pytest

from catalog.models import Product, ProductNeighbour, RebuildRun
from catalog.services.products import (
    product_create,
    product_delete,
    product_update,
    products_bulk_create,
)
from catalog.vectors import vector_key_current
from tests.pipeline.helpers import K, fashion_images, neighbour_mismatches, settled, upload, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def garments(model_path):
    return fashion_images(2)  # 20 garments, 2 per class


def create(garments, start: int, count: int) -> list[Product]:
    """Half through the bulk upload, half one by one, as the admin would."""
    items = garments[start : start + count]
    half = count // 2
    bulk = products_bulk_create(
        files=[upload(data, f"{cls}-{i}.png") for i, (cls, data) in enumerate(items[:half])],
        category="Mixed",
    )
    single = [
        product_create(name=f"{cls} single {i}", category=cls, image=upload(data))
        for i, (cls, data) in enumerate(items[half:])
    ]
    return bulk + single


def test_created_products_become_ready_with_brute_force_neighbours(worker, garments):
    products = create(garments, 0, 20)
    wait_for(settled(20), what="20 products ready with 10 neighbours each")
    for p in Product.objects.all():
        ranks = list(p.neighbour_links.order_by("rank").values_list("rank", flat=True))
        assert ranks == list(range(1, K + 1))
        assert p.vector_key == vector_key_current()
        assert p.embedded_image_sha256 == p.image_sha256
    assert len(products) == 20


def test_delete_is_repaired_everywhere(worker, garments):
    products = create(garments, 0, 16)
    wait_for(settled(16), what="16 products settled")
    # delete the two products that appear in the most lists
    counts = {
        p.pk: ProductNeighbour.objects.filter(neighbour=p).count() for p in products
    }
    victims = sorted(counts, key=counts.get, reverse=True)[:2]
    for pk in victims:
        product_delete(product=Product.objects.get(pk=pk))
    assert not ProductNeighbour.objects.filter(neighbour_id__in=victims).exists()
    wait_for(settled(14), what="lists repaired after deleting two products")


def test_image_change_is_repaired(worker, garments):
    products = create(garments, 0, 15)
    wait_for(settled(15), what="15 products settled")
    target = products[0]
    old_sha = target.image_sha256
    product_update(product=target, image=upload(garments[19][1], "replacement.png"))

    def reembedded() -> bool | str:
        p = Product.objects.get(pk=target.pk)
        if p.embedded_image_sha256 == old_sha:
            return "still the old vector"
        return settled(15)()

    wait_for(reembedded, what="the changed product re-embedded and every list repaired")
    target.refresh_from_db()
    assert target.embedded_image_sha256 == target.image_sha256 != old_sha


def test_bad_image_fails_in_the_worker_without_retry_and_others_settle(worker, garments):
    from django.db import transaction

    with transaction.atomic():
        products = create(garments, 0, 12)
        bad = products[-1]
        with bad.image.storage.open(bad.image.name, "wb") as fh:  # damaged after validation
            fh.write(garments[0][1][:300])

    def done() -> bool | str:
        bad_now = Product.objects.get(pk=bad.pk)
        if bad_now.status != Product.Status.FAILED:
            return f"bad product is {bad_now.status}"
        return _others_settled(bad.pk, 11)

    wait_for(done, what="the damaged product failed, the others ready")
    bad.refresh_from_db()
    assert bad.error_message.startswith("truncated: ")
    assert not ProductNeighbour.objects.filter(neighbour=bad).exists()
    assert b"Retry in" not in worker.log_path.read_bytes()


def _others_settled(bad_pk: int, n: int) -> bool | str:
    ready = Product.objects.filter(status=Product.Status.READY)
    if ready.count() != n:
        return f"{ready.count()} ready, expected {n}"
    for p in ready:
        if ProductNeighbour.objects.filter(product=p).count() != min(K, n - 1):
            return f"{p.pk} short"
    problems = neighbour_mismatches()
    return True if not problems else str(problems[:3])


def test_rebuild_task_runs_through_the_worker(worker, garments):
    from workers.tasks import rebuild_similarity

    products = create(garments, 0, 14)
    wait_for(settled(14), what="14 products settled")
    # drift the nightly rebuild must repair: a stale vector and a lost list
    Product.objects.filter(pk=products[0].pk).update(vector_key="old-model/old-policy")
    ProductNeighbour.objects.filter(product=products[1]).delete()

    rebuild_similarity.delay(trigger="test")

    def finished() -> bool | str:
        run = RebuildRun.objects.filter(trigger="test").first()
        if run is None:
            return "no run yet"
        if run.state != RebuildRun.State.DONE:
            return f"{run.state} {run.step} {run.done}/{run.total} {run.message}"
        return settled(14)()

    wait_for(finished, what="the rebuild done")
    run = RebuildRun.objects.get(trigger="test")
    assert run.step == "done" and run.done == run.total == 14 and run.finished_at
    assert "re-embedded 1 stale" in run.message
    assert Product.objects.get(pk=products[0].pk).vector_key == vector_key_current()


def test_the_worker_child_caps_its_math_threads(worker, garments):
    """Each pool child caps numpy's BLAS and faiss's OpenMP at
    ``LOOKALIKE_WORKER_MATH_THREADS`` (1) before its first task, and still works."""
    products = create(garments, 0, 2)
    wait_for(settled(len(products)))
    lines = [line for line in worker.log_path.read_text(errors="replace").splitlines()
             if "math threads: " in line]
    assert lines, "no worker child reported its math threads"
    pools = lines[-1].split("math threads: ", 1)[1].split(", ")
    assert {"openblas 1", "openmp 1"} <= set(pools)
    assert all(pool.endswith(" 1") for pool in pools)
