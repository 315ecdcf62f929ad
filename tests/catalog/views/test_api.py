import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from catalog.models import Product
from tests.catalog.readside import image_bytes, link_neighbours, make_product

pytestmark = pytest.mark.django_db


def upload(data: bytes, name: str = "photo.png"):
    return SimpleUploadedFile(name, data, content_type="image/png")


def similar_url(product_id: int) -> str:
    return reverse("catalog:api-product-similar", kwargs={"product_id": product_id})


def test_similar_returns_the_ranked_neighbours(client):
    product = make_product("Main", category="Dresses")
    others = [make_product(f"N{i}", category="Dresses") for i in range(10)]
    link_neighbours(product, others)
    response = client.get(similar_url(product.pk))
    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "ready"
    assert body["product"]["id"] == product.pk
    assert body["product"]["name"] == "Main"
    assert body["product"]["url"] == f"http://testserver{product.get_absolute_url()}"
    assert [n["rank"] for n in body["neighbours"]] == list(range(1, 11))
    first = body["neighbours"][0]
    assert set(first) == {"id", "name", "category", "url", "image", "rank", "distance"}
    assert first["id"] == others[0].pk
    assert first["name"] == "N0"
    assert first["category"] == "Dresses"
    assert first["image"] == f"http://testserver{others[0].image.url}"
    assert first["distance"] == pytest.approx(0.6)


def test_similar_of_a_pending_product_is_computing(client):
    product = make_product(status=Product.Status.PENDING)
    body = client.get(similar_url(product.pk)).json()
    assert body["state"] == "computing"
    assert body["neighbours"] == []


def test_similar_of_a_failed_product(client):
    product = make_product(status=Product.Status.FAILED)
    assert client.get(similar_url(product.pk)).json()["state"] == "failed"


def test_similar_of_an_unknown_product_is_404_json(client):
    response = client.get(similar_url(999_999))
    assert response.status_code == 404
    assert response.json()["reason"] == "not_found"


def test_search_json_returns_ten_results(client, catalog_of_garments, query_photos):
    response = client.post(reverse("catalog:api-search"), {"image": upload(image_bytes(query_photos[7]))})
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 10
    assert set(results[0]) == {"id", "name", "category", "url", "image", "distance"}
    assert [r["distance"] for r in results] == sorted(r["distance"] for r in results)
    ids = {p.pk for p in catalog_of_garments}
    assert all(r["id"] in ids for r in results)


def test_search_json_needs_no_csrf_token(catalog_of_garments, query_photos):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("catalog:api-search"), {"image": upload(image_bytes(query_photos[2]))})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"plain text here", "unreadable"), (b"", "empty"), (b"%PDF-1.4\n%stuff", "unsupported_format")],
)
def test_search_json_bad_uploads(client, data, reason):
    response = client.post(reverse("catalog:api-search"), {"image": upload(data, "x.bin")})
    assert response.status_code == 400
    body = response.json()
    assert body["reason"] == reason
    assert body["error"]


def test_search_json_too_large_is_413(client, settings, query_photos):
    settings.LOOKALIKE_MAX_UPLOAD_BYTES = 500
    response = client.post(reverse("catalog:api-search"), {"image": upload(image_bytes(query_photos[0]))})
    assert response.status_code == 413
    assert response.json()["reason"] == "too_large"


def test_search_json_missing_file(client):
    response = client.post(reverse("catalog:api-search"), {})
    assert response.status_code == 400
    assert response.json()["reason"] == "missing"


def test_search_json_only_accepts_post(client):
    assert client.get(reverse("catalog:api-search")).status_code == 405


def freeze(monkeypatch, clock: list[float]) -> None:
    monkeypatch.setattr("catalog.api.throttles._SettingRateThrottle.timer",
                        staticmethod(lambda: clock[0]))


def test_search_json_rate_limit(client, settings, monkeypatch):
    freeze(monkeypatch, [1_000_040.0])
    settings.LOOKALIKE_SEARCH_RATE = "3/m"
    statuses = [
        client.post(reverse("catalog:api-search"), {"image": upload(b"x", "x.txt")}).status_code
        for _ in range(4)
    ]
    assert statuses == [400, 400, 400, 429]
    response = client.post(reverse("catalog:api-search"), {"image": upload(b"x", "x.txt")})
    assert response.status_code == 429
    assert response.json()["reason"] == "rate_limited"
    assert "3 per minute" in response.json()["error"]


def test_rate_limit_window_resets(client, settings, monkeypatch):
    settings.LOOKALIKE_SEARCH_RATE = "1/m"
    clock = [1_000_040.0]
    freeze(monkeypatch, clock)
    post = lambda: client.post(reverse("catalog:api-search"), {"image": upload(b"x", "x.txt")})  # noqa: E731
    assert post().status_code == 400
    limited = post()
    assert limited.status_code == 429
    assert limited["Retry-After"] == "60"  # a sliding window: a minute after the first
    clock[0] += 60
    assert post().status_code == 400


@pytest.mark.parametrize("bad", ["30", "x/m", "5/fortnight", "-1/m"])
def test_bad_rate_setting_is_reported(bad):
    from catalog.api.throttles import rate_parse

    with pytest.raises(ValueError, match="bad rate"):
        rate_parse(bad)
