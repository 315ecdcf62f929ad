"""The shop's rules through real workers, in both index layouts: a catalog of 300 Fashion-MNIST
garments built by an embed worker and the index worker on a real Redis (a rebuild worker
computes the top-k layout's row blocks), then, while they run, 30 products taken out of lists
in batches, pins and exclusions set (one product excluded everywhere), photos changed, products
deleted, and the index worker's pool child SIGKILLed once mid-write; then the 30 put back and
some rules lifted; then a full rebuild through the workers, and the reconcile sweep.

Whenever nothing is left to do (every product ready, no message queued or unacknowledged),
every stored list equals the brute force that applies the rules (tests/rules_reference.py), no
list holds a product kept out of lists, and search by photo never finds one.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from django.conf import settings

from catalog.engine import matrix_store
from catalog.models import ListRule, Product, ProductNeighbour, RebuildRun
from catalog.selectors import broker_state
from catalog.selectors.photo_search import products_search_by_vector, search_index_clear
from catalog.services import merchandising
from catalog.services.products import product_update, products_bulk_create, products_delete
from catalog.services.queue import rebuild_enqueue
from catalog.task_names import RECONCILE
from similarity import PartitionedIndex
from tests.reliability.conftest import Harness, Worker
from tests.reliability.support import fashion_images, upload, wait_for
from tests.rules_reference import LIMIT, mismatches, out_of_lists
from workers.app import app

pytestmark = pytest.mark.django_db(transaction=True)

N = 300
SOLD_OUT = 30
SETTLE_TIMEOUT = 420.0


@pytest.fixture(scope="module")
def garments(model_path) -> list[tuple[str, bytes]]:
    """300 garments for the catalog (30 per class) and 10 others for the changed photos."""
    return fashion_images(N // 10, size=96) + fashion_images(1, offset=N // 10, size=96)


# ---------------------------------------------------------------- waiting and checking


def _broker_busy(harness: Harness) -> str | None:
    """What the broker still holds for the workers: queued messages, and messages delivered
    but not acknowledged (running, prefetched, or waiting for a retry's countdown)."""
    queued = {name: n for name, n in broker_state.queue_lengths().items() if n}
    unacked = harness.redis.client(0).hlen(f"{settings.LOOKALIKE_NAMESPACE}:unacked")
    if queued or unacked:
        return f"queued {queued}, unacknowledged {unacked}"
    return None


def _idle(harness: Harness, n: int) -> Callable[[], bool | str]:
    """A ``wait_for`` predicate: ``n`` products, all ready, nothing left for the workers
    (seen twice, a second apart, so a message between the queue and a worker is not missed)."""

    def once() -> str | None:
        count = Product.objects.count()
        if count != n:
            return f"{count} products, expected {n}"
        waiting = list(Product.objects.exclude(status=Product.Status.READY)
                       .values_list("pk", "status")[:5])
        return f"not ready: {waiting}" if waiting else _broker_busy(harness)

    def check() -> bool | str:
        first = once()
        if first:
            return first
        time.sleep(1.0)
        return once() or True

    return check


def _held_out_problems() -> list[str]:
    """Lists holding a product kept out of lists, and search results that are one."""
    out = out_of_lists()
    held = list(ProductNeighbour.objects.filter(neighbour_id__in=out)
                .values_list("product_id", "neighbour_id")[:5])
    problems = [f"lists hold products kept out of lists: {held}"] if held else []
    search_index_clear()
    for product in Product.objects.filter(pk__in=sorted(out)[:10]):
        vector = np.frombuffer(bytes(product.vector), "<f4")
        found = [p.pk for p, _ in products_search_by_vector(vector=vector, k=LIMIT)]
        if set(found) & out or len(found) != LIMIT:
            problems.append(f"search by {product.pk}'s photo found {found}")
    return problems


def _settle_and_check(harness: Harness, n: int, what: str) -> float:
    """Wait until nothing is left to do; every list must then be the brute force's. Returns
    the seconds waited."""
    start = time.monotonic()
    wait_for(_idle(harness, n), timeout=SETTLE_TIMEOUT, interval=0.5, what=what)
    waited = time.monotonic() - start
    assert mismatches()[:5] == [], what
    assert _held_out_problems() == [], what
    return waited


def _list_of(pid: int) -> list[int]:
    return list(ProductNeighbour.objects.filter(product_id=pid).order_by("rank")
                .values_list("neighbour_id", flat=True))


# ---------------------------------------------------------------- what the shop does


@dataclass(frozen=True)
class Cast:
    """Disjoint products for each part of the scenario, drawn from a seeded shuffle."""

    sold_out: list[int]
    everywhere: int
    deleted: list[int]
    holders: list[int]  # products given rules of their own
    far: int  # pinned, far from the lists that pin it
    near: int
    changed: list[int]  # new photos: a plain product, a sold-out one, a pin target, a holder

    @classmethod
    def draw(cls, ids: list[int], seed: int) -> Cast:
        pool = iter(int(x) for x in np.random.default_rng(seed).permutation(ids))

        def take(n: int) -> list[int]:
            return [next(pool) for _ in range(n)]

        sold_out, (everywhere,), deleted, holders = take(SOLD_OUT), take(1), take(3), take(8)
        (far, near, plain) = take(3)
        return cls(sold_out, everywhere, deleted, holders, far, near,
                   changed=[plain, sold_out[2], near, holders[3]])

    @property
    def avoid(self) -> set[int]:
        """Products with a part of their own: never chosen from a list as a rule's target."""
        return {*self.sold_out, self.everywhere, *self.deleted, *self.holders, self.far,
                self.near, *self.changed}


def _get(pid: int) -> Product:
    return Product.objects.get(pk=pid)


def _in_list(pid: int, rank: int, avoid: set[int]) -> Product:
    """The product at ``rank`` of ``pid``'s stored list counting only products not in ``avoid``,
    or the last of them."""
    plain = [nid for nid in _list_of(pid) if nid not in avoid]
    return _get(plain[min(rank, len(plain)) - 1])


def _set_rules(cast: Cast) -> dict[str, list[ListRule]]:
    """Pins and exclusions of several kinds, by what the test does with them later: ``lift``
    them, ``keep`` them, or delete a product they name (``doomed``)."""
    holders, sold_out, deleted, avoid = cast.holders, cast.sold_out, cast.deleted, cast.avoid
    pin, exclude = merchandising.list_pin, merchandising.list_exclude
    return {
        "lift": [
            pin(product=_get(holders[0]), target=_get(cast.far), rank=1),
            exclude(product=_get(holders[1]), target=_in_list(holders[1], 1, avoid)),
        ],
        "keep": [
            pin(product=_get(holders[2]), target=_get(cast.near), rank=LIMIT),
            # a neighbour moved up its own list (the holder's photo changes later)
            pin(product=_get(holders[3]), target=_in_list(holders[3], 5, avoid), rank=2),
            # a pin of a sold-out product waits for it to be listed again
            pin(product=_get(holders[4]), target=_get(sold_out[0]), rank=4),
            exclude(product=_get(holders[5]), target=_in_list(holders[5], LIMIT, avoid)),
            pin(product=_get(holders[6]), target=_get(cast.far), rank=3),
            exclude(product=_get(holders[6]), target=_in_list(holders[6], 1, avoid)),
            # a sold-out product's own list has rules too
            pin(product=_get(sold_out[1]), target=_get(holders[7]), rank=1),
            exclude(product=_get(sold_out[1]), target=_in_list(sold_out[1], 1, avoid)),
        ],
        "doomed": [
            pin(product=_get(holders[7]), target=_get(deleted[0]), rank=2),
            exclude(product=_get(deleted[1]), target=_in_list(deleted[1], 1, avoid)),
        ],
    }


def _kill_the_index_child_mid_write(harness: Harness, index_worker: Worker,
                                    write: Callable[[], object]) -> None:
    """Arm a pause where the matrix delta is published and the lists are not yet written, do
    ``write`` (it queues index work), SIGKILL the paused pool child: the task is redelivered."""
    harness.arm("index.before_neighbours", "pause-once")
    write()
    pid = harness.paused("index.before_neighbours", timeout=180)
    assert pid in index_worker.children(), "the pause is not in the index worker's pool child"
    busy = _broker_busy(harness) or ""
    assert "unacknowledged 0" not in busy, f"the paused task is not seen as unacknowledged: {busy}"
    os.kill(pid, signal.SIGKILL)
    harness.release("index.before_neighbours")


def _rebuild_through_the_worker() -> RebuildRun:
    before = RebuildRun.objects.count()
    rebuild_enqueue(trigger="test", robust=False)

    def finished() -> bool | str:
        run = RebuildRun.objects.order_by("-pk").first()
        if RebuildRun.objects.count() == before or run is None or run.state == RebuildRun.State.RUNNING:
            return "the rebuild has not finished"
        return True

    wait_for(finished, timeout=SETTLE_TIMEOUT, interval=0.5, what="the full rebuild")
    return RebuildRun.objects.order_by("-pk").first()


def _rules_applied(rules: list[ListRule]) -> list[str]:
    """Each rule visible in its list: a pin at its rank, an exclusion absent."""
    out = []
    for rule in rules:
        ids = _list_of(rule.product_id)
        if rule.kind == ListRule.Kind.PIN and (len(ids) < rule.rank or ids[rule.rank - 1] != rule.target_id):
            out.append(f"{rule.target_id} not at #{rule.rank} of {rule.product_id}: {ids}")
        if rule.kind == ListRule.Kind.EXCLUDE and rule.target_id in ids:
            out.append(f"{rule.target_id} still in {rule.product_id}'s list {ids}")
    return out


@pytest.mark.parametrize("layout", ["dense", "topk"])
def test_rules_hold_through_workers_a_killed_writer_and_a_rebuild(harness, garments, settings, layout):
    settings.LOOKALIKE_INDEX_LAYOUT = layout
    env = {"LOOKALIKE_INDEX_LAYOUT": layout}
    harness.start_workers("embed", queues="embed", env=env)
    (index_worker,) = harness.start_workers("index", queues="index", env=env)
    harness.start_workers("blocks", queues="rebuild", env=env)  # the top-k rebuild's row blocks
    catalog, photos = garments[:N], garments[N:]
    timings: dict[str, float] = {}

    start = time.monotonic()
    for first in range(0, N, 50):
        products_bulk_create(files=[upload(data, f"{cls.replace('/', '-')}.png")
                                    for cls, data in catalog[first:first + 50]], category="Catalog")
    timings["build"] = time.monotonic() - start + _settle_and_check(harness, N, f"{N} products built")

    cast = Cast.draw(sorted(Product.objects.values_list("pk", flat=True)), seed=7)
    sold_out, deleted = cast.sold_out, cast.deleted

    # While the workers run: availability, rules, photos, deletions, and one killed writer.
    start = time.monotonic()
    merchandising.products_set_listed(product_ids=sold_out[:10], listed=False)
    rules = _set_rules(cast)
    _kill_the_index_child_mid_write(
        harness, index_worker,
        lambda: merchandising.products_set_listed(product_ids=sold_out[10:20], listed=False))
    merchandising.list_exclude_everywhere(target=_get(cast.everywhere))
    for pid, (cls, data) in zip(cast.changed, photos, strict=False):
        product_update(product=_get(pid), image=upload(data, f"{cls.replace('/', '-')}.png"))
    merchandising.products_set_listed(product_ids=sold_out[20:], listed=False)
    products_delete(product_ids=deleted)
    timings["changes"] = time.monotonic() - start + _settle_and_check(
        harness, N - len(deleted), f"{SOLD_OUT} sold out, rules set, photos changed, deleted")
    assert Product.objects.filter(listed=False).count() == SOLD_OUT
    assert all(len(_list_of(pid)) == LIMIT for pid in sold_out)  # each keeps its own list
    assert _rules_applied(rules["lift"]) == []
    assert not ListRule.objects.filter(pk__in=[r.pk for r in rules["doomed"]]).exists()
    assert "SIGKILL" in index_worker.log() or "signal 9" in index_worker.log()

    # The 30 back, some rules lifted.
    start = time.monotonic()
    merchandising.products_set_listed(product_ids=sold_out[:15], listed=True)
    for rule in rules["lift"]:
        merchandising.list_rule_delete(rule=rule)
    merchandising.products_set_listed(product_ids=sold_out[15:], listed=True)
    timings["back"] = time.monotonic() - start + _settle_and_check(
        harness, N - len(deleted), f"the {SOLD_OUT} listed again, rules lifted")
    assert not Product.objects.filter(listed=False).exists()
    kept = list(ListRule.objects.order_by("pk"))
    assert len(kept) == len(rules["keep"]) + 1  # the exclusion everywhere stays too
    assert _rules_applied(rules["keep"]) == []

    # A full rebuild keeps every rule.
    start = time.monotonic()
    run = _rebuild_through_the_worker()
    assert run.state == RebuildRun.State.DONE, run.message
    timings["rebuild"] = time.monotonic() - start + _settle_and_check(
        harness, N - len(deleted), "the full rebuild")
    assert list(ListRule.objects.order_by("pk")) == kept
    assert _rules_applied(rules["keep"]) == []
    index = matrix_store().store.load()  # lists inside categories: one index per category
    parts = index.parts.values() if isinstance(index, PartitionedIndex) else [index]
    assert {part.layout for part in parts} == {layout}

    # So does the reconcile sweep (sent as beat sends it), which rewrites every list that
    # differs from the index.
    app.send_task(RECONCILE)
    _settle_and_check(harness, N - len(deleted), "the reconcile sweep")
    assert "workers.tasks.reconcile" in index_worker.log()
    assert _rules_applied(rules["keep"]) == []
    print(f"{layout}: seconds until settled: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
