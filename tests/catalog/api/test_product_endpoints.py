"""/api/v1/products: by SKU, with keys, scopes, pagination, filters, ETags, one error format."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.client import encode_multipart
from django.test.utils import CaptureQueriesContext

from catalog.models import Product, ProductPhoto
from catalog.services import queue
from tests.catalog.api.conftest import bearer
from tests.catalog.readside import link_neighbours, make_photo, make_product, png_bytes

pytestmark = pytest.mark.django_db
BOUNDARY = "BoUnDaRy"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def photo(colour=(200, 30, 60), name="p.png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, png_bytes(colour), content_type="image/png")


def put(client, sku, key, **fields):
    body = encode_multipart(BOUNDARY, {"name": "Red Dress", "category": "Dress",
                                       "image": photo(), **fields})
    return client.put(f"/api/v1/products/{sku}", body, content_type=MULTIPART, **bearer(key))


def sent(callbacks) -> list:
    return [cb.task for cb in callbacks if isinstance(cb, queue.TaskSend)]


def test_put_creates_then_repeats_idempotently(client, write_key, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as first:
        created = put(client, "SKU-4711", write_key)
    assert created.status_code == 201
    body = created.json()
    assert body["sku"] == "SKU-4711" and body["status"] == "pending"
    assert body["similar_url"] == "http://testserver/api/v1/products/SKU-4711/similar"
    assert sent(first) == [queue.EMBED]
    with django_capture_on_commit_callbacks() as again:
        repeat = put(client, "SKU-4711", write_key)
    assert repeat.status_code == 200 and sent(again) == []
    assert repeat.json()["updated_at"] == body["updated_at"]
    assert Product.objects.count() == 1


def test_patch_changes_fields_and_get_reads_them(client, write_key):
    put(client, "a1", write_key)
    response = client.patch("/api/v1/products/a1", {"name": "Blue Dress"},
                            content_type="application/json", **bearer(write_key))
    assert response.status_code == 200 and response.json()["name"] == "Blue Dress"
    assert client.get("/api/v1/products/a1").json()["name"] == "Blue Dress"


def test_delete_removes_the_product_and_its_list(client, write_key):
    main = make_product("Main")
    link_neighbours(main, [make_product(f"N{i}") for i in range(3)])
    response = client.delete(f"/api/v1/products/{main.sku}", **bearer(write_key))
    assert response.status_code == 204
    assert not Product.objects.filter(pk=main.pk).exists()
    gone = client.get(f"/api/v1/products/{main.sku}")
    assert gone.status_code == 404
    assert gone.json() == {"error": f"no product with SKU {main.sku!r}", "reason": "not_found",
                           "status": 404}


@pytest.mark.parametrize(("data", "reason", "status"), [
    (b"plain text", "unreadable", 400), (b"", "empty", 400),
    (b"%PDF-1.4\n%stuff", "unsupported_format", 400)])
def test_a_bad_photo_is_refused_with_its_reason(client, write_key, data, reason, status):
    bad = SimpleUploadedFile("x.png", data, content_type="image/png")
    response = put(client, "bad", write_key, image=bad)
    assert response.status_code == status
    assert response.json()["reason"] == reason and "image" in response.json()["fields"]
    assert not Product.objects.exists()


def test_a_photo_over_the_limit_is_413(client, write_key, settings):
    settings.LOOKALIKE_MAX_UPLOAD_BYTES = 100
    response = put(client, "big", write_key)
    assert response.status_code == 413 and response.json()["reason"] == "too_large"


def test_missing_fields_and_a_bad_sku_are_400(client, write_key):
    body = encode_multipart(BOUNDARY, {"name": "x"})
    response = client.put("/api/v1/products/x1", body, content_type=MULTIPART, **bearer(write_key))
    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"category", "image"}
    bad = put(client, "-bad", write_key)
    assert bad.status_code == 400 and bad.json()["reason"] == "bad_sku"


def test_writes_need_a_write_key(client, read_key, write_key):
    assert put(client, "k1", "").status_code == 401
    anonymous = client.delete("/api/v1/products/k1")
    assert anonymous.status_code == 401 and anonymous.json()["reason"] == "key_required"
    denied = put(client, "k1", read_key)
    assert denied.status_code == 403 and denied.json()["reason"] == "insufficient_scope"
    assert put(client, "k1", write_key).status_code == 201


def test_a_revoked_or_unknown_key_is_refused(client, write_key):
    from catalog.models import ApiKey
    from catalog.services.api_keys import api_keys_revoke

    api_keys_revoke(key_ids=list(ApiKey.objects.values_list("pk", flat=True)))
    revoked = put(client, "r1", write_key)
    assert revoked.status_code == 401 and revoked.json()["reason"] == "revoked_key"
    unknown = client.get("/api/v1/products", HTTP_X_API_KEY="lk_nope")
    assert unknown.status_code == 401 and unknown.json()["reason"] == "bad_key"


def test_reads_can_be_closed(client, settings, read_key):
    settings.LOOKALIKE_API_OPEN_READS = False
    assert client.get("/api/v1/products").status_code == 401
    assert client.get("/api/v1/products", **bearer(read_key)).status_code == 200


def test_list_pages_with_a_cursor_and_filters(client):
    made = [make_product(f"P{i}", category="Coat" if i % 2 else "Dress") for i in range(7)]
    Product.objects.filter(pk=made[0].pk).update(status=Product.Status.FAILED)
    first = client.get("/api/v1/products?page_size=3").json()
    second = client.get(first["next"]).json()
    seen = [p["sku"] for p in first["results"] + second["results"]]
    assert seen == [p.sku for p in reversed(made)][:6]
    coats = client.get("/api/v1/products?category=Coat").json()["results"]
    assert {p["sku"] for p in coats} == {p.sku for p in made if p.category == "Coat"}
    failed = client.get("/api/v1/products?status=failed").json()["results"]
    assert [p["sku"] for p in failed] == [made[0].sku]
    future = client.get("/api/v1/products?updated_since=2999-01-01T00:00:00Z").json()
    assert future["results"] == []
    bad = client.get("/api/v1/products?updated_since=yesterday")
    assert bad.status_code == 400 and "updated_since" in bad.json()["fields"]


def test_photos_lists_the_urls_of_every_photo_main_first(client):
    product = make_product("Coat")
    further = [make_photo(product), make_photo(product, status=ProductPhoto.Status.FAILED)]
    urls = [f"http://testserver{url}" for url in
            [product.image.url, *(p.image.url for p in further)]]
    body = client.get(f"/api/v1/products/{product.sku}").json()
    assert body["photos"] == urls and body["image_url"] == urls[0]
    single = make_product("Tee")
    listed = {p["sku"]: p["photos"] for p in client.get("/api/v1/products").json()["results"]}
    assert listed == {product.sku: urls, single.sku: [f"http://testserver{single.image.url}"]}


def test_the_list_reads_every_products_photos_at_once(client):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/api/v1/products").status_code == 200
        return len(captured)

    make_photo(make_product("First"))
    once = queries()
    for i in range(4):
        make_photo(make_product(f"More {i}"))
    assert queries() == once


def test_similar_lists_with_state_etag_and_304(client):
    main = make_product("Main", category="Dress")
    others = [make_product(f"N{i}", category="Dress") for i in range(10)]
    link_neighbours(main, others)
    url = f"/api/v1/products/{main.sku}/similar?limit=3"
    response = client.get(url)
    body = response.json()
    assert body["state"] == "ready"
    assert [n["sku"] for n in body["neighbours"]] == [o.sku for o in others[:3]]
    assert set(body["neighbours"][0]) == {"rank", "distance", "sku", "name", "category", "url",
                                          "image_url"}
    assert response["Cache-Control"] == "public, max-age=60"
    etag = response["ETag"]
    cached = client.get(url, HTTP_IF_NONE_MATCH=etag)
    assert cached.status_code == 304 and cached["ETag"] == etag and cached.content == b""
    # A CDN may send the tag weak, or among others (RFC 9110's weak comparison).
    assert client.get(url, HTTP_IF_NONE_MATCH=f'"other", W/{etag}').status_code == 304
    assert client.get(url, HTTP_IF_NONE_MATCH='"other"').status_code == 200
    Product.objects.filter(pk=others[0].pk).update(name="Renamed")
    changed = client.get(url, HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag


def test_a_product_being_embedded_again_keeps_its_last_list(client):
    main = make_product("Main")
    link_neighbours(main, [make_product(f"N{i}") for i in range(10)])
    Product.objects.filter(pk=main.pk).update(status=Product.Status.PENDING)
    body = client.get(f"/api/v1/products/{main.sku}/similar").json()
    assert body["state"] == "refreshing" and len(body["neighbours"]) == 10
    new = make_product("New", status=Product.Status.PENDING)
    fresh = client.get(f"/api/v1/products/{new.sku}/similar").json()
    assert fresh["state"] == "computing" and fresh["neighbours"] == []


@pytest.mark.parametrize("limit", ["0", "11", "x"])
def test_similar_limit_out_of_range_is_400(client, limit):
    main = make_product("Main")
    response = client.get(f"/api/v1/products/{main.sku}/similar?limit={limit}")
    assert response.status_code == 400 and "limit" in response.json()["fields"]


def test_every_error_is_json_in_one_format(client, write_key):
    wrong_method = client.post("/api/v1/products/x", **bearer(write_key))
    assert wrong_method.status_code == 405
    assert wrong_method.json()["reason"] == "method_not_allowed"
    unknown = client.get("/api/v1/nowhere")
    assert unknown.status_code == 404 and unknown.json()["reason"] == "not_found"
    media = client.put("/api/v1/products/x", "<x/>", content_type="application/xml",
                       **bearer(write_key))
    assert media.status_code == 415 and media.json()["reason"] == "unsupported_media_type"
    for response in (wrong_method, unknown, media):
        assert set(response.json()) >= {"error", "reason", "status"}
        assert response.json()["status"] == response.status_code
