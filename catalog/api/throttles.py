"""Request limits on Django's cache (shared through Redis when CACHE_URL is set): per API
key, per client, and for search by photo per client (the API's and the storefront page's).

The client is REMOTE_ADDR, or, behind ``LOOKALIKE_TRUSTED_PROXIES`` reverse proxies, the
address the outermost trusted proxy saw: each proxy appends the address it received the
request from to X-Forwarded-For, so whatever a client writes there itself stays further left
and is never taken."""

from __future__ import annotations

from typing import Any

from django.conf import settings
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


class _SettingRateThrottle(SimpleRateThrottle):
    """A throttle whose rate is a setting, read at each request; a rate of 0 is off."""

    cache_format = "lookalike:throttle:%(scope)s:%(ident)s"

    def __init__(self) -> None:  # the rate is read per request, not at construction
        pass

    def allow_request(self, request: Any, view: Any) -> bool:
        self.rate = self.rate_setting()
        self.num_requests, self.duration = rate_parse(self.rate)
        if self.num_requests == 0:
            return True
        return super().allow_request(request, view)

    def rate_setting(self) -> str:
        raise NotImplementedError

    def wait(self) -> float | None:
        wait = super().wait()
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
