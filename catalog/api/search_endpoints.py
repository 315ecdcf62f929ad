"""/api/v1/search: search by photo; and the deprecated endpoints of the first JSON API."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.files.uploadedfile import UploadedFile
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from catalog.api.api_errors import ApiError, photo_error
from catalog.api.endpoint_base import ApiView
from catalog.api.serializers import SearchRequest, SearchResultSerializer, product_card
from catalog.api.throttles import ApiKeyThrottle, SearchThrottle
from catalog.forms import SearchByPhotoForm, read_upload, rejection_error
from catalog.models import MAX_NEIGHBOURS, Product
from catalog.selectors.category_prediction import PhotoSearch, products_search_by_photo
from catalog.selectors.photo_search import products_search_by_image
from catalog.selectors.storefront import product_get, product_neighbours, product_neighbours_state
from catalog.vectors import image_limits
from similarity import ImageRejected


def _photo_bytes(upload: Any) -> bytes:
    if not isinstance(upload, UploadedFile):
        raise ApiError(400, "missing", "image: send the photo as a multipart file",
                       {"image": ["no file"]})
    if not upload.size:  # worded as the storefront's search form words it
        message = str(SearchByPhotoForm.base_fields["image"].error_messages["empty"])
        raise ApiError(400, "empty", message, {"image": [message]})
    try:
        return read_upload(upload, max_bytes=image_limits().max_bytes)
    except DjangoValidationError as exc:
        raise photo_error(exc) from exc


def search_hits(request: Request, *, limit: int) -> list[tuple[Product, float]]:
    """Every category searched, nothing predicted (the deprecated endpoint)."""
    data = _photo_bytes(request.FILES.get("image"))
    try:
        return products_search_by_image(image_bytes=data, k=limit)
    except ImageRejected as exc:
        raise photo_error(rejection_error(exc)) from exc


def search_with_category(request: Request, *, limit: int, category: str | None) -> PhotoSearch:
    data = _photo_bytes(request.FILES.get("image"))
    try:
        return products_search_by_photo(image_bytes=data, k=limit, category=category)
    except ImageRejected as exc:
        raise photo_error(rejection_error(exc)) from exc


class SearchView(ApiView):
    throttle_classes = (ApiKeyThrottle, SearchThrottle)
    reads_only = True

    @extend_schema(tags=["search"], request={"multipart/form-data": SearchRequest},
                   responses={200: SearchResultSerializer})
    def post(self, request: Request) -> Response:
        """The ready products nearest to a photo, nearest first: of the category asked for,
        of every category (category=all), or, without a category, of the category predicted
        from the photo when the prediction is confident."""
        serializer = SearchRequest(data=request.data)
        serializer.is_valid(raise_exception=True)
        query = serializer.validated_data
        found = search_with_category(request, limit=query["limit"], category=query.get("category"))
        context = {"request": request}
        return Response({"results": [{**product_card(context, p), "distance": d}
                                     for p, d in found.results],
                         "category": found.category, "predicted_category": found.predicted_category})


# ------------------------------------------------------------------------- deprecated


def _legacy_card(request: Request, product: Product) -> dict[str, Any]:
    card = product_card({"request": request}, product)
    return {"id": product.pk, "name": card["name"], "category": card["category"],
            "url": card["url"], "image": card["image_url"]}


_LEGACY_CARD: dict[str, serializers.Field] = {
                "id": serializers.IntegerField(), "name": serializers.CharField(),
                "category": serializers.CharField(), "url": serializers.URLField(),
                "image": serializers.URLField(allow_null=True)}
_LEGACY_NEIGHBOUR = inline_serializer("LegacyNeighbour", many=True, fields={
    **_LEGACY_CARD, "rank": serializers.IntegerField(), "distance": serializers.FloatField()})
_LEGACY_SIMILAR = inline_serializer("LegacySimilar", {
    "product": inline_serializer("LegacyProduct", {**_LEGACY_CARD,
                                                   "status": serializers.CharField()}),
    "state": serializers.CharField(), "neighbours": _LEGACY_NEIGHBOUR})
_LEGACY_SEARCH = inline_serializer("LegacySearch", {"results": inline_serializer(
    "LegacyHit", {**_LEGACY_CARD, "distance": serializers.FloatField()}, many=True)})


class LegacySimilarView(ApiView):
    @extend_schema(tags=["deprecated"], deprecated=True, responses={200: _LEGACY_SIMILAR},
                   description="Use GET /api/v1/products/{sku}/similar.")
    def get(self, request: Request, product_id: int) -> Response:
        """A product's similar items by its internal id (deprecated)."""
        product = product_get(product_id=product_id)
        if product is None:
            raise ApiError(404, "not_found", f"no product with id {product_id}")
        neighbours = product_neighbours(product=product)
        state = product_neighbours_state(product=product, neighbours=neighbours)
        listed = neighbours if state == "ready" else []
        return Response({
            "product": {**_legacy_card(request, product), "status": product.status},
            "state": state,
            "neighbours": [{**_legacy_card(request, link.neighbour), "rank": link.rank,
                            "distance": link.distance} for link in listed],
        })


class LegacySearchView(SearchView):
    @extend_schema(tags=["deprecated"], deprecated=True, responses={200: _LEGACY_SEARCH},
                   request={"multipart/form-data": inline_serializer(
                       "LegacySearchRequest", {"image": serializers.FileField()})},
                   description="Use POST /api/v1/search.")
    def post(self, request: Request) -> Response:
        """Search by photo, 10 results (deprecated)."""
        hits = search_hits(request, limit=MAX_NEIGHBOURS)
        return Response({"results": [{**_legacy_card(request, p), "distance": d}
                                     for p, d in hits]})
