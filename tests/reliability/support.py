"""What "consistent" means, checked from the outside: the database, the files, brute force;
and the shop's steps the rules tests drive through real workers (test_shop_rules.py,
test_shop_photos.py)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings

from catalog.models import ListRule, Product, ProductNeighbour, ProductPhoto, RebuildRun
from catalog.selectors import broker_state
from catalog.selectors.photo_search import products_search_by_vector, search_index_clear
from catalog.services import merchandising
from catalog.services.queue import rebuild_enqueue
from tests.pipeline.helpers import K, fashion_images, problems, settled, upload, wait_for
from tests.rules_reference import LIMIT, mismatches, out_of_lists

if TYPE_CHECKING:
    from tests.reliability.conftest import Harness, Worker

__all__ = ["K", "fashion_images", "files_problems", "problems", "settled", "upload", "wait_for"]

SOLD_OUT = 30
SETTLE_TIMEOUT = 420.0


def files_problems(directory: Path) -> list[str]:
    """Every .npz in ``directory`` must load, member by member, with allow_pickle=False, and the
    store must load from them."""
    from catalog.engine import matrix_store

    out = []
    for path in sorted(directory.glob("*.npz")):
        try:
            with np.load(path, allow_pickle=False) as z:
                for key in z.files:
                    z[key]
        except Exception as exc:
            out.append(f"{path.name}: {type(exc).__name__}: {exc}")
    try:
        matrix_store().store.load()
    except Exception as exc:
        out.append(f"the store does not load: {type(exc).__name__}: {exc}")
    return out


# ---------------------------------------------------------------- waiting and checking


def start_shop_workers(harness: Harness, layout: str, **more_env: str) -> Worker:
    """An embed worker, the index worker and a rebuild worker (the top-k rebuild's row
    blocks), all with index layout ``layout`` (and ``more_env``); the index worker."""
    env = {"LOOKALIKE_INDEX_LAYOUT": layout, **more_env}
    harness.start_workers("embed", queues="embed", env=env)
    (index_worker,) = harness.start_workers("index", queues="index", env=env)
    harness.start_workers("blocks", queues="rebuild", env=env)
    return index_worker



def broker_busy(harness: Harness) -> str | None:
    """What the broker still holds for the workers: queued messages, and messages delivered
    but not acknowledged (running, prefetched, or waiting for a retry's countdown)."""
    queued = {name: n for name, n in broker_state.queue_lengths().items() if n}
    unacked = harness.redis.client(0).hlen(f"{settings.LOOKALIKE_NAMESPACE}:unacked")
    if queued or unacked:
        return f"queued {queued}, unacknowledged {unacked}"
    return None


def idle(harness: Harness, n: int) -> Callable[[], bool | str]:
    """A ``wait_for`` predicate: ``n`` products, all ready, no further photo waiting for its
    vector, nothing left for the workers (seen twice, a second apart, so a message between the
    queue and a worker is not missed)."""
    waiting_states = [ProductPhoto.Status.PENDING, ProductPhoto.Status.PROCESSING]

    def once() -> str | None:
        count = Product.objects.count()
        if count != n:
            return f"{count} products, expected {n}"
        waiting = list(Product.objects.exclude(status=Product.Status.READY)
                       .values_list("pk", "status")[:5])
        if waiting:
            return f"not ready: {waiting}"
        photos = list(ProductPhoto.objects.filter(status__in=waiting_states)
                      .values_list("pk", "status")[:5])
        return f"further photos not embedded: {photos}" if photos else broker_busy(harness)

    def check() -> bool | str:
        first = once()
        if first:
            return first
        time.sleep(1.0)
        return once() or True

    return check


def held_out_problems() -> list[str]:
    """Lists holding a product kept out of lists, and search results that are one."""
    out = out_of_lists()
    held = list(ProductNeighbour.objects.filter(neighbour_id__in=out)
                .values_list("product_id", "neighbour_id")[:5])
    found_problems = [f"lists hold products kept out of lists: {held}"] if held else []
    search_index_clear()
    for product in Product.objects.filter(pk__in=sorted(out)[:10]):
        vector = np.frombuffer(bytes(product.vector), "<f4")
        found = [p.pk for p, _ in products_search_by_vector(vector=vector, k=LIMIT)]
        if set(found) & out or len(found) != LIMIT:
            found_problems.append(f"search by {product.pk}'s photo found {found}")
    return found_problems


def settle_and_check(harness: Harness, n: int, what: str) -> float:
    """Wait until nothing is left to do; every list must then be the brute force's. Returns
    the seconds waited."""
    start = time.monotonic()
    wait_for(idle(harness, n), timeout=SETTLE_TIMEOUT, interval=0.5, what=what)
    waited = time.monotonic() - start
    differ = mismatches()
    assert differ == [], f"{what}: {len(differ)} lists differ: " + "; ".join(differ[:3])
    assert held_out_problems() == [], what
    return waited


def list_of(pid: int) -> list[int]:
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


def product(pid: int) -> Product:
    return Product.objects.get(pk=pid)


def _in_list(pid: int, rank: int, avoid: set[int]) -> Product:
    """The product at ``rank`` of ``pid``'s stored list counting only products not in ``avoid``,
    or the last of them."""
    plain = [nid for nid in list_of(pid) if nid not in avoid]
    return product(plain[min(rank, len(plain)) - 1])


def set_rules(cast: Cast) -> dict[str, list[ListRule]]:
    """Pins and exclusions of several kinds, by what the test does with them later: ``lift``
    them, ``keep`` them, or delete a product they name (``doomed``)."""
    holders, sold_out, deleted, avoid = cast.holders, cast.sold_out, cast.deleted, cast.avoid
    pin, exclude, get = merchandising.list_pin, merchandising.list_exclude, product
    return {
        "lift": [
            pin(product=get(holders[0]), target=get(cast.far), rank=1),
            exclude(product=get(holders[1]), target=_in_list(holders[1], 1, avoid)),
        ],
        "keep": [
            pin(product=get(holders[2]), target=get(cast.near), rank=LIMIT),
            # a neighbour moved up its own list (the holder's photo changes later)
            pin(product=get(holders[3]), target=_in_list(holders[3], 5, avoid), rank=2),
            # a pin of a sold-out product waits for it to be listed again
            pin(product=get(holders[4]), target=get(sold_out[0]), rank=4),
            exclude(product=get(holders[5]), target=_in_list(holders[5], LIMIT, avoid)),
            pin(product=get(holders[6]), target=get(cast.far), rank=3),
            exclude(product=get(holders[6]), target=_in_list(holders[6], 1, avoid)),
            # a sold-out product's own list has rules too
            pin(product=get(sold_out[1]), target=get(holders[7]), rank=1),
            exclude(product=get(sold_out[1]), target=_in_list(sold_out[1], 1, avoid)),
        ],
        "doomed": [
            pin(product=get(holders[7]), target=get(deleted[0]), rank=2),
            exclude(product=get(deleted[1]), target=_in_list(deleted[1], 1, avoid)),
        ],
    }


def rules_applied(rules: list[ListRule]) -> list[str]:
    """Each rule visible in its list: a pin at its rank, an exclusion absent."""
    out = []
    for rule in rules:
        ids = list_of(rule.product_id)
        if rule.kind == ListRule.Kind.PIN and (len(ids) < rule.rank or ids[rule.rank - 1] != rule.target_id):
            out.append(f"{rule.target_id} not at #{rule.rank} of {rule.product_id}: {ids}")
        if rule.kind == ListRule.Kind.EXCLUDE and rule.target_id in ids:
            out.append(f"{rule.target_id} still in {rule.product_id}'s list {ids}")
    return out


def kill_the_index_child_mid_write(harness: Harness, index_worker: Worker,
                                   write: Callable[[], object]) -> None:
    """Arm a pause where the matrix delta is published and the lists are not yet written, do
    ``write`` (it queues index work), SIGKILL the paused pool child: the task is redelivered."""
    harness.arm("index.before_neighbours", "pause-once")
    write()
    pid = harness.paused("index.before_neighbours", timeout=180)
    assert pid in index_worker.children(), "the pause is not in the index worker's pool child"
    busy = broker_busy(harness) or ""
    assert "unacknowledged 0" not in busy, f"the paused task is not seen as unacknowledged: {busy}"
    os.kill(pid, signal.SIGKILL)
    harness.release("index.before_neighbours")


def rebuild_through_the_worker() -> RebuildRun:
    before = RebuildRun.objects.count()
    rebuild_enqueue(trigger="test", robust=False)

    def finished() -> bool | str:
        run = RebuildRun.objects.order_by("-pk").first()
        if RebuildRun.objects.count() == before or run is None or run.state == RebuildRun.State.RUNNING:
            return "the rebuild has not finished"
        return True

    wait_for(finished, timeout=SETTLE_TIMEOUT, interval=0.5, what="the full rebuild")
    run = RebuildRun.objects.order_by("-pk").first()
    assert run is not None
    return run
