"""The periodic tasks, stored with django-celery-beat so staff can edit them in the admin."""

from __future__ import annotations

import json

from django.conf import settings
from django.db import transaction
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

NIGHTLY_REBUILD = "nightly similarity rebuild"
RECONCILE = "reconcile stuck products"


@transaction.atomic
def beat_schedule_ensure() -> list[PeriodicTask]:
    """Create the two periodic tasks if missing; never overwrite what staff changed.

    - "nightly similarity rebuild": ``workers.tasks.rebuild_similarity`` at 03:00 daily;
    - "reconcile stuck products": ``workers.tasks.reconcile`` every 10 minutes.
    """
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="0", hour="3", day_of_week="*", day_of_month="*", month_of_year="*",
        timezone=settings.TIME_ZONE,
    )
    every_10, _ = IntervalSchedule.objects.get_or_create(every=10, period=IntervalSchedule.MINUTES)
    rebuild, _ = PeriodicTask.objects.get_or_create(
        name=NIGHTLY_REBUILD,
        defaults={
            "task": "workers.tasks.rebuild_similarity",
            "crontab": crontab,
            "kwargs": json.dumps({"trigger": "beat"}),
            "queue": "index",
            "description": "Re-embed stale products, rebuild the matrix and every neighbour list.",
        },
    )
    sweep, _ = PeriodicTask.objects.get_or_create(
        name=RECONCILE,
        defaults={
            "task": "workers.tasks.reconcile",
            "interval": every_10,
            "queue": "index",
            "description": "Re-queue products stuck in pending/processing; repair drift.",
        },
    )
    return [rebuild, sweep]
