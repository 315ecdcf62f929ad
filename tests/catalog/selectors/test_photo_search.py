
import numpy as np
import pytest
from django.utils import timezone

from catalog.engine import embedder_get
from catalog.models import Product
from catalog.selectors import photo_search
from catalog.vectors import vector_key_current
from similarity.errors import ImageRejected
from tests.catalog.readside import brute_force, image_bytes, make_product

pytestmark = pytest.mark.django_db


def _hits(results):
    return [(p.pk, d) for p, d in results]


def test_search_returns_the_brute_force_nearest(catalog_of_garments, query_photos, garments):
    from similarity.embedding.embedder import ImageEmbedder

    embedder = embedder_get()
    assert isinstance(embedder, ImageEmbedder)
    for photo in query_photos[:4]:
        data = image_bytes(photo)
        results = photo_search.products_search_by_image(image_bytes=data, k=10)
        expected = brute_force(embedder.embed(data), catalog_of_garments)
        assert [pid for pid, _ in _hits(results)] == [pid for pid, _ in expected]
        np.testing.assert_allclose([d for _, d in _hits(results)], [d for _, d in expected], rtol=1e-6)
        assert all(isinstance(p, Product) for p, _ in results)


def test_a_catalog_photo_finds_itself_first(catalog_of_garments, garments):
    target = catalog_of_garments[17]
    results = photo_search.products_search_by_image(image_bytes=image_bytes(garments.photos[17]), k=10)
    assert results[0][0] == target
    assert results[0][1] == pytest.approx(0.0, abs=1e-3)
    assert len(results) == 10


def test_search_is_the_same_class_mostly(catalog_of_garments, garments, query_photos):
    # Trousers (class 1) are the easiest class: most of the 10 nearest are trousers too.
    results = photo_search.products_search_by_image(image_bytes=image_bytes(query_photos[1]), k=10)
    assert sum(p.category == "Trouser" for p, _ in results) >= 3


def test_ties_are_broken_by_id(media_root, garments):
    v = garments.vectors[0]
    first = make_product("Twin A", vector=v)
    second = make_product("Twin B", vector=v)
    make_product("Other", vector=garments.vectors[30])
    results = photo_search.products_search_by_vector(vector=v, k=3)
    assert [p.name for p, _ in results] == ["Twin A", "Twin B", "Other"]
    assert results[0][1] == results[1][1] == 0.0
    assert first.pk < second.pk


def test_only_ready_products_are_searched(media_root, garments):
    v = garments.vectors[5]
    for status in (Product.Status.PENDING, Product.Status.PROCESSING, Product.Status.FAILED):
        make_product(f"Not ready {status}", status=status, vector=v)
    ready = make_product("Ready", vector=garments.vectors[6])
    make_product("Ready without vector")  # no vector stored: never a result
    results = photo_search.products_search_by_vector(vector=v, k=10)
    assert [p for p, _ in results] == [ready]


def test_cache_is_reused_and_invalidated_when_a_product_becomes_ready(
    media_root, garments, django_assert_max_num_queries
):
    v = garments.vectors[9]
    make_product("A", vector=garments.vectors[0])
    late = make_product("Late", status=Product.Status.PENDING, vector=v)
    assert late not in [p for p, _ in photo_search.products_search_by_vector(vector=v)]
    index = photo_search._index
    # A second search only runs the key query and the product fetch: the vectors stay cached.
    with django_assert_max_num_queries(2):
        photo_search.products_search_by_vector(vector=v)
    assert photo_search._index is index

    late.status = Product.Status.READY
    late.save()
    assert photo_search.products_search_by_vector(vector=v)[0][0] == late
    assert photo_search._index is not index


def test_cache_sees_queryset_updates_and_deletions(media_root, garments):
    v = garments.vectors[3]
    keep = make_product("Keep", vector=garments.vectors[20])
    late = make_product("Late", status=Product.Status.PENDING, vector=v)
    photo_search.products_search_by_vector(vector=v)
    Product.objects.filter(pk=late.pk).update(status=Product.Status.READY, status_changed_at=timezone.now())
    assert photo_search.products_search_by_vector(vector=v)[0][0].pk == late.pk
    late.delete()
    assert [p for p, _ in photo_search.products_search_by_vector(vector=v)] == [keep]


def test_cosine_metric(media_root, settings, garments):
    settings.LOOKALIKE_METRIC = "cosine"
    products = [make_product(vector=garments.vectors[i]) for i in range(0, 40, 3)]
    q = garments.vectors[1].astype(np.float64)
    results = photo_search.products_search_by_vector(vector=garments.vectors[1], k=5)
    ref = []
    for p in products:
        x = p.vector_array().astype(np.float64)
        ref.append((float(np.float32(1 - x @ q / np.linalg.norm(x) / np.linalg.norm(q))), p.pk))
    ref.sort()
    assert [p.pk for p, _ in results] == [pid for _, pid in ref[:5]]
    np.testing.assert_allclose([d for _, d in results], [d for d, _ in ref[:5]], atol=1e-6)


def test_stale_vectors_are_not_searched(media_root, garments):
    v = garments.vectors[2]
    stale = make_product("Stale", vector=v)
    Product.objects.filter(pk=stale.pk).update(vector_key="old-model/old-policy")
    fresh = make_product("Fresh", vector=garments.vectors[25])
    assert [p for p, _ in photo_search.products_search_by_vector(vector=v)] == [fresh]


def test_bad_image_is_rejected_with_its_reason(media_root):
    with pytest.raises(ImageRejected) as info:
        photo_search.products_search_by_image(image_bytes=b"not an image at all")
    assert info.value.reason == "unreadable"


def test_search_at_ten_thousand_equals_brute_force(media_root, garments, query_photos):
    rng = np.random.default_rng(0)
    base = garments.vectors[rng.integers(0, len(garments.vectors), 10_000)]
    vectors = (base + rng.normal(0, 0.05, base.shape) * base.std()).astype("<f4")
    now = timezone.now()
    Product.objects.bulk_create(
        [
            Product(
                name=f"Bulk {i}", slug=f"bulk-{i}", category="Bulk", image=f"products/bulk-{i}.png",
                status=Product.Status.READY, vector=vectors[i].tobytes(), vector_key=vector_key_current(),
                status_changed_at=now,
            )
            for i in range(10_000)
        ],
        batch_size=1000,
    )
    data = image_bytes(query_photos[3])
    # Its speed is measured in bench/search_bench.py, not asserted here.
    cold = photo_search.products_search_by_image(image_bytes=data)  # loads the 10,000 vectors
    warm = photo_search.products_search_by_image(image_bytes=data)  # served from the cache
    assert len(warm) == 10
    assert _hits(cold) == _hits(warm)
    # The same answer as brute force over all 10,000.
    q = embedder_get().embed(data).astype(np.float64)
    d = np.linalg.norm(vectors.astype(np.float64) - q, axis=1).astype(np.float32)
    ids = np.array(sorted(Product.objects.values_list("pk", flat=True)))
    order = np.lexsort((ids, d))[:10]
    assert [p.pk for p, _ in warm] == ids[order].tolist()


@pytest.fixture
def topk_store(settings, tmp_path):
    from catalog import engine

    settings.LOOKALIKE_INDEX_LAYOUT = "topk"
    settings.LOOKALIKE_MATRIX_DIR = tmp_path / "matrix"
    engine.matrix_forget()
    return engine.matrix_store().store


def _index(store, products):
    ids = np.array([p.pk for p in products], np.int64)
    return store.rebuild(ids, np.stack([p.vector_array() for p in products]))


def test_a_top_k_index_is_searched_in_place(topk_store, catalog_of_garments, query_photos):
    index = _index(topk_store, catalog_of_garments)
    assert index.layout == "topk" and topk_store.stored_layout() == "topk"
    embedder = embedder_get()
    for photo in query_photos[:3]:
        data = image_bytes(photo)
        results = photo_search.products_search_by_image(image_bytes=data, k=10)
        expected = brute_force(embedder.embed(data), catalog_of_garments)
        assert _hits(results) == [(pid, pytest.approx(d, rel=1e-6)) for pid, d in expected]


def test_the_top_k_search_follows_changes_and_skips_products_not_ready(
        topk_store, catalog_of_garments, garments):
    index = _index(topk_store, catalog_of_garments[:30])
    query = garments.vectors[35]
    # A product indexed by the writer, its status not flipped yet: not shown.
    late = catalog_of_garments[35]
    Product.objects.filter(pk=late.pk).update(status=Product.Status.PROCESSING)
    topk_store.upsert(index, [late.pk], late.vector_array()[None, :])
    results = photo_search.products_search_by_vector(vector=query, k=10)
    assert late.pk not in [p.pk for p, _ in results] and len(results) == 10
    # Ready now: the next search replays the delta and finds it first.
    Product.objects.filter(pk=late.pk).update(status=Product.Status.READY)
    results = photo_search.products_search_by_vector(vector=query, k=10)
    assert results[0][0].pk == late.pk and results[0][1] == 0.0
    expected = brute_force(query, [*catalog_of_garments[:30], late])
    assert [p.pk for p, _ in results] == [pid for pid, _ in expected]
