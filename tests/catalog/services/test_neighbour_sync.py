"""Near-duplicates collapsed in written lists, together with the shop's rules, through the
services and the real index writer, in both layouts, with lists across the catalog and inside
categories: random sequences of creates, copies of a product's picture (the same vector, the
vector moved a little, or the same image bytes), vector changes, deletes, availability flips,
pins, exclusions, lifted rules and further photos; after each step every stored list equals the
brute force (tests/rules_reference.py ``brute_collapsed``): the pins stay at their ranks, a
product is left out when it is a near-duplicate of a pinned product or of one ranked before it,
and the list is filled from the next distinct products."""

from __future__ import annotations

import numpy as np
import pytest
from django.utils import timezone

from catalog.models import ListRule, Product, ProductNeighbour, ProductPhoto
from catalog.services import merchandising
from catalog.services.indexing import index_apply
from catalog.services.product_photos import product_photo_remove
from catalog.services.products import product_update, products_delete
from catalog.task_names import INDEX, REMOVE
from catalog.vectors import vector_key_current
from tests.rules_reference import LIMIT, expected_lists, mismatches, out_of_lists

pytestmark = pytest.mark.django_db

CATEGORIES = ["Coat", "Dress", ""]
DIM = 1280


def _tag(rng: np.random.Generator) -> str:
    return f"{int(rng.integers(1 << 60)):064d}"


def _picture(rng: np.random.Generator, pool: np.ndarray) -> np.ndarray:
    """A picture's vector: one of the pool (ties and exact copies are frequent)."""
    return pool[int(rng.integers(len(pool)))]


def _copy_of(rng: np.random.Generator, source: Product) -> tuple[np.ndarray, str]:
    """(vector, image sha) of a near-duplicate of ``source``: its very vector and bytes, its
    vector under another sha, its vector moved a little (re-encoded), or its bytes (sha) alone."""
    vector = np.frombuffer(bytes(source.vector), "<f4").copy()
    how = str(rng.choice(["same", "vector", "moved", "sha"]))
    if how == "moved":
        vector = vector + rng.normal(scale=0.01, size=DIM).astype(np.float32)
    elif how == "sha":
        vector = rng.normal(size=DIM).astype(np.float32)
    return vector, (source.image_sha256 if how in ("same", "sha") else _tag(rng))


def _create(rng: np.random.Generator, vector: np.ndarray, sha: str | None = None) -> int:
    tag = _tag(rng)
    return Product.objects.create(
        name=f"p{tag[-6:]}", slug=f"p-{tag}", sku=f"s{tag[-20:]}",
        category=str(rng.choice(CATEGORIES)), image=f"x/{tag}.png",
        image_sha256=sha or tag, embedded_image_sha256=sha or tag,
        status=Product.Status.PROCESSING, status_changed_at=timezone.now(),
        vector_key=vector_key_current(), vector=vector.astype("<f4").tobytes(),
    ).pk


def _photo_step(rng: np.random.Generator, pool: np.ndarray, product: Product) -> None:
    """A further photo added or removed: the product's vector moves, its main photo stays."""
    photo = product.photos.first()
    if photo is not None:
        product_photo_remove(photo=photo)
        return
    tag = _tag(rng)
    ProductPhoto.objects.create(
        product=product, image=f"x/{tag}.png", image_sha256=tag, embedded_image_sha256=tag,
        status=ProductPhoto.Status.READY, status_changed_at=timezone.now(),
        vector_key=vector_key_current(), vector=_picture(rng, pool).astype("<f4").tobytes())
    index_apply(product_ids=[product.pk])


def _run_queued(callbacks) -> None:
    """What the index worker would do with the tasks the services queued."""
    for send in callbacks:
        if getattr(send, "task", None) in (INDEX, REMOVE):
            index_apply(product_ids=send.kwargs["product_ids"])


def _random_step(rng: np.random.Generator, pool: np.ndarray) -> None:
    ids = list(Product.objects.values_list("pk", flat=True))
    op = str(rng.choice(["create", "create", "create", "copy", "copy", "copy", "vector",
                         "category", "delete", "listed", "pin", "pin", "pin", "exclude",
                         "everywhere", "lift", "photo"]))
    if op == "create" or len(ids) < 4:
        index_apply(product_ids=[_create(rng, _picture(rng, pool))
                                 for _ in range(int(rng.integers(1, 4)))])
        return
    a, b = (Product.objects.get(pk=int(x)) for x in rng.choice(ids, size=2, replace=False))
    if op == "copy":
        index_apply(product_ids=[_create(rng, *_copy_of(rng, b))])
    elif op == "vector":  # a new picture: a copy of another product's, or one of the pool
        vector, sha = _copy_of(rng, b) if rng.random() < 0.5 else (_picture(rng, pool), _tag(rng))
        Product.objects.filter(pk=a.pk).update(vector=vector.astype("<f4").tobytes(),
                                               image_sha256=sha, embedded_image_sha256=sha)
        index_apply(product_ids=[a.pk])
    elif op == "category":
        product_update(product=a, category=str(rng.choice(CATEGORIES[:2])))
    elif op == "delete":
        products_delete(product_ids=[a.pk])
    elif op == "listed":
        merchandising.products_set_listed(product_ids=[a.pk], listed=not a.listed)
    elif op == "pin":
        merchandising.list_pin(product=a, target=b, rank=int(rng.integers(1, LIMIT + 1)))
    elif op == "exclude":
        merchandising.list_exclude(product=a, target=b)
    elif op == "everywhere":
        merchandising.list_exclude_everywhere(target=a)
    elif op == "photo":
        _photo_step(rng, pool, a)
    elif ListRule.objects.exists():
        merchandising.list_rule_delete(rule=ListRule.objects.order_by("?").first())


def _pinned_copies() -> int:
    """Stored lists holding a pinned product and, elsewhere in the list, a copy of its picture
    (the same sha): the collapse would have to drop the pin to show one of them only."""
    pins = ListRule.objects.filter(kind=ListRule.Kind.PIN).values_list("product_id", "target_id")
    sha = dict(Product.objects.values_list("pk", "image_sha256"))
    found = 0
    for pid, target in pins:
        listed = list(ProductNeighbour.objects.filter(product_id=pid).values_list("neighbour_id", flat=True))
        found += target in listed and sum(sha[n] == sha[target] for n in listed) > 1
    return found


def _lists_collapsed(settings) -> int:
    """How many lists collapsing changes now (the brute force without it differs)."""
    settings.LOOKALIKE_COLLAPSE_DUPLICATES = False
    plain = expected_lists()
    settings.LOOKALIKE_COLLAPSE_DUPLICATES = True
    return sum(lst != plain[pid] for pid, lst in expected_lists().items())


@pytest.mark.parametrize("within_category", [True, False])
@pytest.mark.parametrize("layout", ["dense", "topk"])
@pytest.mark.parametrize("seed", [0, 1, 6])
def test_random_rule_sequences_with_collapse_keep_every_list_exact(
        settings, django_capture_on_commit_callbacks, layout, seed, within_category):
    settings.LOOKALIKE_COLLAPSE_DUPLICATES = True
    settings.LOOKALIKE_INDEX_LAYOUT = layout
    settings.LOOKALIKE_LISTS_WITHIN_CATEGORY = within_category
    rng = np.random.default_rng(seed)
    pool = rng.integers(-2, 3, (24, DIM)).astype(np.float32)
    collapsed = same_bytes = 0
    for step in range(60):
        with django_capture_on_commit_callbacks() as callbacks:
            _random_step(rng, pool)
        _run_queued(callbacks)
        assert mismatches() == [], f"step {step}"
        assert _pinned_copies() == 0, f"step {step}"
        collapsed += _lists_collapsed(settings)
        shas = list(Product.objects.values_list("image_sha256", flat=True))
        same_bytes += len(shas) > len(set(shas))
    assert not ProductNeighbour.objects.filter(neighbour_id__in=out_of_lists()).exists()
    assert ListRule.objects.filter(kind=ListRule.Kind.PIN).exists()
    assert same_bytes >= 5  # the sequence did hold copies of the same bytes
    assert collapsed >= 100  # lists (summed over the steps) that collapsing changed


def test_copies_leave_every_list_ten_long_and_a_pin_takes_its_copies_place(
        settings, django_capture_on_commit_callbacks):
    """45 copies of one picture and 15 distinct ones: every list holds ten distinct products
    (the 30 candidates read first hold too many copies: more are read); a product pinning one
    copy shows that copy at its rank and no other; a product deleted from the lists leaves
    none of them short."""
    settings.LOOKALIKE_COLLAPSE_DUPLICATES = True
    rng = np.random.default_rng(5)
    picture = rng.normal(size=DIM).astype(np.float32)
    copies = [_create(rng, picture + rng.normal(scale=0.01, size=DIM).astype(np.float32))
              for _ in range(45)]
    others = [_create(rng, picture + rng.normal(scale=2.0, size=DIM).astype(np.float32))
              for _ in range(15)]
    index_apply(product_ids=copies + others)
    lists = {pid: list(ProductNeighbour.objects.filter(product_id=pid).order_by("rank")
                       .values_list("neighbour_id", flat=True)) for pid in copies + others}
    for listed in lists.values():
        assert len(listed) == LIMIT
        assert sum(n in copies for n in listed) == 1  # the nearest copy, the others skipped
    owner = Product.objects.get(pk=others[0])
    pinned = Product.objects.get(pk=copies[-1])
    merchandising.list_pin(product=owner, target=pinned, rank=7)
    index_apply(product_ids=[owner.pk])
    listed = list(ProductNeighbour.objects.filter(product_id=owner.pk).order_by("rank")
                  .values_list("neighbour_id", flat=True))
    assert len(listed) == LIMIT and listed[6] == pinned.pk
    assert [n for n in listed if n in copies] == [pinned.pk]
    assert mismatches() == []
    # A product deleted from the middle of lists that skipped copies (beyond their rows of the
    # matrix): its rows go with it, and every such list is refilled to ten.
    with django_capture_on_commit_callbacks() as callbacks:
        products_delete(product_ids=[others[5]])
    _run_queued(callbacks)
    assert all(ProductNeighbour.objects.filter(product_id=pid).count() == LIMIT
               for pid in copies + others if pid != others[5])
    assert mismatches() == []
