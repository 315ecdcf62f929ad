"""The shop's rules through the services and the real index writer, in both layouts, with lists
across the catalog and inside categories: random sequences of creates, vector changes, category
changes, deletes, availability flips, pins, exclusions, lifted rules and further photos added,
re-embedded, removed and failed; after each step every stored list equals the brute force that
applies the rules to each product's vector of all its photos, and no list holds a product kept
out of lists. Ties are frequent (vectors drawn from a small pool)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from catalog.models import ListRule, Product, ProductNeighbour, ProductPhoto
from catalog.services import merchandising
from catalog.services.indexing import index_apply
from catalog.services.product_photos import product_photo_remove
from catalog.services.products import product_update, products_delete
from catalog.task_names import INDEX, REMOVE
from catalog.vectors import vector_key_current
from tests.rules_reference import LIMIT, mismatches, out_of_lists

pytestmark = pytest.mark.django_db

CATEGORIES = ["Coat", "Dress", ""]  # "": products without a category list among themselves
MAX_PHOTOS_HERE = 4  # photos of a product during a sequence: its main one and up to 3 further


def _vector(rng: np.random.Generator, pool: np.ndarray) -> bytes:
    return pool[int(rng.integers(len(pool)))].astype("<f4").tobytes()


def _create(rng: np.random.Generator, pool: np.ndarray, n: int) -> list[int]:
    key, made = vector_key_current(), []
    for _ in range(n):
        tag = f"{int(rng.integers(1 << 60)):064d}"
        made.append(Product.objects.create(
            name=f"p{tag[-6:]}", slug=f"p-{tag}", sku=f"s{tag[-20:]}",
            category=str(rng.choice(CATEGORIES)),
            image=f"x/{tag}.png", image_sha256=tag, embedded_image_sha256=tag,
            status=Product.Status.PROCESSING, status_changed_at=timezone.now(), vector_key=key,
            vector=_vector(rng, pool),
        ).pk)
    return made


def _tag(rng: np.random.Generator) -> str:
    return f"{int(rng.integers(1 << 60)):064d}"


def _photo_add(rng: np.random.Generator, pool: np.ndarray, product: Product) -> None:
    """A further photo as the embed step leaves it: ready, with a vector of the current key."""
    if product.photos_counted() >= MAX_PHOTOS_HERE:
        return
    tag = _tag(rng)
    ProductPhoto.objects.create(
        product=product, image=f"x/{tag}.png", image_sha256=tag, embedded_image_sha256=tag,
        status=ProductPhoto.Status.READY, status_changed_at=timezone.now(),
        vector_key=vector_key_current(), vector=_vector(rng, pool),
    )
    index_apply(product_ids=[product.pk])


def _photo_step(rng: np.random.Generator, pool: np.ndarray, op: str, product: Product) -> None:
    """Add, re-embed, remove or fail one of ``product``'s further photos."""
    photo = product.photos.order_by("?").first()
    if op == "photo_add" or photo is None:
        _photo_add(rng, pool, product)
    elif op == "photo_vector":
        tag = _tag(rng)
        ProductPhoto.objects.filter(pk=photo.pk).update(
            vector=_vector(rng, pool), vector_key=vector_key_current(), image_sha256=tag,
            embedded_image_sha256=tag, status=ProductPhoto.Status.READY, error_message="")
        index_apply(product_ids=[product.pk])
    elif op == "photo_remove":
        product_photo_remove(photo=photo)  # queues the index task
    else:  # the embed step rejected it: no vector, no longer counted
        ProductPhoto.objects.filter(pk=photo.pk).update(
            status=ProductPhoto.Status.FAILED, error_message="not_garment: test", vector=None,
            vector_key="", embedded_image_sha256="")
        index_apply(product_ids=[product.pk])


def _run_queued(callbacks) -> None:
    """What the index worker would do with the tasks the services queued."""
    for send in callbacks:
        if getattr(send, "task", None) in (INDEX, REMOVE):
            index_apply(product_ids=send.kwargs["product_ids"])


def _random_step(rng: np.random.Generator, pool: np.ndarray) -> None:
    ids = list(Product.objects.values_list("pk", flat=True))
    op = str(rng.choice(["create", "create", "vector", "category", "delete", "listed", "listed",
                         "pin", "pin", "exclude", "everywhere", "lift", "photo_add", "photo_add",
                         "photo_add", "photo_vector", "photo_remove", "photo_failed"]))
    if op == "create" or len(ids) < 4:
        index_apply(product_ids=_create(rng, pool, int(rng.integers(1, 4))))
        return
    a, b = (Product.objects.get(pk=int(x)) for x in rng.choice(ids, size=2, replace=False))
    if op.startswith("photo_"):
        _photo_step(rng, pool, op, a)
    elif op == "vector":
        tag = _tag(rng)
        Product.objects.filter(pk=a.pk).update(vector=_vector(rng, pool), image_sha256=tag,
                                               embedded_image_sha256=tag)
        index_apply(product_ids=[a.pk])
    elif op == "category":
        product_update(product=a, category=str(rng.choice(CATEGORIES[:2])))  # a form needs one
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
    elif ListRule.objects.exists():
        merchandising.list_rule_delete(rule=ListRule.objects.order_by("?").first())


def _most_photos() -> int:
    """The most photos (main and further, failed ones too) any product has now."""
    per = Counter(ProductPhoto.objects.values_list("product_id", flat=True))
    return 1 + max(per.values(), default=0)


@pytest.mark.parametrize("within_category", [True, False])
@pytest.mark.parametrize("layout", ["dense", "topk"])
@pytest.mark.parametrize("seed", [0, 1])
def test_random_rule_sequences_keep_every_list_exact(settings, django_capture_on_commit_callbacks,
                                                     layout, seed, within_category):
    settings.LOOKALIKE_INDEX_LAYOUT = layout
    settings.LOOKALIKE_LISTS_WITHIN_CATEGORY = within_category
    rng = np.random.default_rng(seed)
    pool = rng.integers(-2, 3, (9, 1280)).astype(np.float32)
    most_photos = 1
    for step in range(45):
        with django_capture_on_commit_callbacks() as callbacks:
            _random_step(rng, pool)
        _run_queued(callbacks)
        assert mismatches() == [], f"step {step}"
        most_photos = max(most_photos, _most_photos())
    assert most_photos >= 3  # the sequence did give some product several further photos
    assert not ProductNeighbour.objects.filter(neighbour_id__in=out_of_lists()).exists()
    assert Product.objects.filter(listed=False).exists()  # the sequence did flip some
    assert ListRule.objects.filter(kind=ListRule.Kind.PIN).exists()


def test_a_sold_out_product_leaves_lists_and_keeps_its_own(settings, django_capture_on_commit_callbacks):
    rng = np.random.default_rng(3)
    ids = _create(rng, rng.normal(size=(40, 1280)).astype(np.float32), 30)
    index_apply(product_ids=ids)
    holders = set(ProductNeighbour.objects.filter(neighbour_id=ids[0]).values_list("product_id", flat=True))
    assert holders
    with django_capture_on_commit_callbacks() as callbacks:
        assert merchandising.products_set_listed(product_ids=[ids[0]], listed=False) == 1
    _run_queued(callbacks)
    assert not ProductNeighbour.objects.filter(neighbour_id=ids[0]).exists()
    assert ProductNeighbour.objects.filter(product_id=ids[0]).count() == LIMIT
    assert mismatches() == []
    with django_capture_on_commit_callbacks() as callbacks:
        merchandising.products_set_listed(product_ids=[ids[0]], listed=True)
    _run_queued(callbacks)
    again = set(ProductNeighbour.objects.filter(neighbour_id=ids[0]).values_list("product_id", flat=True))
    assert again == holders
    assert mismatches() == []


def test_rules_that_contradict_themselves_are_refused():
    rng = np.random.default_rng(4)
    a, b = (Product.objects.get(pk=pid) for pid in _create(rng, np.ones((1, 1280), np.float32), 2))
    with pytest.raises(ValidationError, match="own list"):
        merchandising.list_pin(product=a, target=a, rank=1)
    with pytest.raises(ValidationError, match="rank must be 1 to 10"):
        merchandising.list_pin(product=a, target=b, rank=11)
    merchandising.list_pin(product=a, target=b, rank=3)
    merchandising.list_exclude(product=a, target=b)  # replaces the pin of the pair
    assert list(ListRule.objects.values_list("kind", flat=True)) == [ListRule.Kind.EXCLUDE]
