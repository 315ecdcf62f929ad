"""POST /api/v1/search (limit, category), the schema and its reference page."""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.catalog.readside import image_bytes

pytestmark = pytest.mark.django_db


def photo(img) -> SimpleUploadedFile:
    return SimpleUploadedFile("q.png", image_bytes(img), content_type="image/png")


def test_search_with_limit_and_category(client, catalog_of_garments, query_photos):
    categories = {p.category for p in catalog_of_garments}
    wanted = sorted(categories)[1]
    response = client.post("/api/v1/search", {"image": photo(query_photos[3]), "limit": 4,
                                              "category": wanted})
    assert response.status_code == 200
    results = response.json()["results"]
    in_category = [p for p in catalog_of_garments if p.category == wanted]
    assert len(results) == min(4, len(in_category))
    assert {r["category"] for r in results} == {wanted}
    assert [r["distance"] for r in results] == sorted(r["distance"] for r in results)
    everything = client.post("/api/v1/search", {"image": photo(query_photos[3])}).json()
    assert len(everything["results"]) == 10


def test_search_refuses_a_bad_photo_with_its_reason(client):
    bad = SimpleUploadedFile("q.png", b"not an image", content_type="image/png")
    response = client.post("/api/v1/search", {"image": bad})
    assert response.status_code == 400 and response.json()["reason"] == "unreadable"
    missing = client.post("/api/v1/search", {})
    assert missing.status_code == 400 and "image" in missing.json()["fields"]


def test_the_schema_documents_every_operation_and_error(client):
    schema = client.get("/api/v1/schema/?format=json").json()
    assert schema["openapi"].startswith("3.")
    operations = {(path, method): op for path, item in schema["paths"].items()
                  for method, op in item.items()}
    assert {("/api/v1/products/{sku}", m) for m in ("get", "put", "patch", "delete")} <= set(
        operations)
    for op in operations.values():
        assert {"400", "404", "413", "415", "429"} <= set(op["responses"])
    assert operations[("/api/search/", "post")]["deprecated"] is True
    assert operations[("/api/products/{product_id}/similar/", "get")]["deprecated"] is True
    assert "Error" in schema["components"]["schemas"]
    conflict = operations[("/api/v1/products/{sku}", "put")]["responses"]["409"]
    assert "sku_conflict" in conflict["description"]
    assert conflict["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_the_reference_page_uses_the_projects_own_static_files(client):
    page = client.get("/api/v1/docs/")
    assert page.status_code == 200
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page.text
    # Every script and stylesheet is served from this site: no absolute URL to another host.
    external = re.findall(r'(?:src|href)\s*=\s*["\'](?:https?:)?//', page.text)
    assert external == []
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page.text


def test_search_without_a_category_limits_to_the_predicted_one_and_says_so(
        client, catalog_of_garments, query_photos, stored_vote):
    stored_vote(1, 0.0)
    predicted = client.post("/api/v1/search", {"image": photo(query_photos[1])}).json()
    assert predicted["predicted_category"] == predicted["category"] == "Trouser"
    assert {r["category"] for r in predicted["results"]} == {"Trouser"}
    everything = client.post("/api/v1/search", {"image": photo(query_photos[1]), "category": "all"}).json()
    assert everything["predicted_category"] is None and everything["category"] is None
    assert len(everything["results"]) == 10 and len({r["category"] for r in everything["results"]}) > 1
    given = client.post("/api/v1/search", {"image": photo(query_photos[1]), "category": "Bag"}).json()
    assert (given["category"], given["predicted_category"]) == ("Bag", None)
    assert {r["category"] for r in given["results"]} == {"Bag"}


def test_without_a_confident_prediction_every_category_is_searched(client, catalog_of_garments, query_photos,
                                                                   stored_vote):
    stored_vote(10, 1.0)  # 10 of one category: never, with 4 garments a category
    answer = client.post("/api/v1/search", {"image": photo(query_photos[1])}).json()
    assert answer["predicted_category"] is None and answer["category"] is None
    assert len({r["category"] for r in answer["results"]}) > 1


def test_the_deprecated_search_never_predicts(client, catalog_of_garments, query_photos, stored_vote):
    stored_vote(1, 0.0)
    answer = client.post("/api/search/", {"image": photo(query_photos[1])}).json()
    assert set(answer) == {"results"} and len(answer["results"]) == 10
    assert len({r["category"] for r in answer["results"]}) > 1


def test_the_schema_documents_the_category_facet(client):
    schema = client.get("/api/v1/schema/?format=json").json()
    result = schema["components"]["schemas"]["SearchResult"]
    assert {"results", "category", "predicted_category"} <= set(result["required"])
    for name in ("category", "predicted_category"):
        assert result["properties"][name]["nullable"] is True
    request = schema["components"]["schemas"]["SearchRequestRequest"]["properties"]["category"]
    assert '"all"' in request["description"] and "predicted" in request["description"]
