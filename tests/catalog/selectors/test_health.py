"""catalog.selectors.health: the database and the real Redis answer, or the report says which not."""

import socket

import pytest
from django.db import OperationalError, connection

from catalog.selectors.health import deployment_health

pytestmark = pytest.mark.django_db


def closed_port_url() -> str:
    """A Redis URL on a local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def test_healthy_when_database_and_redis_answer():
    report = deployment_health()
    assert report.checks == {"database": True, "redis": True}
    assert report.healthy


def test_redis_that_does_not_answer_is_reported(caplog):
    report = deployment_health(redis_url=closed_port_url(), timeout=0.5)
    assert report.checks == {"database": True, "redis": False}
    assert not report.healthy
    assert "redis does not answer" in caplog.text


def test_database_that_fails_is_reported(monkeypatch):
    def refuse(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", refuse)
    report = deployment_health()
    assert report.checks == {"database": False, "redis": True}
    assert not report.healthy
