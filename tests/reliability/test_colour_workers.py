"""A real worker process running the product's default configuration
(``config.settings.local``: frame-margin@3, lda-blend, the colour weight chosen by the rebuild,
views) with lists across the catalog: it embeds, indexes and rebuilds dyed garments uploaded
through the services. Every list puts the garment's own dye before the other dyes of its class,
and its distances equal a brute force in the blended space (cosine until a rebuild fits the
projection). Lists inside the category have their own tests (test_category_lists.py)."""

from __future__ import annotations

import numpy as np
import pytest
from django.conf import settings as django_settings

from catalog.models import Product, RebuildRun
from catalog.services import queue
from catalog.services.products import products_bulk_create
from catalog.space import projection_load, space_current
from catalog.vectors import vector_key_current
from similarity.embedding.colour import COLOUR_KEY
from tests.catalog.services.test_adoption import (
    adopt_colour,
    brute_force_lists,
    colours_of,
    raw_vectors,
)
from tests.catalog.services.test_colour import (  # 36 products: 4 classes x 3 dyes x 3
    CLASSES,
    COLOURS,
    PER,
    own_colour_first,
    same_dye_share,
)
from tests.pipeline.helpers import dyed_garments, stored_lists
from tests.reliability.support import upload, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def _upload_dyed() -> dict[int, tuple[str, str]]:
    """The dyed catalog, one bulk upload per class; id -> (class, dye)."""
    kinds: dict[int, tuple[str, str]] = {}
    items = dyed_garments(CLASSES, COLOURS, PER)
    for cls in CLASSES:
        mine = [(dye, data) for c, dye, data in items if c == cls]
        made = products_bulk_create(files=[upload(data, f"{dye}.png") for dye, data in mine],
                                    category=cls)
        kinds.update({p.pk: (cls, dye) for p, (dye, _) in zip(made, mine, strict=True)})
    return kinds


def _assert_cosine_brute_force(products: list[Product]) -> None:
    """Stored distances equal a brute force in the blended space (cosine before any fit:
    1 - cos = |a - b|² / 2 on unit vectors)."""
    space = space_current()
    assert space.key.endswith(f"+colour:{COLOUR_KEY}:w=1") and space.metric == "cosine"
    ids = [p.pk for p in products]
    z = space.apply(raw_vectors(products), colours_of(products)).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    stored = stored_lists()
    for pid, want in brute_force_lists(ids, z).items():
        assert [d for _, _, d in stored[pid]] == pytest.approx(
            [0.5 * d * d for _, d in want], rel=1e-4, abs=1e-5)


def test_workers_in_the_default_configuration_put_a_garments_own_colour_first(harness, settings):
    adopt_colour(settings)  # this process reads what the workers write the same way
    harness.start_workers("colour", queues="embed,index,rebuild", env={
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "LOOKALIKE_LOCK_URL": django_settings.LOOKALIKE_LOCK_URL,
        # A garment's 10 nearest across the catalog: inside its class they are its own dye
        # first. Lists inside the category hold all 8 others of its class, not only those.
        "LOOKALIKE_LISTS_WITHIN_CATEGORY": "false",
    })
    kinds = _upload_dyed()
    wait_for(lambda: Product.objects.filter(status=Product.Status.READY).count() == len(kinds),
             timeout=180, what="the dyed garments ready")
    products = list(Product.objects.order_by("pk"))
    assert {(p.vector_key, p.colour_key) for p in products} == {(vector_key_current(), COLOUR_KEY)}
    assert vector_key_current().endswith("/frame-margin@3+lab-hist@2")
    _assert_cosine_brute_force(products)
    for pid, rows in stored_lists().items():  # inside its class, its own dye first
        cls, dye = kinds[pid]
        listed = [kinds[nid] for _, nid, _ in rows]
        assert own_colour_first(listed, cls, dye), (cls, dye, listed)

    # The rebuild (on the rebuild worker) fits the robust projection on the catalog and its
    # shopper-style views: the 2 nearest of a garment are then nearly always the other 2 of
    # its class and dye (in-process, the same catalog measured 0.97).
    queue.rebuild_enqueue(trigger="test")
    wait_for(lambda: RebuildRun.objects.filter(state=RebuildRun.State.DONE).exists(),
             timeout=300, what="the rebuild done")
    projection, _ = projection_load()
    assert projection.visual is not None and projection.lda.params["augmented"] == 2 * len(kinds)
    assert same_dye_share(stored_lists(), kinds) >= 0.95
