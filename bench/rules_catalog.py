"""The catalog half of ``bench.rules_bench``: availability flips and adds through the services
and the index writer, in this process, on a fresh SQLite catalog of random vectors; then the
same with near-duplicates collapsed and 100 copies added.

The services queue their index tasks on commit; here the queued task is recorded instead of
sent, and run at once in this process (``index_apply``, what the index worker runs), so a flip's
time is the service call plus the index task that rewrites every affected list.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np

from bench.common import REPO, django_migrated, median_p95_ms, sqlite_catalog_environment

_BENCH_LOCK_URL = "redis://127.0.0.1:6379/14"


def _setup(tmp: Path) -> None:
    os.environ.update(sqlite_catalog_environment(tmp))
    os.environ["LOOKALIKE_MATRIX_DIR"] = str(tmp / "matrix")
    os.environ.setdefault("LOOKALIKE_MODEL_DIR", str(REPO / "var" / "models"))
    os.environ.setdefault("LOOKALIKE_LOCK_URL", _BENCH_LOCK_URL)
    django_migrated()


def _queued_ids() -> list[list[int]]:
    """Record the index tasks the services queue (instead of sending them)."""
    from catalog.services import queue

    sent: list[list[int]] = []

    def record(self: queue.TaskSend) -> None:
        sent.append(list(self.kwargs.get("product_ids", [])))

    queue.TaskSend.__call__ = record  # type: ignore[method-assign]
    return sent


def _products(n: int, rng: np.random.Generator, start: int = 0) -> list[int]:
    from django.utils import timezone

    from catalog.models import Product
    from catalog.vectors import vector_key_current

    key, now = vector_key_current(), timezone.now()
    made = Product.objects.bulk_create([Product(
        name=f"p{i}", slug=f"p-{i}", sku=f"s{i}", category="c", image=f"x/{i}.png",
        image_sha256=f"{i:064d}", embedded_image_sha256=f"{i:064d}",
        status=Product.Status.PROCESSING, status_changed_at=now, vector_key=key,
        vector=rng.normal(size=1280).astype("<f4").tobytes()) for i in range(start, start + n)])
    return [p.pk for p in made]


def _run(sent: list[list[int]]) -> None:
    from catalog.services.indexing import index_apply

    while sent:
        index_apply(product_ids=sent.pop(0))


def _flips(ids: list[int], flips: int, rng: np.random.Generator, sent: list[list[int]]) -> dict:
    from catalog.services.merchandising import products_set_listed

    off: list[float] = []
    on: list[float] = []
    for pid in rng.choice(ids, flips, replace=False).tolist():
        for listed, times in ((False, off), (True, on)):
            t0 = time.perf_counter()
            products_set_listed(product_ids=[pid], listed=listed)
            _run(sent)
            times.append(time.perf_counter() - t0)
    return {"flip_off": median_p95_ms(off), "flip_on": median_p95_ms(on)}


def _add_ms(n: int, rng: np.random.Generator, repeats: int) -> float:
    from catalog.services.indexing import index_apply

    times = []
    for i in range(repeats):
        (pid,) = _products(1, rng, start=n + 10**6 + int(rng.integers(10**9)) + i)
        t0 = time.perf_counter()
        index_apply(product_ids=[pid])
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _rule_some(ids: list[int], rng: np.random.Generator, sent: list[list[int]]) -> int:
    """100 products not listed, 50 pins, 50 exclusions (through the services)."""
    from catalog.models import Product
    from catalog.services.merchandising import list_exclude, list_pin, products_set_listed

    picks = rng.choice(ids, 300, replace=False).tolist()
    products_set_listed(product_ids=picks[:100], listed=False)
    for i, (a, b) in enumerate(zip(picks[100:200], picks[200:300], strict=True)):
        y, x = Product.objects.get(pk=a), Product.objects.get(pk=b)
        if i % 2:
            list_pin(product=y, target=x, rank=int(rng.integers(1, 11)))
        else:
            list_exclude(product=y, target=x)
    _run(sent)
    return 200


def _copies(of: list[int]) -> list[int]:
    """A product copying each of ``of`` (the same photo bytes and vector): near-duplicates."""
    from django.utils import timezone

    from catalog.models import Product

    now = timezone.now()
    made = Product.objects.bulk_create([Product(
        name=f"copy {p.pk}", slug=f"copy-{p.pk}", sku=f"copy{p.pk}", category=p.category,
        image=p.image.name, image_sha256=p.image_sha256,
        embedded_image_sha256=p.embedded_image_sha256, status=Product.Status.PROCESSING,
        status_changed_at=now, vector_key=p.vector_key, vector=p.vector)
        for p in Product.objects.filter(pk__in=of)])
    return [p.pk for p in made]


def _collapsed(ids: list[int], flips: int, rng: np.random.Generator, sent: list[list[int]],
               repeats: int) -> dict:
    """Under the rules, with 100 copies added: flips and an add with
    ``LOOKALIKE_COLLAPSE_DUPLICATES`` off, then on (keys ``off`` and ``on``)."""
    from django.conf import settings

    from catalog.services.indexing import index_apply

    index_apply(product_ids=_copies(rng.choice(ids, 100, replace=False).tolist()))
    out = {}
    for collapse in (False, True):
        settings.LOOKALIKE_COLLAPSE_DUPLICATES = collapse
        try:
            out["on" if collapse else "off"] = {**_flips(ids, flips, rng, sent),
                                                "add_ms": _add_ms(len(ids), rng, repeats)}
        finally:
            settings.LOOKALIKE_COLLAPSE_DUPLICATES = False
    return out


def flip_and_add_times(tmp: Path, n: int, flips: int, seed: int) -> dict:
    """Build a catalog of ``n`` in ``tmp``; time flips, and adds without and with rules."""
    _setup(tmp)
    rng = np.random.default_rng(seed)
    sent = _queued_ids()
    ids = _products(n, rng)
    t0 = time.perf_counter()
    from catalog.services.indexing import index_apply

    for start in range(0, n, 2000):
        index_apply(product_ids=ids[start:start + 2000])
    build_s = time.perf_counter() - t0
    repeats = max(5, flips // 2)
    add_plain = _add_ms(n, rng, repeats)
    flips_out = _flips(ids, flips, rng, sent)
    ruled = _rule_some(ids, rng, sent)
    add_ruled = _add_ms(n, rng, repeats)
    collapsed = _collapsed(ids, flips, rng, sent, repeats)
    return {"n": n, "build_s": build_s, **flips_out, "add_plain_ms": add_plain,
            "add_ruled_ms": add_ruled, "ruled": ruled, "collapsed": collapsed}
