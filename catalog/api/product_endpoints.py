"""/api/v1/products: the shop's products by SKU (list, read, create or replace, change,
delete) and each one's list of similar items."""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.files.uploadedfile import UploadedFile
from django.http import QueryDict
from django.utils.http import parse_etags, quote_etag
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from catalog.api.api_errors import ApiError, photo_error
from catalog.api.endpoint_base import ApiView
from catalog.api.serializers import (
    LimitQuery,
    ProductListQuery,
    ProductSerializer,
    ProductWriteSerializer,
    SimilarSerializer,
    card_of,
)
from catalog.models import Product
from catalog.selectors.api_reads import (
    SimilarList,
    product_get_by_sku,
    product_similar_list,
    products_filter,
)
from catalog.services.merchandising import products_set_listed
from catalog.services.product_sync import SKU_CONFLICT, product_put
from catalog.services.products import CheckedImage, image_check, product_delete, product_update

CONFLICT = ("sku_conflict: another request created this SKU at the same moment with another "
            "name, category or photo. Nothing of this request was written; send it again to "
            "replace that product. (With the same body and photo the answer is 200.)")
SKU_PARAM = OpenApiParameter("sku", OpenApiTypes.STR, OpenApiParameter.PATH,
                             description="The shop's product id: letters, digits, '.', '_', '-'.")


def _not_found(sku: str) -> ApiError:
    return ApiError(404, "not_found", f"no product with SKU {sku[:80]!r}")


def _product_or_404(sku: str) -> Product:
    product = product_get_by_sku(sku=sku)
    if product is None:
        raise _not_found(sku)
    return product


def _checked_photo(upload: Any) -> CheckedImage | None:
    if upload is None:
        return None
    if not isinstance(upload, UploadedFile):
        raise ApiError(400, "invalid", "image: send the photo as a multipart file",
                       {"image": ["not a file"]})
    try:
        return image_check(upload)
    except DjangoValidationError as exc:
        raise photo_error(exc) from exc


def _validated(serializer_class: type, data: Any, **kwargs: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data, **kwargs)
    # DRF reads "?status=" as "not given"; the schema says a given value is not empty.
    blank = {name: ["must not be empty"] for name in serializer.fields
             if isinstance(data, QueryDict) and data.get(name) == ""}
    if blank:
        raise serializers.ValidationError(blank)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _set_listed(product: Product, listed: bool | None) -> None:
    """Take the product out of lists or put it back, when the body says so."""
    if listed is not None and listed != product.listed:
        products_set_listed(product_ids=[product.pk], listed=listed)
        product.refresh_from_db()


class ProductCursor(CursorPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    ordering = "-id"  # newest first; ids never change, so a cursor never skips or repeats


@extend_schema(tags=["products"], parameters=[ProductListQuery])
class ProductListView(ApiView, generics.ListAPIView):
    """Products, newest first, a page at a time (follow ``next``)."""

    serializer_class = ProductSerializer
    pagination_class = ProductCursor

    def get_queryset(self) -> Any:
        query = _validated(ProductListQuery, self.request.query_params)
        query.pop("page_size", None)  # the paginator's, checked here (it ignores a bad one)
        return products_filter(**query)


@extend_schema(tags=["products"], parameters=[SKU_PARAM])
class ProductDetailView(ApiView):
    """One product by its SKU."""

    @extend_schema(responses={200: ProductSerializer})
    def get(self, request: Request, sku: str) -> Response:
        return Response(ProductSerializer(_product_or_404(sku), context={"request": request}).data)

    @extend_schema(
        request={"multipart/form-data": ProductWriteSerializer},
        responses={200: ProductSerializer, 201: ProductSerializer,
                   409: OpenApiResponse(description=CONFLICT)},
        description="Create the product, or replace its name, category and photo. The same "
                    "body and photo again change nothing and queue nothing (200). A new photo "
                    "makes it pending and queues it.",
    )
    def put(self, request: Request, sku: str) -> Response:
        data = _validated(ProductWriteSerializer, request.data)
        photo = _checked_photo(data["image"])
        assert photo is not None  # required by the serializer
        try:
            product, outcome = product_put(sku=sku, name=data["name"],
                                           category=data["category"], image=photo)
        except DjangoValidationError as exc:
            reason = str(exc.code or "invalid")
            raise ApiError(409 if reason == SKU_CONFLICT else 400, reason,
                           " ".join(exc.messages)) from exc
        _set_listed(product, data.get("listed"))
        body = ProductSerializer(product, context={"request": request}).data
        return Response(body, status=201 if outcome == "created" else 200)

    @extend_schema(request={"multipart/form-data": ProductWriteSerializer,
                            "application/json": ProductWriteSerializer},
                   responses={200: ProductSerializer},
                   description="Change some fields; a new photo makes the product pending.")
    def patch(self, request: Request, sku: str) -> Response:
        product = _product_or_404(sku)
        data = _validated(ProductWriteSerializer, request.data, partial=True)
        if not data:
            raise ApiError(400, "invalid", "nothing to change: give name, category, image or listed")
        photo = _checked_photo(data.pop("image", None))
        listed = data.pop("listed", None)
        try:
            product_update(product=product, image=photo, **data)
        except DjangoValidationError as exc:
            raise ApiError(400, str(exc.code or "invalid"), " ".join(exc.messages)) from exc
        _set_listed(product, listed)
        return Response(ProductSerializer(product, context={"request": request}).data)

    @extend_schema(responses={204: None},
                   description="Delete the product; every list that held it is refilled.")
    def delete(self, request: Request, sku: str) -> Response:
        product_delete(product=_product_or_404(sku))
        return Response(status=204)


def _etag(request: Request, found: SimilarList, limit: int) -> str:
    """A tag of everything the answer is made of, computed before it is built: the stored
    values (the product's SKU, status and list state, each shown row and its neighbour's
    fields), ``limit`` and the address the URLs are made absolute with."""
    made_of = repr((request.build_absolute_uri("/"), limit, found))
    return quote_etag(hashlib.sha256(made_of.encode()).hexdigest()[:32])


def _similar_body(request: Request, found: SimilarList) -> dict[str, Any]:
    context = {"request": request}
    return {
        "sku": found.sku, "status": found.status, "state": found.state,
        "neighbours": [{"rank": card.rank, "distance": card.distance,
                        **card_of(context, sku=card.sku, name=card.name, category=card.category,
                                  slug=card.slug, image=card.image)} for card in found.cards],
    }


def _matches(header: str, etag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 13.1.2): a W/ tag matches too."""
    tags = parse_etags(header)
    return "*" in tags or etag in {tag.removeprefix("W/") for tag in tags}


@extend_schema(
    tags=["products"],
    parameters=[SKU_PARAM, LimitQuery,
                OpenApiParameter("If-None-Match", OpenApiTypes.STR, OpenApiParameter.HEADER,
                                 description="An ETag from an earlier answer: 304 if unchanged.")],
    responses={200: SimilarSerializer, 304: OpenApiResponse(description="Not modified.")},
)
class ProductSimilarView(ApiView):
    """The product's stored list of similar items, nearest first, with its state. While the
    product is embedded again, its last valid list with ``state: "refreshing"``."""

    def get(self, request: Request, sku: str) -> Response:
        limit = _validated(LimitQuery, request.query_params)["limit"]
        found = product_similar_list(sku=sku, limit=limit)
        if found is None:
            raise _not_found(sku)
        etag = _etag(request, found, limit)
        matched = _matches(request.META.get("HTTP_IF_NONE_MATCH", ""), etag)
        response = Response(status=304) if matched else Response(_similar_body(request, found))
        response["ETag"] = etag
        scope = "public" if settings.LOOKALIKE_API_OPEN_READS else "private"
        response["Cache-Control"] = f"{scope}, max-age={settings.LOOKALIKE_API_CACHE_SECONDS}"
        response["Vary"] = "Authorization, X-API-Key"
        return response
