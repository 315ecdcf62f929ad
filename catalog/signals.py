"""Signal handlers. Writes to products go through catalog.services, not through signals."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models.signals import post_migrate


def _beat_schedule_after_migrate(sender: AppConfig, using: str = DEFAULT_DB_ALIAS,
                                 **kwargs: Any) -> None:
    """After ``migrate``: make sure the periodic tasks exist (see catalog.services.beat)."""
    if sender.name != "catalog":
        return
    tables = connections[using].introspection.table_names()
    if "django_celery_beat_periodictask" not in tables or "catalog_product" not in tables:
        return
    from catalog.services.beat import beat_schedule_ensure

    beat_schedule_ensure()


def connect() -> None:
    post_migrate.connect(_beat_schedule_after_migrate, dispatch_uid="catalog.beat_schedule")
