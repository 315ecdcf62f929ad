"""products_embed + index_apply called directly, with the real engine, against brute force."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.engine import matrix_store
from catalog.models import Product, ProductNeighbour
from catalog.services import queue
from catalog.services.indexing import index_apply, index_remove, index_repair
from catalog.services.neighbour_sync import _first_difference
from catalog.services.product_embedding import products_embed, products_embed_batch
from catalog.services.products import product_create, product_delete
from catalog.vectors import vector_key_current
from tests.pipeline.helpers import K, brute_force, neighbour_mismatches, stored_lists, upload

pytestmark = pytest.mark.django_db


def embed_and_index(products):
    ids = [p.pk for p in products]
    outcome = products_embed_batch(product_ids=ids)
    return outcome, index_apply(product_ids=outcome.to_index)


def snapshot():
    return (
        sorted(ProductNeighbour.objects.values_list("product_id", "rank", "neighbour_id", "distance")),
        sorted(Product.objects.values_list("pk", "status", "vector_key")),
    )


def test_embed_stores_vectors_and_queues_indexing(make_products, django_capture_on_commit_callbacks):
    products = make_products(4)
    ids = [p.pk for p in products]
    with django_capture_on_commit_callbacks() as callbacks:
        products_embed(product_ids=ids)
    assert [(cb.task, cb.kwargs) for cb in callbacks] == [(queue.INDEX, {"product_ids": ids})]
    for p in Product.objects.filter(pk__in=ids):
        assert p.status == Product.Status.PROCESSING
        assert p.vector_key == vector_key_current()
        assert p.embedded_image_sha256 == p.image_sha256
        vec = p.vector_array()
        assert vec.shape == (1280,) and np.isfinite(vec).all() and vec.any()


def test_embedding_is_idempotent(make_products):
    products = make_products(3)
    ids = [p.pk for p in products]
    first = products_embed_batch(product_ids=ids)
    vectors = {p.pk: bytes(p.vector) for p in Product.objects.filter(pk__in=ids)}
    second = products_embed_batch(product_ids=ids)
    assert sorted(first.embedded) == ids and second.embedded == [] and sorted(second.current) == ids
    assert {p.pk: bytes(p.vector) for p in Product.objects.filter(pk__in=ids)} == vectors


def test_index_writes_brute_force_neighbours_and_marks_ready(make_products):
    products = make_products(20)
    _, rewritten = embed_and_index(products)
    assert rewritten == {p.pk for p in products}
    assert set(Product.objects.values_list("status", flat=True)) == {Product.Status.READY}
    lists = stored_lists()
    assert all(len(rows) == K for rows in lists.values())
    assert neighbour_mismatches() == []
    matrix = matrix_store().store.load()
    assert sorted(matrix.ids.tolist()) == sorted(p.pk for p in products)


def test_small_catalog_has_n_minus_one_neighbours(make_products):
    products = make_products(4)
    embed_and_index(products)
    assert {pid: len(rows) for pid, rows in stored_lists().items()} == {p.pk: 3 for p in products}
    assert neighbour_mismatches() == []


def test_index_twice_leaves_the_same_state(make_products):
    products = make_products(12)
    embed_and_index(products)
    before = snapshot()
    assert index_apply(product_ids=[p.pk for p in products]) == set()
    assert snapshot() == before


def test_adding_one_rewrites_exactly_the_lists_that_changed(make_products):
    products = make_products(16)
    embed_and_index(products)
    old, _ = brute_force(list(Product.objects.order_by("pk")))
    new = make_products(1, start=16)[0]
    _, rewritten = embed_and_index([new])
    now, _ = brute_force(list(Product.objects.order_by("pk")))
    changed = {pid for pid in old if [n for n, _ in old[pid]] != [n for n, _ in now[pid]]}
    assert rewritten == changed | {new.pk}
    assert neighbour_mismatches() == []


def test_delete_then_remove_repairs_every_list(make_products, django_capture_on_commit_callbacks):
    products = make_products(14)
    embed_and_index(products)
    victim = products[3]
    holders = set(
        ProductNeighbour.objects.filter(neighbour=victim).values_list("product_id", flat=True)
    )
    assert holders
    with django_capture_on_commit_callbacks(execute=False):
        product_delete(product=victim)
    # The cascade removed the rows; the lists that held it are one short until repaired.
    assert all(len(stored_lists()[h]) == K - 1 for h in holders)
    rewritten = index_remove(product_ids=[victim.pk])
    assert rewritten == holders
    assert victim.pk not in matrix_store().store.load()
    assert all(len(rows) == K for rows in stored_lists().values())
    assert neighbour_mismatches() == []


def test_a_ghost_in_a_list_being_written_leaves_the_matrix_first(make_products, garments):
    """A product deleted behind the services' back (no task for it) is met in a list an index
    task writes: it leaves the matrix before the lists are written, and every list is exact."""
    products = make_products(13)
    embed_and_index(products)
    ghost = products[0]
    Product.objects.filter(pk=ghost.pk).delete()
    assert index_apply(product_ids=[products[1].pk]) == set()  # nothing to do: nothing read
    assert ghost.pk in matrix_store().store.load()
    cls, data = garments[0]  # the ghost's own image: the ghost is the new product's nearest
    twin = product_create(name="twin", category=cls, image=upload(data, "twin.png"))
    embed_and_index([twin])
    assert ghost.pk not in matrix_store().store.load()
    assert neighbour_mismatches() == []


def test_a_ghost_no_task_meets_leaves_at_the_reconcile_sweep(make_products):
    products = make_products(12)
    embed_and_index(products)
    Product.objects.filter(pk=products[4].pk).delete()
    assert products[4].pk in matrix_store().store.load()
    assert index_repair()["removed"] == 1
    assert products[4].pk not in matrix_store().store.load()
    assert neighbour_mismatches() == []


def test_rejected_image_in_worker_marks_failed_permanently(make_products):
    products = make_products(12)
    embed_and_index(products[:11])
    bad = products[11]
    with bad.image.storage.open(bad.image.name, "wb") as fh:  # corrupted after upload
        fh.write(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    outcome, _ = embed_and_index([bad])
    bad.refresh_from_db()
    assert outcome.failed == [bad.pk]
    assert bad.status == Product.Status.FAILED
    assert bad.error_message.startswith("truncated: ")
    assert bad.vector is None
    assert not ProductNeighbour.objects.filter(neighbour=bad).exists()
    assert neighbour_mismatches() == []


def test_image_change_while_in_matrix_replaces_the_vector(make_products, garments):
    from catalog.services.products import product_update
    from tests.pipeline.helpers import upload

    products = make_products(15)
    embed_and_index(products)
    target = products[0]
    product_update(product=target, image=upload(garments[19][1], "new.png"))
    target.refresh_from_db()
    assert target.status == Product.Status.PENDING
    embed_and_index([target])
    target.refresh_from_db()
    assert target.status == Product.Status.READY
    assert target.embedded_image_sha256 == target.image_sha256
    assert neighbour_mismatches() == []


def test_failed_product_leaves_the_matrix(make_products):
    products = make_products(12)
    embed_and_index(products)
    Product.objects.filter(pk=products[5].pk).update(
        status=Product.Status.FAILED, vector=None, vector_key=""
    )
    index_apply(product_ids=[products[5].pk])
    assert products[5].pk not in matrix_store().store.load()
    assert not ProductNeighbour.objects.filter(product=products[5]).exists()
    assert neighbour_mismatches() == []


def test_repair_fixes_drifted_rows(make_products):
    products = make_products(12)
    embed_and_index(products)
    ProductNeighbour.objects.filter(product=products[2]).delete()
    ProductNeighbour.objects.filter(product=products[4], rank=1).update(distance=99.0)
    result = index_repair()
    assert result["lists_rewritten"] == 2
    assert neighbour_mismatches() == []


def test_unreadable_matrix_is_rebuilt_from_the_database(make_products, fresh_matrix):
    from catalog import engine

    products = make_products(11)
    embed_and_index(products)
    for f in fresh_matrix.glob("*.npz"):
        f.write_bytes(b"garbage")
    engine.matrix_forget()
    index_apply(product_ids=[products[0].pk])
    assert sorted(matrix_store().store.load().ids.tolist()) == sorted(p.pk for p in products)
    assert neighbour_mismatches() == []


def test_stale_matrix_is_rebuilt_and_a_full_rebuild_queued(
    make_products, settings, django_capture_on_commit_callbacks
):
    from catalog import engine

    products = make_products(11)
    embed_and_index(products)
    settings.LOOKALIKE_METRIC = "cosine"  # the stored matrix was built for euclidean
    engine.matrix_forget()
    with django_capture_on_commit_callbacks() as callbacks:
        index_apply(product_ids=[products[0].pk])
    assert sorted(matrix_store().store.load().ids.tolist()) == sorted(p.pk for p in products)
    assert [cb.task for cb in callbacks] == [queue.REBUILD]


def _matrix_files():
    return sorted(path.name for path in matrix_store().store.directory.iterdir())


def test_an_index_task_takes_along_the_embedded_products_behind_it(make_products):
    products = make_products(12)
    ids = [p.pk for p in products]
    products_embed_batch(product_ids=ids)
    index_apply(product_ids=ids[:1])
    assert set(Product.objects.values_list("status", flat=True)) == {Product.Status.READY}
    assert sorted(matrix_store().store.load().ids.tolist()) == ids
    assert neighbour_mismatches() == []


def test_a_task_for_products_already_indexed_does_not_touch_the_lists(make_products):
    """The tasks of products an earlier task took along: no matrix delta, and the neighbour
    table is not even read (that comparison was most of such a task's cost)."""
    products = make_products(12)
    embed_and_index(products)
    before, files = snapshot(), _matrix_files()
    with CaptureQueriesContext(connection) as queries:
        assert index_apply(product_ids=[p.pk for p in products[4:8]]) == set()
    assert not [q["sql"] for q in queries.captured_queries
                if ProductNeighbour._meta.db_table in q["sql"]]
    assert snapshot() == before
    assert _matrix_files() == files


def test_an_index_task_reads_the_products_involved_not_the_catalog(make_products):
    """Every product-table query of an ordinary index task is filtered (by id, or the few
    products awaiting the index): no read of every id, which at a million products would
    cost more than the add itself."""
    products = make_products(14)
    embed_and_index(products[:13])
    products_embed_batch(product_ids=[products[13].pk])
    with CaptureQueriesContext(connection) as queries:
        assert index_apply(product_ids=[products[13].pk])
    table = Product._meta.db_table
    on_products = [q["sql"] for q in queries.captured_queries
                   if f'FROM "{table}"' in q["sql"] and q["sql"].startswith("SELECT")]
    assert on_products
    assert [sql for sql in on_products if " WHERE " not in sql] == []
    assert neighbour_mismatches() == []


def test_a_vector_the_matrix_lacks_is_indexed_even_if_marked_indexed(make_products):
    """``indexed_as`` is only trusted when the matrix holds the product's vector: a product
    re-embedded while a task marked it (same key, other bytes) is indexed again."""
    products = make_products(12)
    embed_and_index(products)
    victim, donor = products[2], Product.objects.get(pk=products[9].pk)
    Product.objects.filter(pk=victim.pk).update(vector=bytes(donor.vector))
    assert index_apply(product_ids=[victim.pk])
    matrix = matrix_store().store.load()
    row = matrix.ids.tolist().index(victim.pk)
    assert np.array_equal(np.asarray(matrix.vectors[row]), donor.vector_array())
    assert neighbour_mismatches() == []


def test_indexing_records_the_vector_the_lists_were_written_for(make_products):
    products = make_products(5)
    embed_and_index(products)
    for p in Product.objects.filter(pk__in=[p.pk for p in products]):
        assert p.indexed_as == f"{p.vector_key}:{p.embedded_image_sha256}"


@pytest.mark.parametrize(("stored", "wanted", "first"), [
    ([], [], None),
    ([(1, 7, 0.5), (2, 8, 0.6)], [(7, 0.5), (8, 0.6)], None),
    ([(1, 7, 0.5), (2, 8, 0.6)], [(7, 0.5), (9, 0.55), (8, 0.6)], 2),   # one enters at rank 2
    ([(1, 7, 0.5), (2, 8, 0.6)], [(7, 0.5)], 2),                        # the list shrank
    ([(1, 7, 0.5)], [(7, 0.5), (8, 0.6)], 2),                           # the list grew
    ([(1, 7, 0.5), (2, 8, 0.6)], [(7, 0.25), (8, 0.6)], 1),             # a distance changed
    ([], [(7, 0.5)], 1),
])
def test_lists_are_rewritten_from_their_first_changed_rank(stored, wanted, first):
    assert _first_difference(stored, wanted) == first
