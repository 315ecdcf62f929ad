"""catalog.services.manifest_rows and catalog_sync: manifests read, rows refused with their line
and reason, idempotency by SKU and photo hash, and pruning (the broker only records sends; the
real workers are in tests/catalog/management/test_import_catalog.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.models import Product
from catalog.services import queue
from catalog.services.catalog_sync import catalog_sync
from catalog.services.manifest_rows import ManifestError, ParsedRows, manifest_rows
from catalog.services.products import ProductChange, products_change_by_sku
from catalog.vectors import sha256_hex
from tests.pipeline.helpers import drawn_image

pytestmark = pytest.mark.django_db


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(4):
        (folder / f"{i}.png").write_bytes(drawn_image(i, 32))
    return folder


def jsonl(path: Path, *lines: object) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def sends(callbacks) -> list[dict]:
    return [cb.kwargs for cb in callbacks if isinstance(cb, queue.TaskSend)]


def outcomes(result) -> list[tuple[int, str, str]]:
    return [(o.line, o.outcome, o.reason) for o in result.outcomes]


def test_jsonl_rows_each_refused_with_its_line_and_reason(tmp_path, images,
                                                           django_capture_on_commit_callbacks):
    (tmp_path / "outside.png").write_bytes(drawn_image(9, 32))
    (images / "link.png").symlink_to(tmp_path / "outside.png")
    manifest = jsonl(
        tmp_path / "export.jsonl",
        {"sku": 4711, "name": "Red dress", "category": "Dress", "photo": "0.png"},
        "{not json",
        "",  # blank lines are skipped, but still counted
        ["a", "list"],
        {"sku": "a1", "name": "Coat", "category": "Coat", "photo": "1.png", "colour": "red"},
        {"sku": "a2", "name": "Coat", "category": "Coat", "photo": "link.png"},
        {"sku": "a3", "name": 5, "category": "Coat", "photo": "2.png"},
        {"sku": "a4", "name": "Coat", "category": "Coat"},
    )
    with django_capture_on_commit_callbacks() as callbacks:
        result = catalog_sync(parsed=manifest_rows(path=manifest, images=images))
    assert outcomes(result) == [(1, "created", ""), (2, "failed", "malformed"),
                                (4, "failed", "malformed"), (5, "failed", "unknown_field"),
                                (6, "failed", "photo_outside"), (7, "failed", "invalid"),
                                (8, "failed", "missing_field")]
    assert "unknown field(s) colour; the fields are sku, name, category, photo" in [
        o.message for o in result.outcomes]
    assert list(Product.objects.values_list("sku", "name")) == [("4711", "Red dress")]
    assert len(result.queued) == 1 and sends(callbacks) == [{"product_ids": result.queued}]


@pytest.mark.parametrize(("text", "message"), [
    ("sku,name,category,photo,colour\n", r"unknown column\(s\): colour"),
    ("sku,name,photo\n", r"missing column\(s\): category"),
    ("", "is empty"),
    ('sku,name,category,photo\n"a,b\n', "not valid CSV"),
])
def test_a_csv_manifest_that_cannot_be_read_is_refused_whole(tmp_path, images, text, message):
    manifest = tmp_path / "export.csv"
    manifest.write_text(text)
    with pytest.raises(ManifestError, match=message):
        manifest_rows(path=manifest, images=images)


def test_the_command_names_what_is_wrong_with_the_manifest(tmp_path, images):
    (tmp_path / "export.txt").write_text("x")
    (tmp_path / "latin.csv").write_bytes("sku,name\nä".encode("latin-1"))
    for manifest, folder, message in [
        (tmp_path / "missing.csv", images, "cannot read the manifest .*missing.csv"),
        (tmp_path / "export.txt", images, "a manifest is a .csv or .jsonl file"),
        (tmp_path / "latin.csv", images, "is not UTF-8 text"),
        (tmp_path / "latin.csv", tmp_path / "nope", "the images folder .*nope does not exist"),
    ]:
        with pytest.raises(CommandError, match=message):
            call_command("import_catalog", str(manifest), "--images", str(folder))
    assert not Product.objects.exists()


def test_a_repeat_is_unchanged_and_a_rename_queues_nothing(tmp_path, images,
                                                          django_capture_on_commit_callbacks):
    row = {"sku": "b1", "name": "Bag", "category": "Bag", "photo": "0.png"}
    parsed = manifest_rows(path=jsonl(tmp_path / "a.jsonl", row), images=images)
    with django_capture_on_commit_callbacks() as first:
        catalog_sync(parsed=parsed)
    assert len(sends(first)) == 1
    renamed = manifest_rows(path=jsonl(tmp_path / "b.jsonl", {**row, "name": "Big bag"}),
                            images=images)
    with django_capture_on_commit_callbacks() as again:
        assert outcomes(catalog_sync(parsed=parsed)) == [(1, "unchanged", "")]
        result = catalog_sync(parsed=renamed)
    assert outcomes(result) == [(1, "changed", "")] and result.queued == []
    assert sends(again) == []
    assert Product.objects.get(sku="b1").name == "Big bag"


def test_prune_keeps_failed_rows_products_and_refuses_an_empty_export(
        tmp_path, images, django_capture_on_commit_callbacks):
    rows = [{"sku": f"c{i}", "name": "Top", "category": "Top", "photo": f"{i}.png"}
            for i in range(3)]
    with django_capture_on_commit_callbacks() as created:
        catalog_sync(parsed=manifest_rows(path=jsonl(tmp_path / "a.jsonl", *rows), images=images),
                     batch_size=2)
    # one embedding task per batch of rows, not one per product
    pks = list(Product.objects.order_by("sku").values_list("pk", flat=True))
    assert sends(created) == [{"product_ids": pks[:2]}, {"product_ids": pks[2:]}]
    (images / "1.png").write_bytes(b"broken")
    parsed = manifest_rows(path=jsonl(tmp_path / "b.jsonl", *rows[1:]), images=images)
    result = catalog_sync(parsed=parsed, prune=True)
    assert outcomes(result) == [(1, "failed", "unreadable"), (2, "unchanged", "")]
    assert result.deleted == ["c0"]
    assert sorted(Product.objects.values_list("sku", flat=True)) == ["c1", "c2"]
    assert Product.objects.get(sku="c1").image_sha256 == sha256_hex(drawn_image(1, 32))
    with pytest.raises(ValueError, match="refusing to prune the whole catalog"):
        catalog_sync(parsed=ParsedRows(), prune=True)
    assert Product.objects.count() == 2


def _new_rows(tmp_path: Path, name: str, n: int) -> list[dict]:
    return [{"sku": f"{name}{i}", "name": f"{name} {i}", "category": "Top",
             "photo": f"{i % 4}.png"} for i in range(n)]


def test_new_rows_go_in_together_in_as_many_queries_for_40_rows_as_for_5(tmp_path, images):
    counts = []
    for name, n in (("few", 5), ("many", 40)):
        parsed = manifest_rows(path=jsonl(tmp_path / f"{name}.jsonl", *_new_rows(tmp_path, name, n)),
                               images=images)
        with CaptureQueriesContext(connection) as queries:
            result = catalog_sync(parsed=parsed)
        assert {o.outcome for o in result.outcomes} == {"created"} and len(result.queued) == n
        counts.append(len(queries))
    assert counts[0] == counts[1]
    assert Product.objects.count() == 45


def test_a_row_with_a_nul_character_fails_alone(tmp_path, images):
    rows = _new_rows(tmp_path, "n", 3)
    rows[1]["name"] = "Nul\u0000name"
    result = catalog_sync(parsed=manifest_rows(path=jsonl(tmp_path / "a.jsonl", *rows),
                                               images=images))
    assert outcomes(result) == [(1, "created", ""), (2, "failed", "invalid"), (3, "created", "")]
    assert sorted(Product.objects.values_list("sku", flat=True)) == ["n0", "n2"]


def test_a_new_row_the_models_check_refuses_fails_alone_and_leaves_no_file(
        tmp_path, images, settings, monkeypatch, django_capture_on_commit_callbacks):
    check = Product.clean_fields

    def refuse_one(product, exclude=None):
        if product.sku == "d1":
            raise ValidationError({"name": ["refused here"]})
        check(product, exclude=exclude)

    monkeypatch.setattr(Product, "clean_fields", refuse_one)
    parsed = manifest_rows(path=jsonl(tmp_path / "a.jsonl", *_new_rows(tmp_path, "d", 3)),
                           images=images)
    with django_capture_on_commit_callbacks() as callbacks:
        result = catalog_sync(parsed=parsed)
    assert outcomes(result) == [(1, "created", ""), (2, "failed", "invalid"), (3, "created", "")]
    assert result.outcomes[1].message == "refused here"
    stored = sorted(Product.objects.values_list("sku", flat=True))
    assert stored == ["d0", "d2"] and sends(callbacks) == [{"product_ids": result.queued}]
    files = sorted(p.name for p in (Path(settings.MEDIA_ROOT) / "products").iterdir())
    assert files == sorted(Path(p.image.name).name for p in Product.objects.all())


def _changes(tmp_path: Path, name: str, n: int) -> list[dict]:
    """Rows for ``n`` products made by ``_new_rows``: a third renamed, a third with another
    photo, a third as they were."""
    rows = _new_rows(tmp_path, name, n)
    for i, row in enumerate(rows):
        if i % 3 == 0:
            row["name"] += " renamed"
        elif i % 3 == 1:
            row["photo"] = f"{(i + 1) % 4}.png"
    return rows


def test_changed_rows_go_in_together_and_queue_only_new_photos(
        tmp_path, images, django_capture_on_commit_callbacks):
    counts = []
    for name, n in (("few", 3), ("many", 30)):
        catalog_sync(parsed=manifest_rows(path=jsonl(tmp_path / f"{name}.jsonl",
                                                     *_new_rows(tmp_path, name, n)),
                                          images=images))
        parsed = manifest_rows(path=jsonl(tmp_path / f"{name}-2.jsonl", *_changes(tmp_path, name, n)),
                               images=images)
        with CaptureQueriesContext(connection) as queries, \
                django_capture_on_commit_callbacks() as callbacks:
            result = catalog_sync(parsed=parsed)
        counts.append(len(queries))
        expected = ["changed", "changed", "unchanged"] * (n // 3)
        assert [o.outcome for o in result.outcomes] == expected
        new_photos = Product.objects.filter(sku__in=[f"{name}{i}" for i in range(1, n, 3)])
        assert sorted(result.queued) == sorted(new_photos.values_list("pk", flat=True))
        assert set(new_photos.values_list("status", flat=True)) == {Product.Status.PENDING}
        assert sends(callbacks) == [{"product_ids": sorted(result.queued)}]
        assert Product.objects.get(sku=f"{name}0").name == f"{name} 0 renamed"
        assert outcomes(catalog_sync(parsed=parsed)) == [(i + 1, "unchanged", "") for i in range(n)]
    assert counts[0] == counts[1]


def test_a_change_of_a_product_deleted_meanwhile_is_reported_missing(tmp_path, images):
    catalog_sync(parsed=manifest_rows(path=jsonl(tmp_path / "a.jsonl", *_new_rows(tmp_path, "g", 2)),
                                      images=images))
    Product.objects.filter(sku="g1").delete()
    applied = products_change_by_sku(changes=[ProductChange("g0", "Renamed", "Top"),
                                              ProductChange("g1", "Renamed", "Top")])
    assert (applied.changed, applied.missing) == ({"g0"}, {"g1"})
    assert Product.objects.get(sku="g0").name == "Renamed"
