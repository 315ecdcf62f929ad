"""The Celery tasks: thin, acks_late, routed to their queues, permanent errors not retried."""

from __future__ import annotations

import pytest
from django.db import OperationalError
from django_celery_beat.models import PeriodicTask

from catalog.models import Product
from catalog.services.beat import NIGHTLY_REBUILD, RECONCILE_SWEEP, beat_schedule_ensure
from similarity.errors import ImageRejected
from workers import tasks
from workers.app import app

ALL = [tasks.embed_products, tasks.index_products, tasks.remove_products,
       tasks.rebuild_similarity, tasks.reconcile]


def test_app_uses_django_settings_and_djangotask():
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    assert all(hasattr(t, "delay_on_commit") for t in ALL)


@pytest.mark.parametrize(
    ("task", "queue"),
    [
        ("workers.tasks.embed_products", "embed"),
        ("workers.tasks.index_products", "index"),
        ("workers.tasks.remove_products", "index"),
        ("workers.tasks.rebuild_similarity", "index"),
        ("workers.tasks.reconcile", "index"),
    ],
)
def test_routes(task, queue):
    assert task in app.tasks
    assert app.amqp.router.route({}, task)["queue"].name == queue


def test_every_task_is_acks_late_and_never_retries_rejected_images():
    for t in ALL:
        assert t.acks_late is True
        assert ImageRejected in t.dont_autoretry_for
        assert t.retry_backoff


def test_rejected_image_is_not_retried_but_transient_errors_are(monkeypatch):
    from catalog.services import product_embedding

    def rejected(**kwargs):
        raise ImageRejected("truncated", "cut short")

    monkeypatch.setattr(product_embedding, "products_embed", rejected)
    result = tasks.embed_products.apply(args=[[1]])
    assert result.state == "FAILURE" and "cut short" in str(result.result)

    calls = []

    def rejected_counted(**kwargs):
        calls.append(1)
        raise ImageRejected("truncated", "cut short")

    monkeypatch.setattr(product_embedding, "products_embed", rejected_counted)
    tasks.embed_products.apply(args=[[1]])
    assert len(calls) == 1

    def flaky(**kwargs):
        calls.append(1)
        raise OperationalError("database is locked")

    calls.clear()
    monkeypatch.setattr(product_embedding, "products_embed", flaky)
    result = tasks.embed_products.apply(args=[[1]])  # eager: retries run at once
    assert result.state == "FAILURE"
    assert len(calls) == tasks.embed_products.max_retries + 1


@pytest.mark.django_db
def test_tasks_call_the_services(model_path, settings, tmp_path):
    from catalog import engine
    from catalog.services.products import product_create
    from tests.pipeline.helpers import fashion_images, neighbour_mismatches, upload

    settings.LOOKALIKE_MATRIX_DIR = tmp_path / "matrix"
    engine.matrix_forget()
    products = [
        product_create(name=cls, category=cls, image=upload(data))
        for cls, data in fashion_images(1)
    ]
    ids = [p.pk for p in products]
    counts = {"embedded": len(ids), "current": 0, "failed": 0, "unknown": 0}
    assert tasks.embed_products.apply(args=[ids]).get() == counts
    assert tasks.index_products.apply(args=[ids]).get() == {"lists_rewritten": len(ids),
                                                            "unknown": 0}
    assert tasks.embed_products.apply(args=[[*ids, 10**9]]).get() == {
        "embedded": 0, "current": len(ids), "failed": 0, "unknown": 1}
    assert set(Product.objects.values_list("status", flat=True)) == {"ready"}
    assert neighbour_mismatches() == []
    Product.objects.filter(pk=ids[0]).delete()
    assert tasks.remove_products.apply(args=[[ids[0]]]).get() > 0
    assert neighbour_mismatches() == []
    run_id = tasks.rebuild_similarity.apply(kwargs={"trigger": "test"}).get()
    assert run_id
    assert tasks.reconcile.apply().get()["requeued"] == 0
    engine.matrix_forget()


@pytest.mark.django_db
def test_beat_schedule_exists_after_migrate_and_is_staff_editable():
    rebuild = PeriodicTask.objects.get(name=NIGHTLY_REBUILD)
    assert rebuild.task == "workers.tasks.rebuild_similarity"
    assert (rebuild.crontab.minute, rebuild.crontab.hour) == ("0", "3")
    assert rebuild.crontab.day_of_week == "*" and rebuild.enabled
    sweep = PeriodicTask.objects.get(name=RECONCILE_SWEEP)
    assert sweep.task == "workers.tasks.reconcile"
    assert (sweep.interval.every, sweep.interval.period) == (10, "minutes")
    # staff move it to 04:30: ensuring again keeps their choice and creates no duplicate
    rebuild.crontab.hour, rebuild.crontab.minute = "4", "30"
    rebuild.crontab.save()
    beat_schedule_ensure()
    assert PeriodicTask.objects.filter(name=NIGHTLY_REBUILD).count() == 1
    assert PeriodicTask.objects.get(name=NIGHTLY_REBUILD).crontab.hour == "4"
    # deleted by mistake: the next migrate (or ensure) brings it back
    PeriodicTask.objects.filter(name=RECONCILE_SWEEP).delete()
    beat_schedule_ensure()
    assert PeriodicTask.objects.filter(name=RECONCILE_SWEEP).exists()
