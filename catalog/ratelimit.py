"""A small fixed-window rate limit per client IP, kept in Django's cache.

The rate is "N/s", "N/m", "N/h" or "N/d" (settings.LOOKALIKE_SEARCH_RATE). With several web
processes the cache must be shared (Redis, memcached) for the limit to be global; with the
default local-memory cache each process counts on its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.core.cache import cache
from django.http import HttpRequest

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Rate:
    limit: int
    period: int  # seconds

    def describe(self) -> str:
        unit = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}.get(
            self.period, f"{self.period} s"
        )
        return f"{self.limit} per {unit}"


def parse_rate(text: str) -> Rate:
    """'30/m' → Rate(30, 60). A limit of 0 disables the check."""
    try:
        count, unit = text.strip().split("/", 1)
        unit = unit.strip().lower()
        period = _PERIODS[unit[:1]] * (int(unit[1:]) if unit[1:].isdigit() else 1)
        limit = int(count)
    except (ValueError, KeyError, IndexError) as exc:
        raise ValueError(f"bad rate {text!r}: use N/s, N/m, N/h or N/d") from exc
    if limit < 0:
        raise ValueError(f"bad rate {text!r}: the count must not be negative")
    return Rate(limit, period)


def _now() -> float:
    return time.time()


def client_ip(request: HttpRequest) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is set by the client unless a proxy rewrites it.
    return request.META.get("REMOTE_ADDR") or "unknown"


def hit(request: HttpRequest, *, scope: str, rate: str) -> tuple[bool, int]:
    """Count one request; return (allowed, seconds until the window resets)."""
    parsed = parse_rate(rate)
    if parsed.limit == 0:
        return True, 0
    now = int(_now())
    window = now // parsed.period
    key = f"lookalike:rl:{scope}:{client_ip(request)}:{window}"
    cache.add(key, 0, timeout=parsed.period + 1)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=parsed.period + 1)
        count = 1
    retry_after = (window + 1) * parsed.period - now
    return count <= parsed.limit, max(retry_after, 1)
