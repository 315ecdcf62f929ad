"""Colour in the product: a small real catalog of dyed Fashion-MNIST garments, the
real weights, the real embed → rebuild → index path, in the adopted configuration
(frame-margin@3, robust lda-blend fitted on augmented views, colour blended in)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from catalog.engine import matrix_store
from catalog.models import Product
from catalog.selectors import photo_search
from catalog.services.indexing import index_apply
from catalog.services.product_embedding import products_embed_batch
from catalog.services.products import product_create
from catalog.services.rebuild import similarity_rebuild
from catalog.space import projection_load, space_current
from similarity.embedding.colour import COLOUR_KEY, blend_colour
from similarity.embedding.framing import find_garment
from similarity.errors import StaleMatrixError
from similarity.evaluation import fashion_mnist
from similarity.evaluation.shots import DYES, catalog_shot, render
from tests.catalog.services.test_adoption import (
    adopt_colour,
    assert_lists_match,
    brute_force_lists,
    colours_of,
    raw_vectors,
)
from tests.pipeline.helpers import dyed_garments, png_bytes, stored_lists, upload

pytestmark = pytest.mark.django_db

CLASSES = ("Trouser", "Dress", "Sneaker", "Bag")
COLOURS = ("red", "navy", "green")
PER = 3  # garments per class and dye: 36 products


@pytest.fixture(scope="module")
def dyed(model_path) -> list[tuple[str, str, bytes]]:
    return dyed_garments(CLASSES, COLOURS, PER)


@pytest.fixture(scope="module")
def newcomers(model_path) -> list[tuple[str, str, bytes]]:
    """Garments none of the catalog's: one of every class in red and one in navy."""
    return dyed_garments(CLASSES, ("red", "navy"), 1, offset=100)


@pytest.fixture(autouse=True)
def fresh_search_index():
    photo_search.search_index_clear()
    yield
    photo_search.search_index_clear()


def create(items: list[tuple[str, str, bytes]]) -> dict[int, tuple[str, str]]:
    """Products named '<dye> <class> <i>'; returns id -> (class, dye)."""
    out = {}
    for i, (cls, dye, data) in enumerate(items):
        p = product_create(name=f"{dye} {cls} {i}", category=cls, image=upload(data, f"d{i}.png"))
        out[p.pk] = (cls, dye)
    return out


def same_dye_share(lists: dict[int, list[tuple[int, int, float]]], kinds: dict[int, tuple[str, str]],
                   top: int = PER - 1) -> float:
    """Of the first ``top`` places of every list, the share holding the query's class and dye."""
    hits = [kinds[nid] == kinds[pid] for pid, rows in lists.items() for _, nid, _ in rows[:top]]
    return float(np.mean(hits))


def blended(products: list[Product], weight: float) -> np.ndarray:
    projection, _ = projection_load()
    return blend_colour(projection.transform(raw_vectors(products)), colours_of(products), weight)


def own_colour_first(listed: list[tuple[str, str]], cls: str, dye: str) -> bool:
    """Inside the query's category, every garment of its dye ranks before any of another."""
    dyes = [d for c, d in listed if c == cls]
    return dye in dyes and dyes == sorted(dyes, key=lambda d: d != dye)


def test_a_coloured_garment_gets_its_own_colour_before_others_of_its_category(dyed, newcomers, settings):
    adopt_colour(settings)
    kinds = create(dyed)
    similarity_rebuild(trigger="test")
    projection, _ = projection_load()
    assert projection.visual is not None  # the robust projection, fitted with views
    assert projection.lda.params["augmented"] == 2 * len(kinds)

    # Search by photo (the query's own colour descriptor is used): its colour comes first.
    for cls, dye, data in newcomers:
        listed = [kinds[p.pk] for p, _ in photo_search.products_search_by_image(image_bytes=data, k=10)]
        assert listed[0][1] == dye and own_colour_first(listed, cls, dye), (cls, dye, listed)

    # Uploaded and indexed incrementally: its stored list, the same.
    cls, dye, data = newcomers[1]  # a red dress
    new = product_create(name=f"{dye} {cls} new", category=cls, image=upload(data, "new.png"))
    index_apply(product_ids=products_embed_batch(product_ids=[new.pk]).to_index)
    new.refresh_from_db()
    assert new.colour_key == COLOUR_KEY and len(bytes(new.colour)) == 196 * 4
    listed = [kinds[nid] for _, nid, _ in stored_lists()[new.pk]]
    assert listed[0][1] == dye and own_colour_first(listed, cls, dye), listed


def test_changing_the_colour_weight_re_ranks_after_the_rebuild(dyed, settings):
    adopt_colour(settings, weight=1.0)
    kinds = create(dyed)
    similarity_rebuild(trigger="test")
    with_colour = stored_lists()
    key = space_current().key
    assert key.endswith(f"+colour:{COLOUR_KEY}:w=1")
    assert matrix_store().store.meta.policy.endswith(f"+colour:{COLOUR_KEY}:w=1")
    everything = list(Product.objects.order_by("pk"))
    ids = [p.pk for p in everything]
    z = blended(everything, 1.0)
    assert_lists_match(brute_force_lists(ids, z), z, ids)

    # Colour off: another space key, so the stored matrix is stale until the rebuild.
    adopt_colour(settings, weight=0.0)
    assert space_current().key == key.split("+colour:")[0]
    with pytest.raises(StaleMatrixError):
        matrix_store().store.load()
    run = similarity_rebuild(trigger="test")
    assert "re-embedded 0 stale" in run.message  # nothing to re-embed: only the space changed
    shape_only = stored_lists()
    assert shape_only != with_colour
    # The 2 nearest of every product: the other 2 of its class and dye, with colour nearly
    # always (measured 0.97), by shape alone much less often (0.81).
    assert same_dye_share(with_colour, kinds) >= 0.95
    assert same_dye_share(with_colour, kinds) > same_dye_share(shape_only, kinds) + 0.1
    projection, _ = projection_load()
    z = projection.transform(raw_vectors(everything))
    assert_lists_match(brute_force_lists(ids, z), z, ids)

    # And back: the same fit, the same lists as before.
    adopt_colour(settings, weight=1.0)
    similarity_rebuild(trigger="test")
    assert stored_lists() == with_colour


def busy_photo(seed: int = 3) -> bytes:
    """A red dress laid on a busy, textured scene (random coloured blocks plus noise)."""
    images, labels = fashion_mnist.load_split("train")
    i = int(np.flatnonzero(labels == fashion_mnist.CLASS_NAMES.index("Dress"))[200])
    garment = np.asarray(render(images[i], DYES["red"], catalog_shot()), dtype=np.float64)
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (29, 29, 3)).astype(np.uint8)
    scene = np.asarray(Image.fromarray(blocks).resize((224, 224), Image.Resampling.NEAREST), np.float64)
    scene += rng.normal(0, 25, scene.shape)
    mask = (garment.min(axis=2) < 235)[..., None]
    return png_bytes(Image.fromarray(np.clip(np.where(mask, garment, scene), 0, 255).astype(np.uint8)))


def test_a_busy_background_photo_still_embeds(dyed, settings):
    adopt_colour(settings)
    create(dyed[:12])
    data = busy_photo()
    assert not find_garment(Image.open(io.BytesIO(data))).found  # framing falls back to the whole image
    busy = product_create(name="busy", category="Dress", image=upload(data, "busy.png"))
    outcome = products_embed_batch(product_ids=[busy.pk])
    assert outcome.failed == [] and busy.pk in outcome.embedded
    busy.refresh_from_db()
    assert busy.status != Product.Status.FAILED and busy.vector is not None
    assert busy.colour_key == COLOUR_KEY
    colour = np.frombuffer(bytes(busy.colour), "<f4")
    assert np.isfinite(colour).all() and np.linalg.norm(colour) == pytest.approx(1.0, abs=1e-5)
    similarity_rebuild(trigger="test")
    assert Product.objects.get(pk=busy.pk).status == Product.Status.READY
    assert len(stored_lists()[busy.pk]) == 10
    assert len(photo_search.products_search_by_image(image_bytes=data, k=5)) == 5
