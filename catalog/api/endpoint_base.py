"""What every REST API view shares: keys, scopes, throttles, JSON, the error format, and the
refusal of an oversized body before it is read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from catalog.api.api_errors import ApiError, exception_handler
from catalog.api.keys_auth import ApiKeyAuthentication, ScopePermission
from catalog.api.throttles import ApiClientThrottle, ApiKeyThrottle, rate_describe
from catalog.forms import human_bytes

# Room for the multipart framing and the other fields around the photo itself.
BODY_OVERHEAD = 64 * 1024


def _content_length(request: Request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


class ApiView(APIView):
    authentication_classes = (ApiKeyAuthentication,)
    permission_classes = (ScopePermission,)
    throttle_classes: tuple[Any, ...] = (ApiKeyThrottle, ApiClientThrottle)
    renderer_classes = (JSONRenderer,)
    parser_classes = (MultiPartParser, FormParser, JSONParser)
    # Search posts a photo but only reads: it needs the read scope.
    reads_only = False

    def get_exception_handler(self) -> Callable[..., Any]:
        return exception_handler

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # keys, scopes, throttles first
        length, limit = _content_length(request), self.body_limit()
        if length > limit + BODY_OVERHEAD:
            raise ApiError(413, "too_large",
                           f"the request is {human_bytes(length)}, over the {human_bytes(limit)} "
                           "limit")

    def check_throttles(self, request: Request) -> None:
        for throttle in self.get_throttles():
            if not throttle.allow_request(request, self):
                wait = int(throttle.wait() or 1)
                rate, scope = getattr(throttle, "rate", ""), getattr(throttle, "scope", "")
                raise ApiError(429, "rate_limited",
                               f"too many requests: the limit is {rate_describe(rate)} "
                               f"({scope}); retry in {wait} s", wait=wait)

    def body_limit(self) -> int:
        return int(settings.LOOKALIKE_MAX_UPLOAD_BYTES)
