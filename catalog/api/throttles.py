"""Request limits on Django's cache (shared through Redis when CACHE_URL is set): per API
key, per client, and for search by photo per client (the API's and the storefront page's).

The client is REMOTE_ADDR, or, behind ``LOOKALIKE_TRUSTED_PROXIES`` reverse proxies, the
address the outermost trusted proxy saw: each proxy appends the address it received the
request from to X-Forwarded-For, so whatever a client writes there itself stays further left
and is never taken."""

from __future__ import annotations

import secrets
from functools import lru_cache
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.http import HttpRequest
from rest_framework.throttling import SimpleRateThrottle

from catalog.models import ApiKey

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_UNITS = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}


def rate_parse(text: str) -> tuple[int, int]:
    """"30/m" → (30, 60); a count of 0 turns the limit off. ``ValueError`` names a bad rate."""
    count, _, unit = text.strip().partition("/")
    unit = unit.strip().lower()
    if not count.strip().isdigit() or unit not in {"s", "m", "h", "d", "sec", "min", "hour",
                                                      "day", "second", "minute"}:
        raise ValueError(f"bad rate {text!r}: use N/s, N/m, N/h or N/d")
    return int(count), _PERIODS[unit[0]]


def rate_describe(text: str) -> str:
    count, period = rate_parse(text)
    return f"{count} per {_UNITS[period]}"


def client_address(request: HttpRequest) -> str:
    remote = request.META.get("REMOTE_ADDR") or "unknown"
    trusted = settings.LOOKALIKE_TRUSTED_PROXIES
    if trusted <= 0:
        return remote
    hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    chain = [h for h in hops if h] + [remote]
    return chain[max(len(chain) - 1 - trusted, 0)]


# DRF's sliding window in one round trip, as a sorted set of request times: forget the times
# older than the window, and add this request's if fewer than the limit remain. Over the
# limit: the count and the oldest time, which give DRF's wait.
_WINDOW_LUA = """
local key, now, window = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count >= tonumber(ARGV[3]) then
  return {0, count, redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2]}
end
redis.call('ZADD', key, now, ARGV[4])
redis.call('PEXPIRE', key, math.ceil(window * 1000))
return {1, count + 1, '0'}
"""


@lru_cache(maxsize=4)
def _window_script(url: str) -> Any:
    return redis.Redis.from_url(url).register_script(_WINDOW_LUA)


def _redis_url() -> str | None:
    """The cache's Redis URL, or None when the cache is not Redis (a process's memory)."""
    if not isinstance(caches["default"], RedisCache):
        return None
    return str(settings.CACHES["default"]["LOCATION"])


class _SettingRateThrottle(SimpleRateThrottle):
    """A throttle whose rate is a setting, read at each request; a rate of 0 is off. On a
    Redis cache, one round trip a request (DRF's own takes a read and a write)."""

    # On Redis a sorted set: a name of its own, never a key holding DRF's pickled list.
    cache_format = "lookalike:throttle:window:%(scope)s:%(ident)s"

    def __init__(self) -> None:  # the rate is read per request, not at construction
        self.over: tuple[int, float] | None = None  # (requests in the window, the oldest's time)

    def allow_request(self, request: Any, view: Any) -> bool:
        self.rate = self.rate_setting()
        self.num_requests, self.duration = rate_parse(self.rate)
        if self.num_requests == 0:
            return True
        url = _redis_url()
        if url is None:
            return super().allow_request(request, view)
        key = self.get_cache_key(request, view)
        return True if key is None else self._allow_in_redis(url, key)

    def _allow_in_redis(self, url: str, key: str) -> bool:
        self.now = self.timer()
        allowed, count, oldest = _window_script(url)(
            keys=[cache.make_key(key)],
            args=[self.now, self.duration, self.num_requests, f"{self.now!r}-{secrets.token_hex(4)}"])
        self.over = None if allowed else (int(count), float(oldest))
        return bool(allowed)

    def rate_setting(self) -> str:
        raise NotImplementedError

    def wait(self) -> float | None:
        if self.over is None:
            wait = super().wait()
        else:  # DRF's wait, from the window's count and oldest time
            count, oldest = self.over
            available = self.num_requests - count + 1
            wait = (self.duration - (self.now - oldest)) / available if available > 0 else None
        return None if wait is None else max(1.0, float(int(wait + 0.999)))


class ApiKeyThrottle(_SettingRateThrottle):
    scope = "api-key"

    def rate_setting(self) -> str:
        return str(settings.LOOKALIKE_API_KEY_RATE)

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        key = getattr(request, "auth", None)
        if not isinstance(key, ApiKey):
            return None
        return self.cache_format % {"scope": self.scope, "ident": key.pk}


class ApiClientThrottle(_SettingRateThrottle):
    scope = "api-client"

    def rate_setting(self) -> str:
        return str(settings.LOOKALIKE_API_CLIENT_RATE)

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": client_address(request)}


class SearchThrottle(ApiClientThrottle):
    """Search by photo per client, for the API and the storefront page alike."""

    scope = "search"

    def rate_setting(self) -> str:
        return str(settings.LOOKALIKE_SEARCH_RATE)
