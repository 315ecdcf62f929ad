"""/api/v1/: the REST API, its OpenAPI schema and reference page; the deprecated first
endpoints; and a JSON 404 for anything else under /api/."""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from catalog.api import schema_hooks  # noqa: F401 - registers the API key scheme
from catalog.api.api_errors import api_not_found
from catalog.api.batch_endpoints import ProductBatchView
from catalog.api.product_endpoints import ProductDetailView, ProductListView, ProductSimilarView
from catalog.api.search_endpoints import LegacySearchView, LegacySimilarView, SearchView

SKU = r"(?P<sku>[^/]+)"

urlpatterns = [
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/docs/", SpectacularSwaggerView.as_view(url_name="catalog:api-schema"), name="api-docs"),
    path("api/v1/products", ProductListView.as_view(), name="api-products"),
    # Before the product route: "batch" is not taken as a SKU.
    path("api/v1/products/batch", ProductBatchView.as_view(), name="api-products-batch"),
    re_path(rf"^api/v1/products/{SKU}/similar$", ProductSimilarView.as_view(),
            name="api-product-similar-v1"),
    re_path(rf"^api/v1/products/{SKU}$", ProductDetailView.as_view(), name="api-product"),
    path("api/v1/search", SearchView.as_view(), name="api-search-v1"),
    path("api/products/<int:product_id>/similar/", LegacySimilarView.as_view(),
         name="api-product-similar"),
    path("api/search/", LegacySearchView.as_view(), name="api-search"),
    re_path(r"^api/", api_not_found),
]
