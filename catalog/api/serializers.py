"""What the REST API reads and writes, as DRF serializers (they also make the schema)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from catalog.models import MAX_NEIGHBOURS, Product
from catalog.selectors.storefront import product_photos

_IMAGE_STORAGE = Product._meta.get_field("image").storage
STATES = ("ready", "computing", "refreshing", "failed")


def _absolute(context: Mapping[str, Any], path: str) -> str:
    return str(context["request"].build_absolute_uri(path))


class ProductSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(help_text="The storefront page.")
    image_url = serializers.SerializerMethodField()
    similar_url = serializers.SerializerMethodField()
    photos = serializers.SerializerMethodField(
        help_text="Every photo of the product: the main photo (image_url) first, then its "
                  "further photos, oldest first.")

    class Meta:
        model = Product
        fields = ("sku", "name", "category", "listed", "status", "error_message", "image_sha256",
                  "url", "image_url", "photos", "similar_url", "created_at", "updated_at")
        read_only_fields = fields

    def get_url(self, obj: Product) -> str:
        return _absolute(self.context, obj.get_absolute_url())

    @extend_schema_field(OpenApiTypes.URI)
    def get_image_url(self, obj: Product) -> str | None:
        return _absolute(self.context, obj.image.url) if obj.image else None

    @extend_schema_field(serializers.ListField(child=serializers.URLField()))
    def get_photos(self, obj: Product) -> list[str]:
        return [_absolute(self.context, image.url)
                for image in product_photos(product=obj, failed=True)]

    def get_similar_url(self, obj: Product) -> str:
        return _absolute(self.context, f"/api/v1/products/{obj.sku}/similar")


class OptionalBoolean(serializers.BooleanField):
    """A boolean that a form body may leave out (DRF would read a missing one as false)."""

    default_empty_html = empty


class ProductWriteSerializer(serializers.Serializer):
    """PUT: every field but ``listed``; PATCH: any of them (``partial``)."""

    name = serializers.CharField(max_length=200)
    category = serializers.CharField(max_length=64)
    image = serializers.FileField(
        allow_empty_file=True,  # refused by the photo check, with its reason ("empty")
        help_text="The product photo (JPEG, PNG, WebP or GIF), checked as the admin checks it.")
    listed = OptionalBoolean(
        required=False,
        help_text="false: sold out or unpublished. The product leaves every list and search by "
                  "photo and keeps its own list; true puts it back. Left out: unchanged (a new "
                  "product is listed).")


class ProductListQuery(serializers.Serializer):
    category = serializers.CharField(required=False, max_length=64)
    status = serializers.ChoiceField(choices=Product.Status.values, required=False)
    listed = OptionalBoolean(required=False, help_text="Only listed (true) or not listed (false).")
    updated_since = serializers.DateTimeField(
        required=False, help_text="Only products changed at or after this time (ISO 8601).")
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200,
                                         help_text="Products per page (default 50).")


class LimitQuery(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=MAX_NEIGHBOURS, default=MAX_NEIGHBOURS)


class NeighbourSerializer(serializers.Serializer):
    rank = serializers.IntegerField(min_value=1, max_value=MAX_NEIGHBOURS)
    distance = serializers.FloatField()
    sku = serializers.CharField()
    name = serializers.CharField()
    category = serializers.CharField()
    url = serializers.URLField()
    image_url = serializers.URLField(allow_null=True)


class SimilarSerializer(serializers.Serializer):
    sku = serializers.CharField()
    status = serializers.ChoiceField(choices=Product.Status.values)
    state = serializers.ChoiceField(
        choices=STATES, help_text="ready; computing (no list yet); refreshing (the product is "
        "being embedded again: the last valid list is shown); failed.")
    neighbours = NeighbourSerializer(many=True)


class SearchRequest(serializers.Serializer):
    image = serializers.FileField(allow_empty_file=True, help_text="The shopper's photo.")
    limit = serializers.IntegerField(min_value=1, max_value=MAX_NEIGHBOURS, default=MAX_NEIGHBOURS)
    category = serializers.CharField(
        required=False, max_length=64,
        help_text="Only products of this category; \"all\": every category. Left out: the "
                  "category predicted from the photo when the prediction is confident (see "
                  "predicted_category in the answer), else every category.")


class SearchHitSerializer(serializers.Serializer):
    sku = serializers.CharField()
    name = serializers.CharField()
    category = serializers.CharField()
    url = serializers.URLField()
    image_url = serializers.URLField(allow_null=True)
    distance = serializers.FloatField()


class SearchResultSerializer(serializers.Serializer):
    results = SearchHitSerializer(many=True)
    category = serializers.CharField(
        allow_null=True, help_text="The category the results are limited to: the one asked for "
        "or the predicted one; null: every category.")
    predicted_category = serializers.CharField(
        allow_null=True, help_text="The category predicted from the photo when none was asked "
        "for and the prediction is confident (the results are then limited to it: ask again "
        "with category=all, or another category, to change it); else null.")


def product_card(context: Mapping[str, Any], product: Product) -> dict[str, Any]:
    """The neighbour/hit fields shared by a list entry and a search result."""
    return card_of(context, sku=product.sku, name=product.name, category=product.category,
                   slug=product.slug, image=product.image.name or "")


def card_of(context: Mapping[str, Any], *, sku: str, name: str, category: str, slug: str,
            image: str) -> dict[str, Any]:
    """``product_card`` from the product's stored values (no model instance)."""
    path = reverse("catalog:product-detail", kwargs={"slug": slug})
    return {
        "sku": sku,
        "name": name,
        "category": category,
        "url": _absolute(context, path),
        "image_url": _absolute(context, _IMAGE_STORAGE.url(image)) if image else None,
    }
