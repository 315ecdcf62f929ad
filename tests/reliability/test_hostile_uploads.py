"""Guarantee 5: hostile and odd uploads, through the admin and through search by photo.

Each case in ``upload_cases.CASES`` is either refused with a form error naming its reason,
with no product saved, no file stored and no task queued, or accepted and normalised: the
stored image, decoded by the engine, has the right orientation and colours, and search by
photo gives 10 results for it. A product whose file goes bad after upload fails in the
worker's code path only: status failed, the reason in the admin, never retried, and the
rest of its batch is embedded and indexed.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from catalog.models import Product, ProductNeighbour
from catalog.services.queue import EMBED, INDEX
from similarity.embedding.images import load_image
from similarity.errors import ImageRejected, SimilarityError
from tests.reliability import upload_cases
from tests.reliability.upload_cases import (
    ACCEPTED,
    CASES,
    REFUSED,
    SEARCH_K,
    Case,
    add_via_admin,
    case_params,
    encode,
    garment,
    looks_like,
    truncated_jpeg,
)

# Fixtures shared with test_secure_defaults.py, found by name.
catalog_vectors = upload_cases.catalog_vectors
fresh_state = upload_cases.fresh_state
matrix_dir = upload_cases.matrix_dir
media_root = upload_cases.media_root
no_rate_limit = upload_cases.no_rate_limit
searchable_catalog = upload_cases.searchable_catalog
superuser_client = upload_cases.superuser_client

pytestmark = pytest.mark.django_db

STORED_NAME = re.compile(r"^products/[0-9a-f]{32}\.(jpg|png|gif|webp)$")


def test_the_table_covers_every_required_case():
    ids = {c.id for c in CASES}
    required = {
        "zero-bytes", "text-named-jpg", "truncated-jpeg", "truncated-png", "decompression-bomb",
        "over-size-limit", "svg", "eps", "animated-gif", "palette-transparency", "cmyk-jpeg",
        "16-bit-png", "exif-rotated-jpeg", "1x1", "10000x100-strip",
    }
    assert required <= ids
    assert len(ids) == len(CASES)


def _limit(settings, case: Case) -> None:
    if case.max_bytes is not None:
        settings.LOOKALIKE_MAX_UPLOAD_BYTES = case.max_bytes
        assert len(case.make()) > case.max_bytes


def _stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def _queued(sent, callbacks) -> list[str]:
    """Task names queued: sent to the (recording) broker or still waiting for a commit."""
    waiting = [cb.task for cb in callbacks if hasattr(cb, "task")]
    return [s.task for s in sent] + waiting


# ------------------------------------------------------------------------- admin: refusals


@pytest.mark.parametrize("case", case_params(REFUSED))
def test_admin_add_refuses_with_the_reason_and_saves_nothing(
    case, superuser_client, media_root, settings, no_broker, django_capture_on_commit_callbacks
):
    _limit(settings, case)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = add_via_admin(superuser_client, case.upload())
    assert response.status_code == 200, "the form is shown again, not a redirect"
    form = response.context["adminform"].form
    errors = " ".join(form.errors.get("image", []))
    assert f"(reason: {case.reason})" in errors, errors
    assert case.words in errors, errors
    html = response.content.decode()
    assert f"(reason: {case.reason})" in html
    assert Product.objects.count() == 0
    assert _stored_files(media_root) == []
    assert _queued(no_broker, callbacks) == []


@pytest.mark.parametrize("case", case_params(REFUSED))
def test_admin_bulk_upload_names_the_bad_file_and_saves_nothing(
    case, superuser_client, media_root, settings, no_broker, django_capture_on_commit_callbacks
):
    _limit(settings, case)
    good = SimpleUploadedFile("good.png", encode(garment(5, size=32), "PNG"), content_type="image/png")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = superuser_client.post(
            reverse("admin:catalog_product_bulk_upload"),
            {"files": [good, case.upload()], "category": "Odd", "name_pattern": "{category} {n}"},
        )
    assert response.status_code == 200
    errors = " ".join(response.context["form"].errors.get("files", []))
    assert case.filename in errors and f"(reason: {case.reason})" in errors, errors
    assert Product.objects.count() == 0, "all or nothing: the good file is not saved either"
    assert _stored_files(media_root) == []
    assert _queued(no_broker, callbacks) == []


# ------------------------------------------------------------------------ admin: acceptance


@pytest.mark.parametrize("case", case_params(ACCEPTED))
def test_admin_add_accepts_and_the_engine_normalises_the_stored_image(
    case, superuser_client, media_root, no_broker, django_capture_on_commit_callbacks, model_path
):
    data = case.make()
    with django_capture_on_commit_callbacks(execute=True):
        response = add_via_admin(superuser_client, case.upload(data), name=f"Odd {case.id}")
    assert response.status_code == 302, response.context["adminform"].form.errors
    product = Product.objects.get()
    assert product.status == Product.Status.PENDING
    assert STORED_NAME.match(product.image.name), product.image.name
    path = Path(product.image.path)
    assert path.read_bytes() == data, "the upload is stored as sent"
    assert [(s.task, s.kwargs) for s in no_broker] == [(EMBED, {"product_ids": [product.pk]})]

    decoded = load_image(path)  # what the worker will see
    assert decoded.mode == "RGB"
    case.check(decoded)
    looks_like(decoded, case.expected())

    # And the worker's own code path embeds it rather than failing it.
    from catalog.services.product_embedding import products_embed_batch

    outcome = products_embed_batch(product_ids=[product.pk])
    assert outcome.embedded == [product.pk] and outcome.failed == []
    product.refresh_from_db()
    assert product.status == Product.Status.PROCESSING and product.error_message == ""
    vector = np.frombuffer(bytes(product.vector), "<f4")
    assert vector.shape == (1280,) and np.isfinite(vector).all()


# ------------------------------------------------------------------------ search by photo


def _search_both(client, case: Case, data: bytes | None = None):
    page = client.post(reverse("catalog:search"), {"image": case.upload(data)})
    api = client.post(reverse("catalog:api-search"), {"image": case.upload(data)})
    return page, api


@pytest.mark.parametrize("case", case_params(REFUSED))
def test_search_refuses_with_the_reason(
    case, client, settings, media_root, no_rate_limit, no_broker, django_capture_on_commit_callbacks
):
    _limit(settings, case)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        page, api = _search_both(client, case)
    status = 413 if case.reason == "too_large" else 400
    assert page.status_code == status
    errors = " ".join(page.context["form"].errors.get("image", []))
    assert f"(reason: {case.reason})" in errors and case.words in errors, errors
    assert f"(reason: {case.reason})" in page.content.decode()
    assert page.context["results"] is None

    assert api.status_code == status
    body = json.loads(api.content)
    assert body["reason"] == case.reason
    assert case.words in body["error"], body
    assert "results" not in body
    assert Product.objects.count() == 0
    assert _stored_files(media_root) == [], "search never stores the upload"
    assert _queued(no_broker, callbacks) == []


def _thumbnail(data_url: str) -> Image.Image:
    prefix = "data:image/jpeg;base64,"
    assert data_url.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(data_url[len(prefix) :]))).convert("RGB")


@pytest.mark.parametrize("case", case_params(ACCEPTED))
def test_search_accepts_odd_images_and_gives_ten_results(
    case, client, searchable_catalog, no_rate_limit, no_broker
):
    data = case.make()
    page, api = _search_both(client, case, data)
    assert page.status_code == 200, page.context["form"].errors
    assert len(page.context["results"]) == SEARCH_K
    assert api.status_code == 200, api.content
    results = api.json()["results"]
    assert len(results) == SEARCH_K
    catalog_ids = {p.pk for p in searchable_catalog}
    assert {r["id"] for r in results} <= catalog_ids
    distances = [r["distance"] for r in results]
    assert distances == sorted(distances) and all(np.isfinite(distances))
    assert [r["id"] for r in results] == [p.pk for p, _ in page.context["results"]]

    # The query the page shows back is the normalised image (upright, flattened, first frame).
    expected = case.expected()
    expected.thumbnail((320, 320))
    looks_like(_thumbnail(page.context["query_thumbnail"]), expected)
    assert no_broker == [], "search queues nothing"


# ------------------------------------------------------ failing later, in the worker's code path


def _good_png(seed: int) -> bytes:
    return encode(garment(seed), "PNG")


def test_a_file_corrupted_after_upload_fails_alone_and_shows_in_the_admin(
    superuser_client, media_root, matrix_dir, fresh_state, no_broker,
    django_capture_on_commit_callbacks, model_path,
):
    from catalog.services.indexing import index_apply
    from catalog.services.product_embedding import products_embed

    names = ["Good A", "Corrupted B", "Good C"]
    for i, name in enumerate(names):
        with django_capture_on_commit_callbacks(execute=True):
            upload = SimpleUploadedFile(f"{name}.png", _good_png(40 + i), content_type="image/png")
            response = add_via_admin(superuser_client, upload, name=name)
        assert response.status_code == 302
    products = {p.name: p for p in Product.objects.all()}
    ids = sorted(p.pk for p in products.values())
    assert sorted(pid for s in no_broker for pid in s.kwargs["product_ids"]) == ids
    no_broker.clear()

    bad = products["Corrupted B"]
    Path(bad.image.path).write_bytes(truncated_jpeg())  # the stored file goes bad after upload

    with django_capture_on_commit_callbacks(execute=True):
        products_embed(product_ids=ids)  # what the embed task runs, in one batch
    # The whole batch goes on to indexing (the failed one so it leaves the matrix).
    assert [(s.task, sorted(s.kwargs["product_ids"])) for s in no_broker] == [(INDEX, ids)]

    bad.refresh_from_db()
    assert bad.status == Product.Status.FAILED
    assert bad.error_message.startswith("truncated: JPEG data is truncated or corrupt"), bad.error_message
    assert bad.vector is None and bad.vector_key == ""
    for name in ("Good A", "Good C"):
        good = Product.objects.get(name=name)
        assert good.status == Product.Status.PROCESSING and good.error_message == ""
        assert good.vector is not None and good.embedded_image_sha256 == good.image_sha256

    with django_capture_on_commit_callbacks(execute=True):
        index_apply(product_ids=ids)
    ready = set(Product.objects.filter(status=Product.Status.READY).values_list("name", flat=True))
    assert ready == {"Good A", "Good C"}
    assert not ProductNeighbour.objects.filter(neighbour=bad).exists()
    assert not ProductNeighbour.objects.filter(product=bad).exists()
    assert ProductNeighbour.objects.filter(product__name="Good A", neighbour__name="Good C").exists()

    # The admin shows it: status failed and the reason, in the list and on the change page.
    listing = superuser_client.get(reverse("admin:catalog_product_changelist")).content.decode()
    assert "lookalike-status-failed" in listing
    assert "truncated: JPEG data is truncated or corrupt" in listing
    change = superuser_client.get(reverse("admin:catalog_product_change", args=[bad.pk]))
    assert "Embedding failed: truncated: JPEG data is truncated or corrupt" in change.content.decode()

    # Running the batch again (a redelivery) changes nothing: failed stays failed, no exception.
    no_broker.clear()
    with django_capture_on_commit_callbacks(execute=True):
        products_embed(product_ids=ids)
    bad.refresh_from_db()
    assert bad.status == Product.Status.FAILED
    assert set(Product.objects.filter(status=Product.Status.READY).values_list("name", flat=True)) == ready


def test_the_embed_task_succeeds_once_on_a_bad_file_and_never_retries_a_rejection(
    media_root, monkeypatch, no_broker, django_capture_on_commit_callbacks, model_path
):
    from catalog.services import product_embedding as embedding
    from tests.reliability.upload_cases import stored_product
    from workers import tasks

    # Configuration: a rejected image is not retried (everything else is).
    for task in (tasks.embed_products, tasks.index_products):
        assert ImageRejected in task.dont_autoretry_for
        assert task.acks_late

    # The real task on a bad file: it succeeds (the product records the failure), one run.
    bad = stored_product(name="Bad file", data=truncated_jpeg(), status="pending")
    calls: list[list[int]] = []
    real = embedding.products_embed

    def counting(*, product_ids):
        calls.append(list(product_ids))
        return real(product_ids=product_ids)

    monkeypatch.setattr(embedding, "products_embed", counting)
    with django_capture_on_commit_callbacks(execute=True):
        result = tasks.embed_products.apply(args=[[bad.pk]])
    assert result.state == "SUCCESS", result.traceback
    assert calls == [[bad.pk]]
    bad.refresh_from_db()
    assert bad.status == Product.Status.FAILED and bad.error_message.startswith("truncated:")

    # Should an ImageRejected ever escape the service, the task fails at once: no retry.
    calls.clear()

    def rejecting(*, product_ids):
        calls.append(list(product_ids))
        raise ImageRejected("truncated", "JPEG data is truncated or corrupt")

    monkeypatch.setattr(embedding, "products_embed", rejecting)
    result = tasks.embed_products.apply(args=[[bad.pk]])
    assert result.state == "FAILURE"
    assert isinstance(result.result, SimilarityError)
    assert len(calls) == 1, f"a permanent error was retried {len(calls) - 1} times"

    # Contrast: a transient error is retried (eager retries run at once, up to max_retries).
    calls.clear()

    def flaky(*, product_ids):
        calls.append(list(product_ids))
        raise OSError("storage hiccup")

    monkeypatch.setattr(embedding, "products_embed", flaky)
    result = tasks.embed_products.apply(args=[[bad.pk]])
    assert len(calls) == tasks.embed_products.max_retries + 1
