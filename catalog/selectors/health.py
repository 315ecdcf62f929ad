"""Whether this process reaches what every request and task needs: the database and Redis.

Read by the health endpoint that container healthchecks and load balancers ask.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)
REDIS_TIMEOUT = 2.0


@dataclass(frozen=True)
class HealthReport:
    """Each dependency by name: True if it answered."""

    checks: dict[str, bool]

    @property
    def healthy(self) -> bool:
        return all(self.checks.values())


def _database_answers() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _redis_answers(*, url: str, timeout: float) -> None:
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        client.ping()
    finally:
        client.close()


def _answers(name: str, probe: Callable[[], None]) -> bool:
    try:
        probe()
    except Exception as exc:  # any failure means unhealthy; the log says which
        logger.warning("health check: %s does not answer: %s", name, exc)
        return False
    return True


def deployment_health(*, redis_url: str | None = None, timeout: float = REDIS_TIMEOUT) -> HealthReport:
    """Ask the database and the broker's Redis (``redis_url``, default the broker) to answer."""
    url = redis_url or settings.CELERY_BROKER_URL
    return HealthReport(checks={
        "database": _answers("database", _database_answers),
        "redis": _answers("redis", lambda: _redis_answers(url=url, timeout=timeout)),
    })
