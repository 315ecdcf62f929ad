"""Writes that race to create the same new SKU, through real concurrency: HTTP requests to
pytest-django's live server (a threaded server) and transactions held open in other threads,
on the suite's real database. PostgreSQL shows the race: a second INSERT of the same SKU
waits for the first transaction and fails when it commits. SQLite's IMMEDIATE transactions
serialize writers, so there the later PUT is an ordinary replace.

Run them on PostgreSQL with ``DATABASE_URL=postgres://...``; the held-transaction tests wait
until PostgreSQL shows the second request waiting on the first's lock."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from django.db import connection, transaction

from catalog.models import Product
from catalog.services import queue
from catalog.services.api_keys import api_key_create
from catalog.services.product_sync import product_put
from tests.catalog.readside import png_bytes
from tests.deploy.shop_client import multipart
from tests.pipeline.helpers import upload

pytestmark = pytest.mark.django_db(transaction=True)
RED, BLUE = (200, 30, 60), (30, 60, 200)


def _postgres() -> bool:
    return connection.vendor == "postgresql"


@pytest.fixture
def api(live_server, no_broker, settings):
    """(base URL, write key); every send the app queues is recorded in ``no_broker``."""
    settings.LOOKALIKE_API_CLIENT_RATE = settings.LOOKALIKE_API_KEY_RATE = "0/m"
    return live_server.url, api_key_create(name="erp", scope="write")[1]


def _send(url: str, key: str, method: str, body: bytes, content_type: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method=method, headers={
        "Authorization": f"Bearer {key}", "Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def put(api, sku: str, *, name: str = "Red Dress", colour=RED) -> tuple[int, dict]:
    base, key = api
    body, content_type = multipart({"name": name, "category": "Dress"},
                                   [("image", "p.png", png_bytes(colour))])
    return _send(f"{base}/api/v1/products/{sku}", key, "PUT", body, content_type)


def batch(api, rows: list[tuple[str, str]]) -> tuple[int, dict]:
    """POST /api/v1/products/batch of (sku, name) rows, each with its own red photo."""
    base, key = api
    body, content_type = multipart(
        {"rows": json.dumps([{"sku": sku, "name": name, "category": "Dress", "photo": f"{sku}.png"}
                             for sku, name in rows])},
        [("photos", f"{sku}.png", png_bytes(RED)) for sku, _ in rows])
    return _send(f"{base}/api/v1/products/batch", key, "POST", body, content_type)


def _lock_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND wait_event_type = 'Lock'")
        return int(cursor.fetchone()[0])


def _until_a_request_waits() -> None:
    """On PostgreSQL, until another session waits on a lock (the request's INSERT waiting for
    the held transaction). SQLite cannot show it; there the request runs after the commit."""
    if not _postgres():
        return
    deadline = time.monotonic() + 60
    while _lock_waiters() == 0:
        assert time.monotonic() < deadline, "the request never waited on the held transaction"
        time.sleep(0.01)


@contextmanager
def held_create(sku: str, *, name: str = "Red Dress", colour=RED) -> Iterator[None]:
    """Create ``sku`` through the service in another thread, inside a transaction kept open
    until the block ends (then committed)."""
    created, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with transaction.atomic():
                product_put(sku=sku, name=name, category="Dress", image=upload(png_bytes(colour)))
                created.set()
                assert release.wait(120), "never released"
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)
            created.set()
        finally:
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert created.wait(120) and not errors, errors
    try:
        yield
    finally:
        release.set()
        thread.join(120)
    assert not errors, errors


def _racing(request: Callable[[], tuple[int, dict]], **held) -> tuple[int, dict]:
    """``request`` sent while the held transaction has created the SKU; its answer."""
    with ThreadPoolExecutor(1) as pool, held_create(**held):
        answer = pool.submit(request)
        _until_a_request_waits()
    return answer.result(timeout=120)


def embeds(no_broker) -> list[int]:
    return [pk for send in no_broker if send.task == queue.EMBED
            for pk in send.kwargs["product_ids"]]


def test_a_put_that_loses_the_race_with_the_same_body_is_unchanged(api, no_broker):
    status, body = _racing(lambda: put(api, "4711"), sku="4711")
    winner = Product.objects.get(sku="4711")
    assert (status, body["sku"], body["image_sha256"]) == (200, "4711", winner.image_sha256)
    assert embeds(no_broker) == [winner.pk]  # the winner's, queued once
    assert Product.objects.count() == 1


def test_a_put_that_loses_the_race_with_another_photo_is_a_conflict(api, no_broker):
    status, body = _racing(lambda: put(api, "4711", colour=BLUE), sku="4711")
    winner = Product.objects.get(sku="4711")
    if _postgres():
        assert status == 409
        assert body == {"error": body["error"], "reason": "sku_conflict", "status": 409}
        assert "4711" in body["error"]
        assert embeds(no_broker) == [winner.pk]
    else:  # serialized: a replace of the committed product
        assert (status, body["image_sha256"]) == (200, winner.image_sha256)
    assert Product.objects.count() == 1


def test_another_sku_with_the_same_name_made_meanwhile_gets_another_slug(api, no_broker):
    status, body = _racing(lambda: put(api, "4712"), sku="4711")
    slugs = dict(Product.objects.values_list("sku", "slug"))
    assert (status, body["sku"]) == (201, "4712")
    assert slugs == {"4711": "red-dress", "4712": "red-dress-2"}
    assert len(embeds(no_broker)) == 2


def test_a_batch_row_that_loses_the_race_is_unchanged_or_a_conflict(api, no_broker):
    status, body = _racing(lambda: batch(api, [("4711", "Red Dress"), ("4712", "Other"),
                                               ("4713", "Blue Dress")]), sku="4711")
    assert status == 200
    assert [r["outcome"] for r in body["results"]] == ["unchanged", "created", "created"]
    status, body = _racing(lambda: batch(api, [("4714", "Red Dress")]), sku="4714",
                           name="Another name")
    row = body["results"][0]
    if _postgres():
        assert (status, row["outcome"], row["reason"]) == (200, "failed", "sku_conflict")
    else:
        assert (status, row["outcome"]) == (200, "changed")
    created = Product.objects.filter(sku__in=["4712", "4713"]).values_list("pk", flat=True)
    winners = Product.objects.filter(sku__in=["4711", "4714"]).values_list("pk", flat=True)
    assert sorted(embeds(no_broker)) == sorted([*created, *winners])


def test_two_simultaneous_puts_of_a_new_sku_never_fail(api, no_broker):
    """The brief's scenario as it happens: two PUTs at once, again and again. Each pair makes
    one product; the other answer is 200 (the same body) or 409, never a 500."""
    for i in range(8):
        sku, start = f"pair-{i}", threading.Barrier(2)

        def send(colour, sku=sku, start=start):
            start.wait(30)
            return put(api, sku, colour=colour)

        same = i % 2 == 1
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(send, [RED, RED if same else BLUE]))
        statuses = sorted(status for status, _ in answers)
        assert statuses in ([200, 201], [201, 409]), answers
        product = Product.objects.get(sku=sku)
        # One embedding, or two when the later PUT replaced the photo.
        replaced = not same and statuses == [200, 201]
        assert embeds(no_broker).count(product.pk) == 1 + replaced


def test_two_batches_of_the_same_new_skus_in_opposite_orders_both_answer(api, no_broker):
    """Rows are written in SKU order, so two batches never wait on each other in a cycle."""
    rows = [(f"b-{i:02d}", f"Garment {i}") for i in range(12)]
    for _ in range(3):
        Product.objects.all().delete()
        start = threading.Barrier(2)

        def send(order, start=start):
            start.wait(30)
            return batch(api, order)

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(send, [rows, rows[::-1]]))
        assert [status for status, _ in answers] == [200, 200], answers
        assert Product.objects.count() == len(rows)
        for _, body in answers:
            assert {r["outcome"] for r in body["results"]} <= {"created", "unchanged"}, body
