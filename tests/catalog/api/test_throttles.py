"""Throttles per key and per client (behind trusted proxies, not fooled by a forged
X-Forwarded-For), and CORS for the configured storefront origins."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from catalog.api.throttles import client_address, rate_parse
from tests.catalog.api.conftest import bearer

pytestmark = pytest.mark.django_db
PROXY = "10.0.0.1"


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch):
    monkeypatch.setattr("catalog.api.throttles._SettingRateThrottle.timer",
                        staticmethod(lambda: 1_000_000.0))


def statuses(client, n: int, **headers) -> list[int]:
    return [client.get("/api/v1/products", **headers).status_code for _ in range(n)]


def test_the_key_limit_holds_per_key(client, settings, read_key, write_key):
    settings.LOOKALIKE_API_KEY_RATE = "2/m"
    assert statuses(client, 3, **bearer(read_key)) == [200, 200, 429]
    assert statuses(client, 1, **bearer(write_key)) == [200]  # another key has its own budget
    limited = client.get("/api/v1/products", **bearer(read_key))
    assert limited.json()["reason"] == "rate_limited" and limited["Retry-After"] == "60"
    assert "2 per minute" in limited.json()["error"]


def test_behind_a_trusted_proxy_each_shopper_has_a_bucket(client, settings):
    settings.LOOKALIKE_TRUSTED_PROXIES = 1
    settings.LOOKALIKE_API_CLIENT_RATE = "2/m"
    alice = {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": "203.0.113.7"}
    bob = {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": "198.51.100.9"}
    assert statuses(client, 3, **alice) == [200, 200, 429]
    assert statuses(client, 2, **bob) == [200, 200]


def test_a_forged_forwarded_for_does_not_dodge_the_limit(client, settings):
    settings.LOOKALIKE_TRUSTED_PROXIES = 1
    settings.LOOKALIKE_API_CLIENT_RATE = "2/m"
    # The proxy appends the real address after whatever the client wrote.
    forged = [client.get("/api/v1/products", REMOTE_ADDR=PROXY,
                         HTTP_X_FORWARDED_FOR=f"1.2.3.{i}, 203.0.113.7").status_code
              for i in range(3)]
    assert forged == [200, 200, 429]


def test_without_trusted_proxies_the_header_is_ignored(settings):
    settings.LOOKALIKE_TRUSTED_PROXIES = 0
    request = RequestFactory().get("/", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="1.1.1.1")
    assert client_address(request) == "192.0.2.1"
    settings.LOOKALIKE_TRUSTED_PROXIES = 2
    request = RequestFactory().get("/", REMOTE_ADDR=PROXY,
                                   HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7, 10.0.0.2")
    assert client_address(request) == "203.0.113.7"


def test_a_zero_rate_turns_a_limit_off(client, settings):
    settings.LOOKALIKE_API_CLIENT_RATE = "0/m"
    assert set(statuses(client, 5)) == {200}
    assert rate_parse("30/m") == (30, 60)


def test_cors_for_an_allowed_and_a_foreign_origin(client, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://shop.example"]
    allowed = client.get("/api/v1/products", HTTP_ORIGIN="https://shop.example")
    assert allowed["Access-Control-Allow-Origin"] == "https://shop.example"
    preflight = client.options("/api/v1/products", HTTP_ORIGIN="https://shop.example",
                               HTTP_ACCESS_CONTROL_REQUEST_METHOD="PUT",
                               HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization")
    assert "authorization" in preflight["Access-Control-Allow-Headers"]
    foreign = client.get("/api/v1/products", HTTP_ORIGIN="https://evil.example")
    assert foreign.status_code == 200 and "Access-Control-Allow-Origin" not in foreign
    storefront = client.get("/", HTTP_ORIGIN="https://shop.example")
    assert "Access-Control-Allow-Origin" not in storefront  # only /api/


@pytest.fixture(params=["memory", "redis"])
def throttle_cache(request, settings):
    """The limits on a process's memory, or on Redis (the suite's database) as in production,
    where a request is one round trip."""
    if request.param == "memory":
        yield
        return
    import redis

    url = settings.LOOKALIKE_LOCK_URL
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": url}}
    client = redis.Redis.from_url(url)

    def forget() -> None:
        for key in client.scan_iter("*lookalike:throttle:*"):
            client.delete(key)

    forget()
    yield
    forget()


def test_the_window_slides_and_retry_after_is_the_same_on_either_cache(client, settings,
                                                                        monkeypatch,
                                                                        throttle_cache):
    settings.LOOKALIKE_TRUSTED_PROXIES = 1
    settings.LOOKALIKE_API_CLIENT_RATE = "3/m"
    clock = {"now": 1_000_000.0}
    monkeypatch.setattr("catalog.api.throttles._SettingRateThrottle.timer",
                        staticmethod(lambda: clock["now"]))
    alice = {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": "203.0.113.7"}
    seen = []
    for at in (0, 10, 20, 30, 61, 62, 75):
        clock["now"] = 1_000_000.0 + at
        response = client.get("/api/v1/products", **alice)
        seen.append((at, response.status_code, response.get("Retry-After")))
    # At 61 the request of 0 has left the window; at 62 the oldest is the one of 10.
    assert seen == [(0, 200, None), (10, 200, None), (20, 200, None), (30, 429, "30"),
                    (61, 200, None), (62, 429, "8"), (75, 200, None)]
    bob = {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": "198.51.100.9"}
    assert client.get("/api/v1/products", **bob).status_code == 200
