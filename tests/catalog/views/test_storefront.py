import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from catalog.models import Product, ProductPhoto
from tests.catalog.readside import image_bytes, link_neighbours, make_photo, make_product, png_bytes

pytestmark = pytest.mark.django_db


def upload(data: bytes, name: str = "photo.png", content_type: str = "image/png"):
    return SimpleUploadedFile(name, data, content_type=content_type)


# -- catalog list --------------------------------------------------------------------------------


def test_list_paginates_24_per_page(client):
    for i in range(30):
        make_product(f"Item {i:02d}", category="Tops")
    page1 = client.get(reverse("catalog:product-list"))
    assert page1.status_code == 200
    assert len(page1.context["products"]) == 24
    assert "Page 1 of 2" in page1.text
    assert "Item 29" in page1.text and "Item 05" not in page1.text  # newest first
    page2 = client.get(reverse("catalog:product-list"), {"page": 2})
    assert len(page2.context["products"]) == 6
    assert "Item 05" in page2.text
    # Out of range falls back to the last page rather than failing.
    assert client.get(reverse("catalog:product-list"), {"page": 99}).context["page_obj"].number == 2


def test_list_filters_by_category_and_links_products(client):
    top = make_product("Striped top", category="Tops")
    make_product("Blue jeans", category="Trousers")
    response = client.get(reverse("catalog:product-list"), {"category": "Tops"})
    assert response.status_code == 200
    assert "Striped top" in response.text
    assert "Blue jeans" not in response.text
    assert f'href="{top.get_absolute_url()}"' in response.text
    assert top.image.url in response.text
    # Both categories are offered as filters.
    assert "?category=Trousers" in response.text


def test_empty_catalog(client):
    response = client.get(reverse("catalog:product-list"))
    assert response.status_code == 200
    assert "No products here yet" in response.text


# -- product page -------------------------------------------------------------------------------


def test_product_page_renders_its_ten_neighbours(client):
    product = make_product("Main dress", category="Dresses")
    others = [make_product(f"Lookalike {i}", category="Dresses") for i in range(12)]
    link_neighbours(product, others[:10])
    response = client.get(product.get_absolute_url())
    assert response.status_code == 200
    html = response.text
    assert "<h1>Main dress</h1>" in html
    section = html[html.index('class="similar-items"') :]
    names = re.findall(r'<span class="card-name">([^<]+)</span>', section)
    assert names == [f"Lookalike {i}" for i in range(10)]
    for other in others[:10]:
        assert f'href="{other.get_absolute_url()}"' in section
        assert other.image.url in section
    assert "Lookalike 10" not in section
    assert "still being computed" not in html


def test_product_page_shows_every_photo_main_first(client):
    product = make_product("Striped dress", category="Dresses")
    further = [make_photo(product, colour=(i * 60, 0, 0)) for i in range(3)]
    failed = make_photo(product, status=ProductPhoto.Status.FAILED)
    response = client.get(product.get_absolute_url())
    assert response.status_code == 200
    html = response.text
    image = html[html.index('class="product-image"'):html.index('class="product-info"')]
    gallery = image[image.index('data-testid="product-photos"'):]
    shown = re.findall(r'<img src="([^"]+)"', gallery)
    assert shown == [product.image.url] + [p.image.url for p in further]
    assert re.findall(r'<img src="([^"]+)"', image)[0] == product.image.url  # the large one
    assert failed.image.url not in html


def test_product_page_of_a_single_photo_has_no_gallery(client):
    product = make_product("Plain dress")
    response = client.get(product.get_absolute_url())
    assert product.image.url in response.text
    assert "product-photos" not in response.text


@pytest.mark.parametrize("status", [Product.Status.PENDING, Product.Status.PROCESSING])
def test_product_page_shows_still_being_computed(client, status):
    product = make_product("New coat", status=status)
    response = client.get(product.get_absolute_url())
    assert response.status_code == 200
    assert "Similar items are still being computed" in response.text
    assert 'data-state="computing"' in response.text


def test_ready_product_without_list_yet_is_computing(client):
    product = make_product("Fresh")
    make_product("Other")
    assert "still being computed" in client.get(product.get_absolute_url()).text


def test_failed_product_shows_a_short_note(client):
    product = make_product("Broken", status=Product.Status.FAILED, error_message="truncated")
    response = client.get(product.get_absolute_url())
    assert "Similar items are not available" in response.text


def test_unknown_product_is_404(client):
    assert client.get(reverse("catalog:product-detail", kwargs={"slug": "nope"})).status_code == 404


# -- search by photo ----------------------------------------------------------------------------


def test_search_page_shows_the_form(client):
    response = client.get(reverse("catalog:search"))
    assert response.status_code == 200
    assert 'enctype="multipart/form-data"' in response.text
    assert 'type="file"' in response.text
    assert response.context["results"] is None


def test_search_with_a_real_photo_returns_ten_results(client, catalog_of_garments, query_photos, media_root):
    response = client.post(reverse("catalog:search"), {"image": upload(image_bytes(query_photos[1]))})
    assert response.status_code == 200
    results = response.context["results"]
    assert len(results) == 10
    distances = [d for _, d in results]
    assert distances == sorted(distances)
    html = response.text
    assert 'src="data:image/jpeg;base64,' in html  # the query thumbnail, not stored
    for product, _ in results:
        assert f'href="{product.get_absolute_url()}"' in html
        assert product.name in html
    assert f"distance {distances[0]:.3f}" in html
    # Nothing of the upload was written to the media directory.
    assert len(list((media_root / "products").iterdir())) == len(catalog_of_garments)


def test_search_with_an_empty_catalog_says_so(client, query_photos):
    response = client.post(reverse("catalog:search"), {"image": upload(image_bytes(query_photos[0]))})
    assert response.status_code == 200
    assert response.context["results"] == []
    assert "no searchable products yet" in response.text


@pytest.mark.parametrize(
    ("data", "name", "reason", "status"),
    [
        (b"just some text, not a picture\n" * 10, "notes.txt", "unreadable", 400),
        (b"", "empty.png", "empty", 400),
        (png_bytes()[:60], "cut.png", "truncated", 400),
    ],
)
def test_search_refuses_bad_uploads_naming_the_reason(
    client, catalog_of_garments, data, name, reason, status
):
    response = client.post(reverse("catalog:search"), {"image": upload(data, name)})
    assert response.status_code == status
    assert response.context["results"] is None
    errors = response.context["form"].errors["image"]
    assert any(f"reason: {reason}" in e for e in errors), errors
    assert f"reason: {reason}" in response.text
    assert 'class="search-results"' not in response.text


def test_search_refuses_too_large_uploads(client, settings, catalog_of_garments, query_photos):
    settings.LOOKALIKE_MAX_UPLOAD_BYTES = 1000
    response = client.post(reverse("catalog:search"), {"image": upload(image_bytes(query_photos[0]))})
    assert response.status_code == 413
    assert "reason: too_large" in response.text
    assert "over the 1000 bytes limit" in response.text
    assert response.context["results"] is None


def test_search_without_a_file(client):
    response = client.post(reverse("catalog:search"), {})
    assert response.status_code == 400
    assert "Choose a photo" in response.text


def test_search_is_rate_limited_per_client(client, settings, monkeypatch):
    monkeypatch.setattr("catalog.api.throttles._SettingRateThrottle.timer",
                        staticmethod(lambda: 1_000_040.0))
    settings.LOOKALIKE_SEARCH_RATE = "2/m"
    bad = b"text"
    for _ in range(2):
        assert client.post(reverse("catalog:search"), {"image": upload(bad, "a.txt")}).status_code == 400
    response = client.post(reverse("catalog:search"), {"image": upload(bad, "a.txt")})
    assert response.status_code == 429
    assert "Too many searches" in response.text
    assert "2 per minute" in response.text
    assert int(response["Retry-After"]) >= 1
    # Another client is not affected; the page itself (GET) is never limited.
    other = client.post(
        reverse("catalog:search"), {"image": upload(bad, "a.txt")}, REMOTE_ADDR="10.0.0.9"
    )
    assert other.status_code == 400
    assert client.get(reverse("catalog:search")).status_code == 200


# -- products not listed ---------------------------------------------------------------------------


def test_a_product_not_listed_leaves_the_catalog_pages_and_keeps_its_own(client):
    shown = make_product("Blue coat", category="Coats")
    sold = make_product("Red coat", category="Coats")
    Product.objects.filter(pk=sold.pk).update(listed=False)
    link_neighbours(sold, [shown])
    link_neighbours(shown, [sold])  # a stale row, before the index writer refilled it
    listing = client.get(reverse("catalog:product-list"))
    assert "Blue coat" in listing.text and "Red coat" not in listing.text
    page = client.get(sold.get_absolute_url())
    assert page.status_code == 200
    assert 'data-testid="sold-out"' in page.text and "Blue coat" in page.text
    other = client.get(shown.get_absolute_url())
    assert "Red coat" not in other.text
