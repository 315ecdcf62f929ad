"""Adoption of the measured configuration (docs/quality.md, "Adoption"): pad-margin@1 plus the
LDA-blend space. A catalog embedded under the reference (torchvision@1, raw euclidean) is
migrated by the rebuild without any list going missing, and the result is checked against a
brute-force recomputation in the projected space."""

from __future__ import annotations

import json
from collections.abc import Callable
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command
from PIL import Image

from catalog import engine
from catalog.engine import matrix_store
from catalog.models import Product
from catalog.selectors import photo_search
from catalog.selectors.storefront import product_neighbours, product_neighbours_state
from catalog.services.index_writer import index_writer
from catalog.services.indexing import index_apply
from catalog.services.product_embedding import products_embed_batch
from catalog.services.rebuild import similarity_rebuild, stale_products
from catalog.services.sweeps import reconcile
from catalog.space import (
    fit_params,
    projection_load,
    projection_path,
    projection_save,
    space_current,
)
from catalog.vectors import colour_from_bytes, colour_to_bytes, vector_key_current
from similarity.embedding.colour import COLOUR_KEY, LAB_HIST_V1, blend_colour
from similarity.embedding.projection import fit_blend, l2_normalise
from similarity.errors import StaleMatrixError
from tests.pipeline.helpers import fashion_images, stored_lists, upload

pytestmark = pytest.mark.django_db

K = 10


@pytest.fixture(scope="module")
def garments40(model_path) -> list[tuple[str, bytes]]:
    return fashion_images(4)  # 10 classes x 4


@pytest.fixture(autouse=True)
def fresh_search_index():
    photo_search.search_index_clear()
    yield
    photo_search.search_index_clear()


def create(garments: list[tuple[str, bytes]], start: int = 0) -> list[Product]:
    from catalog.services.products import product_create

    return [
        product_create(name=f"{cls} {i}", category=cls, image=upload(data, f"a{i}.png"))
        for i, (cls, data) in enumerate(garments, start=start)
    ]


def adopt(settings) -> None:
    settings.LOOKALIKE_PREPROCESS_POLICY = "pad-margin"
    settings.LOOKALIKE_SPACE = "lda-blend"
    engine.matrix_forget()
    photo_search.search_index_clear()


def raw_vectors(products: list[Product]) -> np.ndarray:
    return np.stack([np.frombuffer(bytes(p.vector), "<f4") for p in products])


def brute_force_lists(ids: list[int], z: np.ndarray) -> dict[int, list[tuple[int, float]]]:
    z = np.asarray(z, dtype=np.float64)
    dist = np.sqrt(np.maximum(((z[:, None, :] - z[None, :, :]) ** 2).sum(axis=2), 0.0))
    out = {}
    for i, pid in enumerate(ids):
        order = sorted((dist[i, j], ids[j]) for j in range(len(ids)) if j != i)[:K]
        out[pid] = [(nid, float(d)) for d, nid in order]
    return out


def assert_lists_match(expected: dict[int, list[tuple[int, float]]], z: np.ndarray,
                       ids: list[int]) -> None:
    """Stored lists equal the brute force: same distances rank by rank, every stored
    neighbour really at its stored distance (so only exact ties could reorder)."""
    index = {pid: i for i, pid in enumerate(ids)}
    stored = stored_lists()
    assert set(stored) == set(expected)
    for pid, want in expected.items():
        have = stored[pid]
        assert [r for r, _, _ in have] == list(range(1, len(want) + 1))
        for (_, nid, dist), (_, want_d) in zip(have, want, strict=True):
            real = float(np.linalg.norm(z[index[pid]] - z[index[nid]]))
            assert dist == pytest.approx(want_d, rel=1e-4, abs=1e-4)
            assert dist == pytest.approx(real, rel=1e-4, abs=1e-4)


def assert_search_matches(query_png: bytes, q: np.ndarray, z: np.ndarray, ids: list[int]) -> None:
    """Search by photo finds the brute force of the query ``q`` among ``z`` (same space)."""
    hits = photo_search.products_search_by_image(image_bytes=query_png, k=K)
    d = np.linalg.norm(z - q[None, :], axis=1)
    want = sorted(zip(d.tolist(), ids, strict=True))[:K]
    assert [p.pk for p, _ in hits] == [pid for _, pid in want]
    assert [dist for _, dist in hits] == pytest.approx([dd for dd, _ in want], rel=1e-4, abs=1e-4)


def evaluate_json() -> dict:
    out = StringIO()
    call_command("evaluate_similarity", "--json", stdout=out)
    return json.loads(out.getvalue())


def switch(adopt_it: Callable[[], None], ids: list[int]) -> tuple[dict, str]:
    """Every list written, switch the configuration: (the lists before, the new vector key);
    every product is then stale."""
    old_key = vector_key_current()
    old_lists = stored_lists()
    assert len(old_lists) == 40 and all(len(rows) == K for rows in old_lists.values())
    adopt_it()
    new_key = vector_key_current()
    assert new_key != old_key and stale_products() == sorted(ids)
    return old_lists, new_key


def old_lists_stay_visible(ids: list[int], new_key: str, old_lists: dict, client) -> None:
    """Before the rebuild: the reconcile sweep finds a stale matrix and must not empty lists;
    mid-migration (half re-embedded, what the rebuild's embed step does chunk by chunk) every
    product stays ready with its old list shown."""
    reconcile()
    assert stored_lists() == old_lists
    products_embed_batch(product_ids=ids[:20])
    assert Product.objects.filter(vector_key=new_key).count() == 20
    for pid in (ids[0], ids[30]):
        product = Product.objects.get(pk=pid)
        assert product.status == Product.Status.READY
        neighbours = product_neighbours(product=product)
        assert [(n.rank, n.neighbour_id, n.distance) for n in neighbours] == old_lists[pid]
        assert product_neighbours_state(product=product, neighbours=neighbours) == "ready"
        page = client.get(product.get_absolute_url()).text
        assert 'data-state="ready"' in page
        for n in neighbours:
            assert n.neighbour.get_absolute_url() in page
    assert stored_lists() == old_lists


def test_adoption_migrates_without_downtime(garments40, settings, client):
    # A catalog under the reference configuration, every list written.
    products = create(garments40)
    ids = [p.pk for p in products]
    index_apply(product_ids=products_embed_batch(product_ids=ids).to_index)
    assert vector_key_current().endswith("/torchvision@1+lab-hist@2")
    old_lists, new_key = switch(lambda: adopt(settings), ids)
    assert new_key.endswith("/pad-margin@1+lab-hist@2")
    assert space_current().key == "lda-blend:none"  # nothing fitted yet

    old_lists_stay_visible(ids, new_key, old_lists, client)

    # The beat rebuild: re-embeds the rest, fits the projection, rewrites every list.
    run = similarity_rebuild(trigger="test")
    assert "re-embedded 20 stale" in run.message
    after = list(Product.objects.order_by("pk"))
    assert {p.vector_key for p in after} == {new_key}
    assert {p.status for p in after} == {Product.Status.READY}
    assert stale_products() == []

    path = projection_path()
    assert path.is_file()
    with np.load(path, allow_pickle=False) as z:
        assert str(z["vector_key"][()]) == new_key
    projection, fitted_on = projection_load()
    assert fitted_on == new_key
    space = space_current()
    assert space.key == f"lda-blend:{projection.key}" and space.metric == "euclidean"
    assert space.dim == 1280 + 9
    assert fit_params([p.category for p in after])["pca_dim"] == 40 - 10 - 1
    store = matrix_store().store
    assert store.meta.policy == f"pad-margin@1+lda-blend:{projection.key}"
    assert len(store.load()) == 40

    # Lists = brute force on the projected stored vectors.
    z = projection.transform(raw_vectors(after))
    expected = brute_force_lists(ids, z)
    assert_lists_match(expected, z, ids)
    assert stored_lists() != old_lists

    # Search by photo projects the query with the stored projection.
    _, query_png = fashion_images(1, offset=500)[3]
    q = projection.transform(engine.embedder_get().embed(query_png))
    assert_search_matches(query_png, q, z, ids)

    # evaluate_similarity reads the result (optimistic: the projection saw these labels).
    figures = evaluate_json()
    assert figures["n"] == 40 and 0.0 <= figures["precision_at_10"] <= 1.0

    # A rebuild with nothing new changes nothing (same fit, same lists).
    again = similarity_rebuild(trigger="test")
    assert "re-embedded 0 stale" in again.message and "0 list(s) rewritten" in again.message
    assert projection_load()[0].key == projection.key


def test_incremental_adds_use_the_stored_projection(garments40, settings):
    adopt(settings)
    products = create(garments40[:30])
    similarity_rebuild(trigger="test")
    projection, _ = projection_load()

    late = create(garments40[30:], start=30)
    index_apply(product_ids=products_embed_batch(product_ids=[p.pk for p in late]).to_index)

    assert projection_load()[0].key == projection.key  # never refitted incrementally
    everything = list(Product.objects.order_by("pk"))
    assert {p.status for p in everything} == {Product.Status.READY}
    ids = [p.pk for p in everything]
    z = projection.transform(raw_vectors(everything))
    assert_lists_match(brute_force_lists(ids, z), z, ids)
    assert len(products) + len(late) == 40


def test_matrix_is_stale_when_the_projection_changes(garments40, settings):
    adopt(settings)
    create(garments40)
    similarity_rebuild(trigger="test")
    target = matrix_store()
    store = target.store
    store.load()
    old_meta = store.meta

    everything = list(Product.objects.order_by("pk"))
    other = fit_blend(raw_vectors(everything)[:30], [p.category for p in everything][:30],
                      weight=1.0, pca_dim=9, shrinkage=0.05)
    projection_save(other, vector_key_current())
    changed = matrix_store().store
    # A writer that built its store before the new projection was stored follows it once
    # it holds the lock (a rebuild refits while other writers wait).
    with index_writer(target):
        assert store.meta == changed.meta and target.space.key == f"lda-blend:{other.key}"
    assert changed.meta != old_meta
    with pytest.raises(StaleMatrixError):
        changed.load()
    # ... and the next writer rebuilds it in the stored (new) projection.
    index_apply(product_ids=[everything[0].pk])
    assert len(matrix_store().store.load()) == 40


def test_too_small_a_catalog_falls_back_to_cosine(garments40, settings):
    adopt(settings)
    products = create(garments40[:8])  # 8 products in 8 categories: nothing to fit
    assert fit_params([p.category for p in products]) is None
    similarity_rebuild(trigger="test")
    assert not projection_path().exists()
    space = space_current()
    assert (space.key, space.metric) == ("lda-blend:none", "cosine")
    everything = list(Product.objects.order_by("pk"))
    ids = [p.pk for p in everything]
    unit = l2_normalise(raw_vectors(everything))
    stored = stored_lists()
    for i, pid in enumerate(ids):
        sims = unit @ unit[i]
        order = [ids[j] for j in np.argsort(-sims, kind="stable") if j != i]
        assert [nid for _, nid, _ in stored[pid]] == order[: len(ids) - 1]


def test_raw_space_is_the_reference(settings):
    settings.LOOKALIKE_SPACE = "raw"
    space = space_current()
    assert (space.key, space.metric, space.dim, space.projection) == ("", "euclidean", 1280, None)
    assert matrix_store().store.meta.policy == "torchvision@1"


def test_near_duplicates_are_collapsed_in_written_lists(garments40, settings):
    adopt(settings)
    settings.LOOKALIKE_COLLAPSE_DUPLICATES = True
    base = create(garments40[:30])
    # The same picture uploaded three more times (copies of product 0 and of product 1).
    copies = create([garments40[0], garments40[0], garments40[1]], start=100)
    similarity_rebuild(trigger="test")
    groups = {base[0].pk: 0, copies[0].pk: 0, copies[1].pk: 0, base[1].pk: 1, copies[2].pk: 1}
    stored = stored_lists()
    assert len(stored) == 33
    for pid, rows in stored.items():
        assert len(rows) == K and [r for r, _, _ in rows] == list(range(1, K + 1))
        listed = [groups[nid] for _, nid, _ in rows if nid in groups]
        assert len(listed) == len(set(listed)), (pid, rows)
    # A copy's list keeps one copy of its own picture (the best ranked), not two.
    first = stored[copies[0].pk]
    assert sum(1 for _, nid, _ in first if groups.get(nid) == 0) == 1
    assert first[0][2] == pytest.approx(0.0, abs=1e-3)

    # Off: the copies fill places (what collapsing is for).
    settings.LOOKALIKE_COLLAPSE_DUPLICATES = False
    similarity_rebuild(trigger="test")
    assert sum(1 for _, nid, _ in stored_lists()[copies[0].pk] if groups.get(nid) == 0) == 2


# ---------------------------------------------------------------------------------------------
# The colour adoption: frame-margin (@3), the robust projection (fitted on augmented views at the
# rebuild) and the colour descriptor blended in.


def adopt_colour(settings, weight: float = 1.0) -> None:
    settings.LOOKALIKE_PREPROCESS_POLICY = "frame-margin"
    settings.LOOKALIKE_SPACE = "lda-blend"
    settings.LOOKALIKE_COLOUR_WEIGHT = weight
    settings.LOOKALIKE_PROJECTION_VIEWS = 4000
    engine.matrix_forget()
    photo_search.search_index_clear()


def colours_of(products: list[Product]) -> np.ndarray:
    return np.stack([np.frombuffer(bytes(p.colour), "<f4") for p in products])


def test_colour_adoption_migrates_without_downtime(garments40, settings, client):
    # A catalog under the last adoption (pad-margin@1 + lda-blend, no colour), lists written.
    adopt(settings)
    products = create(garments40)
    ids = [p.pk for p in products]
    similarity_rebuild(trigger="test")
    old_lists, new_key = switch(lambda: adopt_colour(settings), ids)
    assert new_key.endswith("/frame-margin@3+lab-hist@2")
    assert space_current().key == "lda-blend:none+colour:lab-hist@2:w=1"  # nothing fitted yet

    old_lists_stay_visible(ids, new_key, old_lists, client)
    assert Product.objects.filter(vector_key=new_key, colour_key="lab-hist@2").count() == 20

    # The rebuild: re-embeds the rest, embeds the views, fits the robust projection,
    # rewrites every list in the blended space.
    run = similarity_rebuild(trigger="test")
    assert "re-embedded 20 stale" in run.message
    after = list(Product.objects.order_by("pk"))
    assert {(p.vector_key, p.colour_key, p.status) for p in after} == {
        (new_key, "lab-hist@2", Product.Status.READY)}
    projection, fitted_on = projection_load()
    assert fitted_on == new_key and projection.visual is not None
    assert projection.lda.params["augmented"] == 80  # 2 views of each of the 40 products
    space = space_current()
    assert space.key == f"lda-blend:{projection.key}+colour:lab-hist@2:w=1"
    # LDA (9) + the garment-invariant visual half (512, lowered to 40 + 80 - 1) + colour (196).
    assert space.dim == 9 + 119 + 196 and space.colour_weight == 1.0
    store = matrix_store().store
    assert store.meta.policy == f"frame-margin@3+lda-blend:{projection.key}+colour:lab-hist@2:w=1"

    z = blend_colour(projection.transform(raw_vectors(after)), colours_of(after), 1.0)
    assert_lists_match(brute_force_lists(ids, z), z, ids)
    assert stored_lists() != old_lists

    # Search by photo: the query's vector and colour descriptor, from one decode.
    _, query_png = fashion_images(1, offset=500)[3]
    vector, colour = engine.embedder_get().embed_with_colour(query_png)
    assert_search_matches(query_png, blend_colour(projection.transform(vector), colour, 1.0), z, ids)

    # evaluate_similarity: both figures, labelled.
    figures = evaluate_json()
    assert figures["evaluation"] == "in-sample" and figures["n"] == 40
    held = figures["held_out"]
    assert held["evaluation"] == "held-out k-fold" and held["folds"] == 4 and held["n"] == 40
    assert 0.0 <= held["precision_at_10"] <= 1.0

    # A rebuild with nothing new changes nothing (same views, same fit, same lists).
    again = similarity_rebuild(trigger="test")
    assert "re-embedded 0 stale" in again.message and "0 list(s) rewritten" in again.message
    assert projection_load()[0].key == projection.key


def test_a_vector_stored_before_the_colour_descriptor_is_stale(garments40):
    """Products embedded before colour existed (vector key without ``+lab-hist@2``, no colour)
    are re-embedded by the rebuild, which stores their colour descriptor."""
    products = create(garments40[:12])
    ids = [p.pk for p in products]
    similarity_rebuild(trigger="test")
    pre_colour = vector_key_current().split("+")[0]
    Product.objects.filter(pk__in=ids[:5]).update(vector_key=pre_colour, colour=None, colour_key="")
    assert stale_products() == ids[:5]
    run = similarity_rebuild(trigger="test")
    assert "re-embedded 5 stale" in run.message
    assert stale_products() == []
    assert set(Product.objects.values_list("colour_key", flat=True)) == {"lab-hist@2"}


def test_a_colour_descriptor_of_the_previous_version_is_stale(garments40):
    """Products whose colour descriptor is lab-hist@1 (read on the 128 px framing) are stale:
    their colour counts as none until the rebuild re-embeds them under lab-hist@2, the one the
    embedder computes now."""
    products = create(garments40[:12])
    ids = [p.pk for p in products]
    similarity_rebuild(trigger="test")
    older_key = vector_key_current().replace(f"+{COLOUR_KEY}", f"+{LAB_HIST_V1.key}")
    for product in Product.objects.filter(pk__in=ids[:5]):
        older = LAB_HIST_V1.describe(Image.open(product.image.open("rb")))
        Product.objects.filter(pk=product.pk).update(vector_key=older_key, colour=colour_to_bytes(older),
                                                     colour_key=LAB_HIST_V1.key)
    stored = Product.objects.get(pk=ids[0])
    assert not colour_from_bytes(stored.colour, stored.colour_key).any()
    assert stale_products() == ids[:5]
    run = similarity_rebuild(trigger="test")
    assert "re-embedded 5 stale" in run.message and stale_products() == []
    for product in Product.objects.filter(pk__in=ids[:5]):
        data = product.image.open("rb").read()
        assert product.colour_key == COLOUR_KEY == "lab-hist@2"
        expected = engine.embedder_get().prepare_many([data], colour=True)[0].colour
        assert np.array_equal(colour_from_bytes(product.colour, product.colour_key), expected)
