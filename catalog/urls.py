from django.urls import path

from catalog import views
from catalog.api.api_urls import urlpatterns as api_urlpatterns

app_name = "catalog"
urlpatterns = [
    path("", views.product_list, name="product-list"),
    path("p/<slug:slug>/", views.product_detail, name="product-detail"),
    path("search/", views.search_by_photo, name="search"),
    *api_urlpatterns,
]
