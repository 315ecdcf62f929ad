"""/api/v1/products/batch: many products by SKU in one request, as ``import_catalog`` syncs a
manifest. Photos travel in the same multipart request and a row names its photo by the uploaded
file's name; a row may instead keep the stored photo by naming its sha256. The server never
reads a path or fetches a URL for a row."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from functools import partial
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from catalog.api.api_errors import ApiError
from catalog.api.endpoint_base import ApiView
from catalog.services.catalog_sync import SyncResult, catalog_sync
from catalog.services.manifest_rows import (
    PhotoLoader,
    RowFailure,
    RowRefused,
    photo_read_bounded,
    rows_collect,
)

BATCH_FIELDS = ("sku", "name", "category", "photo", "photo_sha256")
OUTCOMES = ("created", "changed", "unchanged", "failed")


class BatchRowSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=64, help_text="The shop's product id.")
    name = serializers.CharField(max_length=200)
    category = serializers.CharField(max_length=64)
    photo = serializers.CharField(
        required=False, help_text="The file name of one of the photos sent in ``photos``.")
    photo_sha256 = serializers.CharField(
        required=False, help_text="Instead of ``photo``: keep the stored photo, whose sha256 "
                                  "this must be (the product's ``image_sha256``).")


class BatchMultipart(serializers.Serializer):
    rows = serializers.CharField(help_text="A JSON array of rows, each as BatchRowRequest.")
    photos = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True), required=False,
        help_text="The photos the rows name, each checked as the admin checks a photo.")


class BatchJson(serializers.Serializer):
    rows = BatchRowSerializer(many=True, help_text="Rows keeping their stored photos "
                                                   "(``photo_sha256``); send new photos as "
                                                   "multipart.")


class BatchResultRow(serializers.Serializer):
    row = serializers.IntegerField(help_text="The row's position in ``rows``, from 1.")
    sku = serializers.CharField(allow_blank=True)
    outcome = serializers.ChoiceField(choices=OUTCOMES)
    reason = serializers.CharField(required=False, help_text="Why a row failed (a code).")
    error = serializers.CharField(required=False, help_text="Why a row failed, for a person.")


class BatchResult(serializers.Serializer):
    created = serializers.IntegerField()
    changed = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    failed = serializers.IntegerField()
    results = BatchResultRow(many=True)


def _max_rows() -> int:
    return int(settings.LOOKALIKE_API_BATCH_MAX_ROWS)


def _rows_given(request: Request) -> Any:
    if not isinstance(request.data, Mapping):
        raise ApiError(400, "invalid", "the body must be an object with rows",
                       {"rows": ["this field is required"]})
    rows = request.data.get("rows")
    if isinstance(rows, str):  # multipart: JSON text
        try:
            return json.loads(rows)
        except json.JSONDecodeError as exc:
            raise ApiError(400, "invalid", f"rows: not valid JSON: {exc.msg}",
                           {"rows": [f"not valid JSON: {exc.msg}"]}) from exc
    return rows


def _rows_checked(request: Request) -> list[Mapping[str, Any]]:
    """The rows as sent, once their shape is as the schema says (else 400; over the limit
    413): what is wrong with a row's content is that row's failure."""
    rows = _rows_given(request)
    if isinstance(rows, list) and len(rows) > _max_rows():
        raise ApiError(413, "too_many_rows", f"{len(rows)} rows, over the limit of "
                                             f"{_max_rows()} a request")
    checked = BatchRowSerializer(data=rows, many=True, allow_empty=False)
    if not checked.is_valid():
        raise serializers.ValidationError({"rows": checked.errors})
    return list(rows)


def _uploads(request: Request) -> dict[str, UploadedFile]:
    named: dict[str, UploadedFile] = {}
    for upload in request.FILES.getlist("photos"):
        if upload.name in named:
            raise ApiError(400, "invalid", f"photos: two photos are named {upload.name!r}",
                           {"photos": [f"two photos are named {upload.name!r}"]})
        named[str(upload.name)] = upload
    return named


def _read_upload(upload: UploadedFile) -> bytes:
    upload.seek(0)
    return photo_read_bounded(upload.read, label=f"photo {upload.name!r}")


def _photo_named(uploads: Mapping[str, UploadedFile], name: str) -> PhotoLoader:
    if name not in uploads:
        raise RowRefused("photo_missing", f"no photo named {name!r} was sent in photos")
    return partial(_read_upload, uploads[name])


def _numbered(rows: list[Mapping[str, Any]]) -> Iterator[tuple[int, Mapping[str, Any] | RowFailure]]:
    return iter(enumerate(rows, start=1))


def _body(result: SyncResult) -> dict[str, Any]:
    results = []
    for o in result.outcomes:
        entry: dict[str, Any] = {"row": o.line, "sku": o.sku, "outcome": o.outcome}
        if o.outcome == "failed":
            entry |= {"reason": o.reason, "error": o.message}
        results.append(entry)
    return {**{name: result.count(name) for name in OUTCOMES}, "results": results}


EXAMPLE_ROWS = [{"sku": "4711", "name": "Red dress", "category": "Dress", "photo": "4711.jpg"},
                {"sku": "4712", "name": "Blue coat", "category": "Coat",
                 "photo_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}]


@extend_schema(
    tags=["products"],
    request={"multipart/form-data": BatchMultipart, "application/json": BatchJson},
    responses={200: BatchResult},
    examples=[OpenApiExample("two rows", request_only=True, media_type="application/json",
                             value={"rows": EXAMPLE_ROWS})],
    description="Create, change or keep many products by SKU, as PUT does for one: the same "
                "row and photo again change nothing and queue nothing. Each row's result is "
                "given by its position; a failed row (bad SKU, refused photo with its reason, "
                "duplicate SKU, photo_missing, photo_required, unknown_field, sku_conflict when "
                "another request created the SKU at the same moment with other content, "
                "deleted_meanwhile when another request deleted it) does "
                "not stop the others. At most LOOKALIKE_API_BATCH_MAX_ROWS rows a request (413 "
                "too_many_rows).",
)
class ProductBatchView(ApiView):
    """Many products by SKU in one request."""

    def body_limit(self) -> int:
        return _max_rows() * int(settings.LOOKALIKE_MAX_UPLOAD_BYTES)

    def post(self, request: Request) -> Response:
        if not request.content_type.startswith("application/json"):
            BatchMultipart(data=request.data).is_valid(raise_exception=True)
        rows = _rows_checked(request)
        parsed = rows_collect(_numbered(rows), allowed=BATCH_FIELDS,
                              photo=partial(_photo_named, _uploads(request)))
        return Response(_body(catalog_sync(parsed=parsed)))
