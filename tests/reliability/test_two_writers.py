"""Guarantee 4, two writers: the same index task delivered twice at once, to two workers.

Writers never interleave: a Redis lock with a fencing token (catalog.services.locking) is
taken before the store's flock, and every matrix file and neighbour-table transaction is
fenced. The end state is that of a single delivery.
"""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from catalog.engine import matrix_store
from catalog.models import Product, ProductNeighbour
from catalog.services import queue
from catalog.services.indexing import index_apply
from catalog.services.locking import (
    LockLostError,
    LockTimeoutError,
    lock_name_for,
    writer_lock,
)
from catalog.services.neighbour_sync import neighbours_sync
from catalog.services.product_embedding import products_embed_batch
from catalog.services.products import products_bulk_create
from similarity.index.dense import DistanceMatrix
from similarity.index.store_listing import scan
from tests.reliability.support import fashion_images, problems, settled, upload, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def images(model_path):
    return fashion_images(2, offset=3, size=80)  # 20 garments


def _upserts(directory) -> list[tuple[str, set[int]]]:
    """(file name, ids) of every published upsert delta."""
    out = []
    for path in sorted(directory.glob("delta-*.npz")):
        with np.load(path, allow_pickle=False) as z:
            if str(z["op"][()]) == "upsert":
                out.append((path.name, set(z["ids"].tolist())))
    return out


def test_the_same_index_task_twice_at_once_never_interleaves(harness, images, monkeypatch):
    from workers.app import app

    a, b = harness.start_workers("a", "b", queues="index")
    # Products embedded here (queued sends recorded, not sent), 16 of them, 12 indexed.
    monkeypatch.setattr(queue.TaskSend, "__call__", lambda self: None)
    products = products_bulk_create(
        files=[upload(data, f"{cls}-{i}.png") for i, (cls, data) in enumerate(images[:16])],
        category="Twice",
    )
    ids = [p.pk for p in products]
    assert products_embed_batch(product_ids=ids[:12]).embedded == ids[:12]
    index_apply(product_ids=ids[:12])
    new = ids[12:]
    assert products_embed_batch(product_ids=new).embedded == new

    harness.arm("index.acquire", "mark")
    harness.arm("index.locked", "pause-once")
    harness.arm("index.unlocked", "mark")
    task_id = str(uuid.uuid4())
    for _ in range(2):  # one message, delivered twice
        app.send_task(queue.INDEX, kwargs={"product_ids": new}, task_id=task_id)

    first = harness.paused("index.locked")
    owner = a if first in a.children() else b
    other = b if owner is a else a
    # The other worker takes the second copy and asks for the lock...
    wait_for(lambda: any(pid in other.children() and name == "index.acquire"
                         for _, pid, name in harness.events()),
             timeout=20, interval=0.05, what="the second delivery to reach the lock")
    files_at_pause = sorted(p.name for p in harness.matrix_dir.iterdir())
    time.sleep(1.5)  # ...and must still be waiting, having written nothing
    entered = [(pid, name) for _, pid, name in harness.events() if name == "index.locked"]
    assert entered == [(first, "index.locked")], f"a second writer got in: {entered}"
    assert sorted(p.name for p in harness.matrix_dir.iterdir()) == files_at_pause
    assert not set(new) & set(matrix_store().store.load().ids.tolist())
    assert not ProductNeighbour.objects.filter(product_id__in=new).exists()
    assert not Product.objects.filter(pk__in=new, status=Product.Status.READY).exists()

    harness.release("index.locked")
    wait_for(settled(16), timeout=60, what="both deliveries done")
    wait_for(lambda: sum(n == "index.unlocked" for _, _, n in harness.events()) == 2,
             timeout=30, what="the second writer to finish")

    # Critical sections, per process, in time order: never overlapping.
    spans: dict[int, list[float]] = {}
    for t, pid, name in harness.events():
        if name in ("index.locked", "index.unlocked"):
            spans.setdefault(pid, []).append(t)
    assert len(spans) == 2 and all(len(s) == 2 for s in spans.values()), spans
    (s1, e1), (s2, _) = sorted(spans.values())
    assert e1 <= s2, f"critical sections overlap: {spans}"
    assert spans[first][0] == s1

    # End state of a single delivery: one upsert of the new products, nothing written twice.
    upserts = [name for name, got in _upserts(harness.matrix_dir) if got & set(new)]
    assert len(upserts) == 1, upserts
    assert problems(16) == []


# ------------------------------------------------------------------- the lock, unit by unit


def _products(n: int) -> list[int]:
    return [
        Product.objects.create(name=f"p{i}", slug=f"p-{i}-{uuid.uuid4().hex[:6]}", category="x",
                               image=f"products/p{i}.png").pk
        for i in range(n)
    ]


def test_a_writer_whose_lock_expired_is_refused(harness, settings):
    from catalog.engine import matrix_store as store_for

    name = lock_name_for(harness.matrix_dir)
    store = store_for().store
    ids = _products(4)
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(4, 1280)).astype(np.float32)
    matrix = store.load()

    with writer_lock(name, blocking_timeout=1, ttl=1, watchdog=False) as stale:
        assert stale.token is not None
        stale.check()  # still ours
        time.sleep(1.3)  # paused longer than the TTL (no watchdog): the lock expires
        with writer_lock(name, blocking_timeout=5, ttl=30) as fresh:
            assert fresh.token == stale.token + 1
            with pytest.raises(LockLostError):
                stale.check()
            # The store refuses to publish for the stale writer: no file, no temp left.
            store.fence = stale.check
            with pytest.raises(LockLostError):
                store.upsert(matrix, ids, vecs)
            listing = scan(harness.matrix_dir)
            assert listing.deltas == {} and listing.temps == [] and listing.generation == 0
            # The neighbour table refuses it too: the transaction rolls back.
            built = DistanceMatrix.build(ids, vecs, k=10)
            with pytest.raises(LockLostError):
                neighbours_sync(matrix=built, product_ids=ids, existing=set(ids),
                                fence=stale.check)
            assert not ProductNeighbour.objects.exists()
            # The current writer writes.
            fresh.check()
            store.fence = fresh.check
            store.upsert(store.load(), ids, vecs)
            assert neighbours_sync(matrix=built, product_ids=ids, existing=set(ids),
                                   fence=fresh.check) == set(ids)
            assert ProductNeighbour.objects.count() == 4 * 3


def test_a_held_lock_blocks_others_and_a_broker_restart_fences_the_old_holder(harness):
    name = lock_name_for(harness.matrix_dir)
    with writer_lock(name, blocking_timeout=1) as holder:
        started = time.monotonic()
        with pytest.raises(LockTimeoutError), writer_lock(name, blocking_timeout=0.5):
            pass  # pragma: no cover
        assert time.monotonic() - started >= 0.4  # it waited (polling every 50 ms)
        holder.check()
        harness.redis.restart()  # the lock and the fencing counter are gone
        with pytest.raises(LockLostError):
            holder.check()
        with writer_lock(name, blocking_timeout=1) as after:
            after.check()
            with pytest.raises(LockLostError):
                holder.check()  # token 1 again, but not this holder's lock


def test_the_watchdog_keeps_a_live_holder_beyond_the_ttl(harness):
    name = lock_name_for(harness.matrix_dir)
    with writer_lock(name, blocking_timeout=1, ttl=1) as holder:
        time.sleep(2.0)  # twice the TTL: renewed every third of it
        holder.check()
        with pytest.raises(LockTimeoutError), writer_lock(name, blocking_timeout=0.3):
            pass  # pragma: no cover
