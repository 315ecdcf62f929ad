"""GET /healthz/: 200 and "ok" with the database and real Redis up, 503 naming what is down."""

import pytest
from django.urls import reverse

from tests.catalog.selectors.test_health import closed_port_url

pytestmark = pytest.mark.django_db


def test_health_answers_ok(client):
    response = client.get(reverse("health"))
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def test_health_answers_503_when_redis_is_down(client, settings):
    settings.CELERY_BROKER_URL = closed_port_url()
    response = client.get(reverse("health"))
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "checks": {"database": "ok", "redis": "unavailable"}}


def test_health_refuses_writes(client):
    assert client.post(reverse("health")).status_code == 405
