"""POST /api/v1/products/batch: rows with photos by multipart, per-row results, idempotent by SKU
and photo hash, the write scope, the row limit and the one error format."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from catalog.models import Product
from catalog.services import queue
from catalog.vectors import sha256_hex
from tests.catalog.api.conftest import bearer
from tests.pipeline.helpers import drawn_image

pytestmark = pytest.mark.django_db
URL = "/api/v1/products/batch"


def photo(seed: int, name: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, drawn_image(seed, 32), content_type="image/png")


def row(sku: str, **fields: str) -> dict[str, str]:
    return {"sku": sku, "name": f"Garment {sku}", "category": "Tops", **fields}


def post(client, key, rows, photos=()):
    return client.post(URL, {"rows": json.dumps(rows), "photos": list(photos)}, **bearer(key))


def embeds(callbacks) -> list[list[int]]:
    return [cb.kwargs["product_ids"] for cb in callbacks
            if isinstance(cb, queue.TaskSend) and cb.task == queue.EMBED]


def test_rows_go_in_and_the_failed_ones_say_why(client, write_key,
                                                 django_capture_on_commit_callbacks):
    rows = [row("a1", photo="a1.png"), row("a2", photo="a2.png"), row("bad sku", photo="a1.png"),
            row("a3", photo="nowhere.png"), row("a4", photo="broken.png"), row("a5"),
            row("a6", photo="a1.png", colour="red")]
    photos = [photo(1, "a1.png"), photo(2, "a2.png"),
              SimpleUploadedFile("broken.png", drawn_image(3, 32)[:100])]
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(client, write_key, rows, photos)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert {k: body[k] for k in ("created", "changed", "unchanged", "failed")} == {
        "created": 2, "changed": 0, "unchanged": 0, "failed": 5}
    assert [(r["row"], r["sku"], r["outcome"], r.get("reason")) for r in body["results"]] == [
        (1, "a1", "created", None), (2, "a2", "created", None), (3, "bad sku", "failed", "bad_sku"),
        (4, "a3", "failed", "photo_missing"), (5, "a4", "failed", "truncated"),
        (6, "a5", "failed", "missing_field"), (7, "a6", "failed", "unknown_field")]
    assert "no photo named 'nowhere.png' was sent in photos" in body["results"][3]["error"]
    assert sorted(Product.objects.values_list("sku", flat=True)) == ["a1", "a2"]
    assert Product.objects.get(sku="a2").image_sha256 == sha256_hex(drawn_image(2, 32))
    # one embedding task for the batch's new photos
    assert embeds(callbacks) == [sorted(Product.objects.values_list("pk", flat=True))]


def test_a_repeat_queues_nothing_and_a_new_photo_only_its_product(
        client, write_key, django_capture_on_commit_callbacks):
    rows = [row(f"s{i}", photo=f"{i}.png") for i in range(3)]
    post(client, write_key, rows, [photo(i, f"{i}.png") for i in range(3)])
    with django_capture_on_commit_callbacks() as again:
        same = post(client, write_key, rows, [photo(i, f"{i}.png") for i in range(3)]).json()
    assert same["unchanged"] == 3 and embeds(again) == []
    kept = Product.objects.get(sku="s0").image_sha256
    rows = [row("s0", photo_sha256=kept), row("s1", name="Renamed", photo_sha256="0" * 64),
            row("s2", photo="new.png")]
    with django_capture_on_commit_callbacks() as changed:
        body = post(client, write_key, rows, [photo(99, "new.png")]).json()
    assert [(r["outcome"], r.get("reason")) for r in body["results"]] == [
        ("unchanged", None), ("failed", "photo_required"), ("changed", None)]
    assert embeds(changed) == [[Product.objects.get(sku="s2").pk]]
    assert Product.objects.get(sku="s1").name == "Garment s1"


def test_json_rows_keep_their_photos_and_rename(client, write_key):
    post(client, write_key, [row("j1", photo="j1.png")], [photo(1, "j1.png")])
    sha = Product.objects.get(sku="j1").image_sha256
    response = client.post(URL, {"rows": [row("j1", name="Linen top", photo_sha256=sha)]},
                           content_type="application/json", **bearer(write_key))
    assert response.status_code == 200 and response.json()["changed"] == 1
    assert Product.objects.get(sku="j1").name == "Linen top"


@pytest.mark.parametrize(("rows", "status", "reason", "field"), [
    ("[not json", 400, "invalid", "rows"),
    (json.dumps({"sku": "x"}), 400, "invalid", "rows"),
    (json.dumps([]), 400, "invalid", "rows"),
    (json.dumps([{"sku": "x", "name": "n"}]), 400, "invalid", "rows"),
    (json.dumps([row(f"r{i}", photo="p.png") for i in range(4)]), 413, "too_many_rows", None),
])
def test_a_malformed_batch_is_refused_whole(client, write_key, settings, rows, status, reason,
                                            field):
    settings.LOOKALIKE_API_BATCH_MAX_ROWS = 3
    response = client.post(URL, {"rows": rows}, **bearer(write_key))
    assert response.status_code == status
    body = response.json()
    assert (body["status"], body["reason"]) == (status, reason) and body["error"]
    assert field is None or field in body["fields"]
    assert not Product.objects.exists()


def test_writes_need_a_write_key(client, read_key):
    rows = [row("k1", photo="k1.png")]
    assert client.post(URL, {"rows": json.dumps(rows)}).status_code == 401
    refused = post(client, read_key, rows, [photo(1, "k1.png")])
    assert refused.status_code == 403 and refused.json()["reason"] == "insufficient_scope"
    assert not Product.objects.exists()


def test_two_photos_of_one_name_and_duplicate_skus(client, write_key):
    twice = post(client, write_key, [row("d1", photo="p.png")], [photo(1, "p.png"), photo(2, "p.png")])
    assert twice.status_code == 400 and "two photos are named 'p.png'" in twice.json()["error"]
    body = post(client, write_key, [row("d1", photo="p.png"), row("d1", photo="p.png")],
                [photo(1, "p.png")]).json()
    assert [r["reason"] for r in body["results"]] == ["duplicate_sku", "duplicate_sku"]
    assert "SKU 'd1' is on lines 1, 2" in body["results"][0]["error"]
    assert not Product.objects.exists()


def test_more_photos_than_a_request_may_carry_is_refused_in_the_error_format(
        client, write_key, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2
    response = post(client, write_key, [row("f1", photo="0.png")],
                    [photo(i, f"{i}.png") for i in range(3)])
    assert response.status_code == 400, response.content
    assert response.json()["reason"] == "too_many_files"
    assert not Product.objects.exists()
