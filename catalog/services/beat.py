"""The periodic tasks, stored with django-celery-beat so staff can edit them in the admin."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.db import transaction
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from catalog.task_names import INDEX_QUEUE, REBUILD, RECONCILE, SWEEP_LOST

NIGHTLY_REBUILD = "nightly similarity rebuild"
RECONCILE_SWEEP = "reconcile stuck products"
LOST_SWEEP = "re-queue lost products"


@transaction.atomic
def beat_schedule_ensure() -> list[PeriodicTask]:
    """Create the periodic tasks if missing; never overwrite what staff changed.

    - "nightly similarity rebuild": the rebuild task at 03:00 daily;
    - "reconcile stuck products": the reconcile task every 10 minutes;
    - "re-queue lost products": the idle sweep every ``LOOKALIKE_IDLE_SWEEP_SECONDS``; each
      run expires after one interval, so runs never pile up behind a long task.
    """
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="0", hour="3", day_of_week="*", day_of_month="*", month_of_year="*",
        timezone=settings.TIME_ZONE,
    )
    every_10, _ = IntervalSchedule.objects.get_or_create(every=10, period=IntervalSchedule.MINUTES)
    seconds = settings.LOOKALIKE_IDLE_SWEEP_SECONDS
    every_s, _ = IntervalSchedule.objects.get_or_create(every=seconds, period=IntervalSchedule.SECONDS)
    return [
        _ensure(NIGHTLY_REBUILD, REBUILD, crontab=crontab, kwargs=json.dumps({"trigger": "beat"}),
                description="Re-embed stale products, rebuild the matrix and every neighbour list."),
        _ensure(RECONCILE_SWEEP, RECONCILE, interval=every_10,
                description="Re-queue products stuck in pending/processing; repair drift."),
        _ensure(LOST_SWEEP, SWEEP_LOST, interval=every_s, expire_seconds=seconds,
                description="Re-queue products pending while every queue is empty and every "
                            "worker idle (their task was lost)."),
    ]


def _ensure(name: str, task: str, **defaults: Any) -> PeriodicTask:
    periodic, _ = PeriodicTask.objects.get_or_create(
        name=name, defaults={"task": task, "queue": INDEX_QUEUE, **defaults}
    )
    return periodic
