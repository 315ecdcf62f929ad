from django.urls import path

from catalog import api, views

app_name = "catalog"
urlpatterns = [
    path("", views.product_list, name="product-list"),
    path("p/<slug:slug>/", views.product_detail, name="product-detail"),
    path("search/", views.search_by_photo, name="search"),
    path("api/products/<int:product_id>/similar/", api.product_similar, name="api-product-similar"),
    path("api/search/", api.search, name="api-search"),
]
