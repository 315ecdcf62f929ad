"""Several photos per product through real workers: 300 Fashion-MNIST garments with 2-4 photos
each (a main photo and 1-3 further photos of the same class, every photo a different image),
created through the services while an embed worker and the index worker on a real Redis embed
and index them; then, while they run, further photos changed (the index worker's pool child
SIGKILLed once mid-write of the first change), 30 products taken out of lists in batches,
pins and exclusions set, further photos removed, products deleted; then the 30 put back and
some rules lifted; then a full rebuild through the workers (a rebuild worker computes the
top-k layout's row blocks).

Whenever nothing is left to do, every stored list equals the brute force of the rules over each
product's vector of all its photos (tests/rules_reference.py), no list holds a product kept out
of lists, every further photo is ready with the vector of its current image (or failed with a
reason), the photo files left are exactly those of the photos left, and search by any photo of
a sample of products returns the brute force's nearest listed products, each at most once.

One index layout, dense: with three times as many photos to embed, each layout takes about
twice as long as one of test_shop_rules.py (measured 2026-12-03: 69 s against 35 s), so both
would double its runtime. Dense is the layout a catalog of this size gets, and the one where
search by photo combines each product's photos itself (catalog.selectors.further_photos)
rather than reading the index's vectors, so the lists and search check two computations of
the same vectors; test_shop_rules.py runs the rules in both layouts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction

from catalog.models import ListRule, Product, ProductPhoto, RebuildRun
from catalog.selectors.photo_search import products_search_by_vector, search_index_clear
from catalog.services import merchandising, queue
from catalog.services.product_photos import (
    product_photo_add,
    product_photo_change,
    product_photo_remove,
)
from catalog.services.products import products_bulk_create, products_delete
from catalog.vectors import vector_key_current
from similarity.index.rules import ListRules
from tests.reliability.support import (
    SOLD_OUT,
    Cast,
    fashion_images,
    kill_the_index_child_mid_write,
    list_of,
    rebuild_through_the_worker,
    rules_applied,
    set_rules,
    settle_and_check,
    start_shop_workers,
    upload,
)
from tests.rules_reference import LIMIT, brute, out_of_lists, product_vectors_of

pytestmark = pytest.mark.django_db(transaction=True)

N = 300
PER_CLASS = N // 10
MOST_FURTHER = 3  # a product has 2-4 photos: its main photo and 1-3 further ones
BATCH = 50
CHANGED = 8  # plain products with a further photo changed (besides the cast's four)
REMOVED = 8  # plain products with a further photo removed (besides three of the cast)


@dataclass(frozen=True)
class Garments:
    """Main photos (30 per class, in class order), a pool of further photos per class, and
    spare photos for the changes: every image a different Fashion-MNIST garment."""

    main: list[tuple[str, bytes]]
    further: list[tuple[str, bytes]]
    spare: list[tuple[str, bytes]]

    def further_of(self, i: int, count: int) -> list[tuple[str, bytes]]:
        """``count`` further photos for the ``i``-th main photo, of its class."""
        cls, j = divmod(i, PER_CLASS)
        first = cls * PER_CLASS * MOST_FURTHER + j * MOST_FURTHER
        return self.further[first:first + count]


@pytest.fixture(scope="module")
def garments(model_path) -> Garments:
    return Garments(
        main=fashion_images(PER_CLASS, size=96),
        further=fashion_images(PER_CLASS * MOST_FURTHER, offset=PER_CLASS, size=96),
        spare=fashion_images(2, offset=PER_CLASS * (MOST_FURTHER + 1), size=96),
    )


def _file(cls: str, data: bytes) -> SimpleUploadedFile:
    return upload(data, f"{cls.replace('/', '-')}.png")


@dataclass
class Ledger:
    """What the test expects of the further photos: how many each product has, and the image
    files that must be gone (removed photos, the replaced images, deleted products')."""

    counts: dict[int, int] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)


# ---------------------------------------------------------------- building and changing


def _build(garments: Garments, counts: np.ndarray) -> Ledger:
    """The catalog in batches of 50: the products (main photos) in one call; their further
    photos one service call each, queued to be embedded together on the batch's commit (as a
    catalog sync does) while the workers embed and index the main photos."""
    ledger = Ledger()
    for first in range(0, N, BATCH):
        created = products_bulk_create(
            files=[_file(cls, data) for cls, data in garments.main[first:first + BATCH]],
            category="Catalog")
        with transaction.atomic():
            with queue.embeds_held() as held:
                for i, product in enumerate(created, start=first):
                    for cls, data in garments.further_of(i, int(counts[i]) - 1):
                        product_photo_add(product=product, image=_file(cls, data))
            queue.embed_enqueue(product_ids=held)
        ledger.counts.update({p.pk: int(counts[i]) - 1 for i, p in enumerate(created, start=first)})
    return ledger


def _first_photo(pid: int) -> ProductPhoto:
    return ProductPhoto.objects.filter(product_id=pid).order_by("pk")[0]


def _change_photos(pids: list[int], images: list[tuple[str, bytes]], ledger: Ledger) -> dict[int, str]:
    """Each product's first further photo gets a new image; photo id -> its replaced image's
    sha256."""
    replaced = {}
    for pid, (cls, data) in zip(pids, images, strict=True):
        photo = _first_photo(pid)
        replaced[photo.pk], old_name = photo.image_sha256, photo.image.name
        assert product_photo_change(photo=photo, image=_file(cls, data))
        ledger.gone.add(old_name)
    return replaced


def _remove_photos(pids: list[int], ledger: Ledger) -> None:
    for pid in pids:
        photo = _first_photo(pid)
        ledger.gone.add(photo.image.name)
        product_photo_remove(photo=photo)
        ledger.counts[pid] -= 1


def _delete(pids: list[int], ledger: Ledger) -> None:
    for product in Product.objects.filter(pk__in=pids).prefetch_related("photos"):
        ledger.gone |= {product.image.name, *(photo.image.name for photo in product.photos.all())}
        del ledger.counts[product.pk]
    products_delete(product_ids=pids)


# ---------------------------------------------------------------- checking


def _photo_problems(ledger: Ledger, replaced: dict[int, str]) -> list[str]:
    """Further photos not as expected: their number per product, a vector not of the current
    image and model (or a failure without a reason), a replaced image still embedded, a photo
    file left over or missing."""
    out = []
    counts = {pid: 0 for pid in Product.objects.values_list("pk", flat=True)}
    for pid in ProductPhoto.objects.values_list("product_id", flat=True):
        counts[pid] += 1
    if counts != ledger.counts:
        differ = sorted(set(counts.items()) ^ set(ledger.counts.items()))
        out.append(f"photos per product differ (found and expected): {differ[:10]}")
    key = vector_key_current()
    for photo in ProductPhoto.objects.defer("colour"):
        if photo.status == ProductPhoto.Status.FAILED and not photo.error_message:
            out.append(f"photo {photo.pk} failed without a reason")
        elif photo.status != ProductPhoto.Status.FAILED and not (
                photo.status == ProductPhoto.Status.READY and photo.vector is not None
                and photo.vector_key == key and photo.embedded_image_sha256 == photo.image_sha256):
            out.append(f"photo {photo.pk} is {photo.status} without its image's vector")
        if replaced.get(photo.pk) in (photo.image_sha256, photo.embedded_image_sha256):
            out.append(f"photo {photo.pk} still has its replaced image")
    storage = ProductPhoto.image.field.storage
    names = [*Product.objects.values_list("image", flat=True),
             *ProductPhoto.objects.values_list("image", flat=True)]
    out += [f"photo file missing: {name}" for name in names if not storage.exists(name)]
    out += [f"photo file left over: {name}" for name in sorted(ledger.gone) if storage.exists(name)]
    return out


def _search_problems(sample: list[int]) -> list[str]:
    """Search by each photo (main and further, with a vector) of the ``sample`` products must
    return the brute force's nearest listed products over every product's vector of all its
    photos: ``LIMIT`` of them, each once, none kept out of lists."""
    search_index_clear()
    vectors = product_vectors_of(list(Product.objects.filter(status=Product.Status.READY)))
    out_ = out_of_lists()
    candidates = set(vectors) - out_
    queries = [*Product.objects.filter(pk__in=sample).values_list("pk", "vector", "colour"),
               *ProductPhoto.objects.filter(product_id__in=sample, vector__isnull=False)
               .values_list("product_id", "vector", "colour")]
    problems = []
    for pid, blob, colour in queries:
        vector = np.frombuffer(bytes(blob), "<f4")
        colours = None if colour is None else np.frombuffer(bytes(colour), "<f4")
        found = [p.pk for p, _ in products_search_by_vector(vector=vector, colour=colours, k=LIMIT)]
        want = [nid for nid, _ in brute(vectors, candidates, vector, 0, ListRules(),
                                         settings.LOOKALIKE_METRIC, LIMIT)]
        if len(set(found)) != len(found) or set(found) & out_ or found != want:
            problems.append(f"search by a photo of {pid} found {found}, want {want}")
    return problems


def _all_checks(harness, n: int, what: str, ledger: Ledger, replaced: dict[int, str],
                sample: list[int]) -> float:
    waited = settle_and_check(harness, n, what)
    assert _photo_problems(ledger, replaced) == [], what
    assert _search_problems(sample) == [], what
    return waited


# ---------------------------------------------------------------- the scenario


def test_several_photos_hold_through_workers_a_killed_writer_and_a_rebuild(
        harness, garments, settings):
    layout = settings.LOOKALIKE_INDEX_LAYOUT = "dense"
    index_worker = start_shop_workers(harness, layout)
    rng = np.random.default_rng(11)
    timings: dict[str, float] = {}

    start = time.monotonic()
    ledger = _build(garments, rng.integers(2, MOST_FURTHER + 2, N))
    assert sorted(set(ledger.counts.values())) == [1, 2, 3]
    ids = sorted(ledger.counts)
    cast = Cast.draw(ids, seed=7)
    plain = [int(x) for x in rng.permutation([pid for pid in ids if pid not in cast.avoid])]
    changed, removed = [*cast.changed, *plain[:CHANGED]], plain[CHANGED:CHANGED + REMOVED]
    removed += [cast.far, cast.sold_out[3], cast.holders[5]]
    sample = [*changed, *removed, *cast.sold_out[:4], cast.everywhere, *plain[-6:]]
    timings["build"] = time.monotonic() - start + _all_checks(
        harness, N, f"{N} products with their photos built", ledger, {}, sample)
    sold_out, deleted = cast.sold_out, cast.deleted

    # While the workers run: further photos changed (the index child killed mid-write of the
    # first change), availability, rules, further photos removed, deletions.
    start = time.monotonic()
    replaced: dict[int, str] = {}
    kill_the_index_child_mid_write(
        harness, index_worker,
        lambda: replaced.update(_change_photos(cast.changed, garments.spare[:4], ledger)))
    merchandising.products_set_listed(product_ids=sold_out[:10], listed=False)
    rules = set_rules(cast)
    replaced.update(_change_photos(plain[:CHANGED], garments.spare[4:4 + CHANGED], ledger))
    merchandising.products_set_listed(product_ids=sold_out[10:20], listed=False)
    merchandising.list_exclude_everywhere(target=Product.objects.get(pk=cast.everywhere))
    _remove_photos(removed, ledger)
    merchandising.products_set_listed(product_ids=sold_out[20:], listed=False)
    _delete(deleted, ledger)
    n = N - len(deleted)
    timings["changes"] = time.monotonic() - start + _all_checks(
        harness, n, "photos changed and removed, 30 sold out, rules set, deleted", ledger,
        replaced, sample)
    assert Product.objects.filter(listed=False).count() == SOLD_OUT
    assert all(len(list_of(pid)) == LIMIT for pid in sold_out)  # each keeps its own list
    assert rules_applied(rules["lift"]) == []
    assert not ListRule.objects.filter(pk__in=[r.pk for r in rules["doomed"]]).exists()
    assert "SIGKILL" in index_worker.log() or "signal 9" in index_worker.log()

    # The 30 back, some rules lifted.
    start = time.monotonic()
    merchandising.products_set_listed(product_ids=sold_out[:15], listed=True)
    for rule in rules["lift"]:
        merchandising.list_rule_delete(rule=rule)
    merchandising.products_set_listed(product_ids=sold_out[15:], listed=True)
    timings["back"] = time.monotonic() - start + _all_checks(
        harness, n, f"the {SOLD_OUT} listed again, rules lifted", ledger, replaced, sample)
    assert not Product.objects.filter(listed=False).exists()
    assert rules_applied(rules["keep"]) == []

    # A full rebuild computes every product's vector from all its photos again.
    start = time.monotonic()
    run = rebuild_through_the_worker()
    assert run.state == RebuildRun.State.DONE, run.message
    timings["rebuild"] = time.monotonic() - start + _all_checks(
        harness, n, "the full rebuild", ledger, replaced, sample)
    assert rules_applied(rules["keep"]) == []
    print(f"{layout}: seconds until settled: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
