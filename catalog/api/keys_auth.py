"""API keys on requests: ``Authorization: Bearer <key>`` (or ``X-API-Key: <key>``), and the
scope each operation needs. Reads may be open to anyone (``LOOKALIKE_API_OPEN_READS``);
writes always need a key with the write scope."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from rest_framework import authentication, permissions
from rest_framework.request import Request

from catalog.api.api_errors import ApiError
from catalog.models import ApiKey
from catalog.selectors.api_reads import api_key_find

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def _raw_key(request: Request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise ApiError(401, "bad_key", "the Authorization header must be 'Bearer <API key>'")
        return value.strip()
    return request.META.get("HTTP_X_API_KEY") or None


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """No key: anonymous. A key that is unknown or revoked: 401, even where reads are open."""

    def authenticate(self, request: Request) -> tuple[AnonymousUser, ApiKey] | None:
        raw = _raw_key(request)
        if raw is None:
            return None
        key = api_key_find(raw=raw)
        if key is None:
            raise ApiError(401, "bad_key", "unknown API key")
        if not key.is_active:
            raise ApiError(401, "revoked_key", f"the API key {key.prefix}… was revoked")
        return AnonymousUser(), key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="lookalike"'


def required_scope(request: Request, view: Any) -> str:
    """"read" for safe methods and for views that only read (search), else "write"."""
    if request.method in SAFE_METHODS or getattr(view, "reads_only", False):
        return ApiKey.Scope.READ
    return ApiKey.Scope.WRITE


class ScopePermission(permissions.BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        scope = required_scope(request, view)
        key = request.auth
        if not isinstance(key, ApiKey):
            if scope == ApiKey.Scope.READ and settings.LOOKALIKE_API_OPEN_READS:
                return True
            raise ApiError(401, "key_required", f"this operation needs an API key ({scope} scope)")
        if scope == ApiKey.Scope.WRITE and key.scope != ApiKey.Scope.WRITE:
            raise ApiError(403, "insufficient_scope",
                           f"the API key {key.prefix}… has the read scope; this operation writes")
        return True
