"""One error format for every 4xx and 5xx of the API:
``{"error": <message>, "reason": <code>, "status": <HTTP status>, "fields": {<field>: [..]}}``
(``fields`` only for invalid input). Photo refusals carry the engine's reason (``too_large``,
``truncated``, ``decompression_bomb``, …). The old endpoints' ``error`` and ``reason`` keep
their meaning."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import (
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import server_error
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"
_PHOTO_STATUS = {"too_large": status.HTTP_413_REQUEST_ENTITY_TOO_LARGE}


class ApiError(exceptions.APIException):
    """An API refusal with its status, reason code and message (and field errors)."""

    def __init__(self, status_code: int, reason: str, message: str,
                 fields: dict[str, list[str]] | None = None, *, wait: int | None = None) -> None:
        super().__init__(detail=message, code=reason)
        self.status_code = status_code
        self.reason = reason
        self.fields = fields
        self.wait = wait  # seconds, for Retry-After


def error_body(status_code: int, reason: str, message: str,
               fields: dict[str, list[str]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": message, "reason": reason, "status": status_code}
    if fields:
        body["fields"] = fields
    return body


def photo_error(exc: DjangoValidationError, *, field: str = "image") -> ApiError:
    """A refused photo (``image_check``'s ValidationError, code = the engine's reason)."""
    reason = str(exc.code or "invalid")
    message = " ".join(exc.messages)
    return ApiError(_PHOTO_STATUS.get(reason, 400), reason, message, {field: [message]})


def _flatten(detail: Any) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        return {str(k): [str(m) for m in (v if isinstance(v, list) else [v])]
                for k, v in detail.items()}
    return {"non_field_errors": [str(m) for m in (detail if isinstance(detail, list) else [detail])]}


def _validation_body(exc: exceptions.ValidationError) -> dict[str, Any]:
    fields = _flatten(exc.detail)
    summary = "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in fields.items())
    return error_body(400, "invalid", summary or "invalid input", fields)


def _body(exc: exceptions.APIException) -> dict[str, Any]:
    if isinstance(exc, ApiError):
        return error_body(exc.status_code, exc.reason, str(exc.detail), exc.fields)
    if isinstance(exc, exceptions.ValidationError):
        return _validation_body(exc)
    codes = exc.get_codes()
    reason = codes if isinstance(codes, str) else "error"
    return error_body(exc.status_code, reason, str(exc.detail))


# Django's own limits on a request body, met while DRF parses it.
_BODY_LIMITS: tuple[tuple[type[Exception], int, str, str], ...] = (
    (TooManyFilesSent, 400, "too_many_files",
     "too many files in one request (DATA_UPLOAD_MAX_NUMBER_FILES)"),
    (TooManyFieldsSent, 400, "too_many_fields",
     "too many fields in one request (DATA_UPLOAD_MAX_NUMBER_FIELDS)"),
    (RequestDataTooBig, 413, "too_large",
     "the request's fields are over DATA_UPLOAD_MAX_MEMORY_SIZE"),
)


def _body_limit_error(exc: Exception) -> ApiError | None:
    for kind, status_code, reason, message in _BODY_LIMITS:
        if isinstance(exc, kind):
            return ApiError(status_code, reason, message)
    return None


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler with the API's error format; any other exception is a JSON 500."""
    exc = _body_limit_error(exc) or exc
    if isinstance(exc, Http404):
        exc = ApiError(404, "not_found", str(exc) or "not found")
    elif isinstance(exc, DjangoValidationError):
        exc = photo_error(exc) if exc.code else ApiError(400, "invalid", " ".join(exc.messages))
    elif not isinstance(exc, exceptions.APIException):
        logger.exception("API error", exc_info=exc)
        set_rollback()
        return Response(error_body(500, "server_error", "internal error"), status=500)
    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))  # type: ignore[attr-defined]
    set_rollback()
    return Response(_body(exc), status=exc.status_code, headers=headers)


def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Any other path under /api/: a JSON 404, not Django's HTML page."""
    return JsonResponse(error_body(404, "not_found", f"no API endpoint at {request.path}"),
                        status=404)


def handler500(request: HttpRequest) -> HttpResponse:
    """A JSON 500 for API paths, Django's page elsewhere."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse(error_body(500, "server_error", "internal error"), status=500)
    return server_error(request)
