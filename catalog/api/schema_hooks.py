"""The OpenAPI schema's shared parts: the API key scheme, and the error answers every
operation can give, all in the one error format."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension

ERROR_STATUSES = {
    "400": "Invalid input, or a refused photo (its reason: empty, unreadable, "
           "unsupported_format, truncated, decompression_bomb, …).",
    "401": "No API key where one is needed (key_required), or an unknown or revoked key.",
    "403": "The key's scope does not allow this (insufficient_scope).",
    "404": "No such product, or no such endpoint.",
    "405": "Method not allowed.",
    "406": "Only application/json answers are made.",
    "413": "The request or photo is over LOOKALIKE_MAX_UPLOAD_BYTES (too_large).",
    "415": "Unsupported Content-Type.",
    "429": "Too many requests (rate_limited): see Retry-After.",
    "500": "Internal error.",
}
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "reason", "status"],
    "properties": {
        "error": {"type": "string", "description": "What was wrong, for a person."},
        "reason": {"type": "string", "description": "A machine-readable code."},
        "status": {"type": "integer", "description": "The HTTP status."},
        "fields": {"type": "object", "description": "Messages per invalid field.",
                   "additionalProperties": {"type": "array", "items": {"type": "string"}}},
    },
}
EXAMPLE = {"error": "no product with SKU 'ab-1'", "reason": "not_found", "status": 404}


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "catalog.api.keys_auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "http", "scheme": "bearer",
                "description": "An API key made in the admin: `Authorization: Bearer <key>` "
                              "(or `X-API-Key: <key>`). Reads may be open "
                              "(LOOKALIKE_API_OPEN_READS); writes need the write scope."}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}, "example": EXAMPLE}}}


def add_error_responses(result: dict[str, Any], generator: Any, request: Any,
                        public: bool) -> dict[str, Any]:
    """Every operation documents every error status with the Error schema (those it declares
    itself too, such as PUT's 409); reads (GET and search by photo) are open without a key
    where the setting says so."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            responses = operation.setdefault("responses", {})
            for code, description in ERROR_STATUSES.items():
                responses.setdefault(code, _error_response(description))
            for code, response in responses.items():  # an operation's own error statuses
                if code >= "400" and "content" not in response:
                    responses[code] = _error_response(response.get("description", ""))
            reads = method == "get" or "search" in operation.get("operationId", "")
            if settings.LOOKALIKE_API_OPEN_READS and reads:  # no key needed
                operation.setdefault("security", []).append({})
    return result
