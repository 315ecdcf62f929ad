"""``import_catalog``: a shop's manifest through the real worker. 300 rows with 20 bad ones,
the same manifest again, 10 changed photos, and ``--prune``."""

from __future__ import annotations

import csv
import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from catalog.models import Product, ProductNeighbour
from catalog.services import queue
from catalog.vectors import sha256_hex
from tests.pipeline.helpers import drawn_image, neighbour_mismatches, settled, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

GOOD = 280
SIZE = 48  # small photos: the model sees 224 px whatever comes in
# 20 bad rows of different kinds: (sku, name, category, photo), the photo file's bytes (None:
# no file is written), the reason each must be reported with.
BAD: list[tuple[tuple[str, str, str, str], bytes | None, str]] = [
    *[((f"trunc-{i}", "Cut", "Tops", f"bad/trunc-{i}.png"), b"", "truncated") for i in range(3)],
    *[((f"empty-{i}", "Empty", "Tops", f"bad/empty-{i}.png"), b"", "empty") for i in range(2)],
    *[((f"text-{i}", "Text", "Tops", f"bad/text-{i}.png"), b"just some text\n" * 40,
       "unreadable") for i in range(2)],
    *[((f"gone-{i}", "Gone", "Tops", f"bad/gone-{i}.png"), None, "photo_missing")
      for i in range(2)],
    (("outside-1", "Out", "Tops", "../secret.png"), None, "photo_outside"),
    (("outside-2", "Out", "Tops", "/etc/hostname"), None, "photo_outside"),
    (("has space", "Sku", "Tops", "p/000.png"), None, "bad_sku"),
    (("-lead", "Sku", "Tops", "p/001.png"), None, "bad_sku"),
    (("noname", "", "Tops", "p/002.png"), None, "missing_field"),
    (("nocat", "No category", "", "p/003.png"), None, "missing_field"),
    (("twice", "First", "Tops", "p/004.png"), None, "duplicate_sku"),
    (("twice", "Second", "Tops", "p/005.png"), None, "duplicate_sku"),
    (("long", "x" * 201, "Tops", "p/006.png"), None, "invalid"),
]
MALFORMED = 2  # CSV lines with one value too many, reported as "malformed"


def good_rows() -> list[tuple[str, str, str, str]]:
    return [(f"SKU-{i:03d}", f"Garment {i}", ("Tops", "Dresses", "Bags")[i % 3], f"p/{i:03d}.png")
            for i in range(GOOD)]


def write_manifest(path: Path, rows: list[tuple[str, ...]], *, malformed: int = 0) -> None:
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["sku", "name", "category", "photo"])
        out.writerows(rows)
        out.writerows([(f"extra-{i}", "Extra", "Tops", "p/000.png", "surplus")
                       for i in range(malformed)])


@pytest.fixture
def shop(tmp_path) -> tuple[Path, Path]:
    """The images folder (280 distinct photos and the bad files) and a 300-row manifest."""
    images = tmp_path / "images"
    (images / "p").mkdir(parents=True)
    (images / "bad").mkdir()
    for i in range(GOOD):
        (images / "p" / f"{i:03d}.png").write_bytes(drawn_image(i, SIZE))
    trunc = drawn_image(999, SIZE)[:200]
    for (_, _, _, photo), data, reason in BAD:
        if data is not None:
            (images / photo).write_bytes(trunc if reason == "truncated" else data)
    (tmp_path / "secret.png").write_bytes(drawn_image(1000, SIZE))
    manifest = tmp_path / "export.csv"
    write_manifest(manifest, [*good_rows(), *(row for row, _, _ in BAD)], malformed=MALFORMED)
    return images, manifest


@pytest.fixture
def sends(monkeypatch) -> list[queue.TaskSend]:
    """Every task the command queues, recorded and then really sent."""
    seen: list[queue.TaskSend] = []
    real = queue.TaskSend.__call__

    def record(self: queue.TaskSend) -> None:
        seen.append(self)
        real(self)

    monkeypatch.setattr(queue.TaskSend, "__call__", record)
    return seen


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("import_catalog", *args, "--timeout", "300", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def embedded(sends: list[queue.TaskSend]) -> list[int]:
    return sorted(pk for s in sends if s.task == queue.EMBED for pk in s.kwargs["product_ids"])


def test_a_nightly_sync_imports_reruns_changes_and_prunes(worker, shop, sends):
    images, manifest = shop
    out, err = run(str(manifest), "--images", str(images))

    products = Product.objects.all()
    assert products.count() == GOOD
    assert set(products.values_list("status", flat=True)) == {Product.Status.READY}
    assert neighbour_mismatches() == []
    wait_for(settled(GOOD), timeout=120, what="every list full and exact")
    first = Product.objects.get(sku="SKU-007")
    assert (first.name, first.category) == ("Garment 7", "Dresses")
    assert first.image_sha256 == sha256_hex((images / "p" / "007.png").read_bytes())
    assert not Product.objects.filter(sku="twice").exists()
    assert "syncing 300 row(s)" in out
    reported = {int(m[1]): (m[2], m[3]) for m in re.finditer(r"  line (\d+) \((.*)\): (\w+): ", out)}
    assert reported == {line: (sku, reason) for line, ((sku, *_), _, reason)
                        in enumerate(BAD, start=GOOD + 2)} | {
        GOOD + len(BAD) + 2 + i: (f"extra-{i}", "malformed") for i in range(MALFORMED)}
    assert "SKU 'twice' is on lines 297, 298" in out
    assert f"line {GOOD + len(BAD) + 2} (extra-0): malformed: 5 values for 4 columns" in out
    assert (f"summary: created {GOOD}, changed 0, unchanged 0, deleted 0, failed 20; "
            f"queued {GOOD}: ready {GOOD}, failed in the workers 0, pending 0") in out
    assert "rows" in err and "300/300" in err and f"{GOOD}/{GOOD}" in err  # the progress bars
    assert len(embedded(sends)) == GOOD

    # the same export again: nothing changes and nothing is queued
    sends.clear()
    stamps = dict(products.values_list("pk", "updated_at"))
    out, _ = run(str(manifest), "--images", str(images))
    assert sends == []
    assert dict(products.values_list("pk", "updated_at")) == stamps
    assert f"summary: created 0, changed 0, unchanged {GOOD}, deleted 0, failed 20; queued 0" in out

    # ten new photos: exactly those ten are embedded again
    changed = {f"SKU-{i:03d}" for i in range(0, 100, 10)}
    for sku in changed:
        (images / "p" / f"{sku[4:]}.png").write_bytes(drawn_image(5000 + int(sku[4:]), SIZE))
    out, _ = run(str(manifest), "--images", str(images))
    changed_pks = sorted(Product.objects.filter(sku__in=changed).values_list("pk", flat=True))
    assert embedded(sends) == changed_pks
    assert f"summary: created 0, changed 10, unchanged {GOOD - 10}, deleted 0, failed 20" in out
    for product in Product.objects.filter(sku__in=changed):
        assert product.embedded_image_sha256 == product.image_sha256 == sha256_hex(
            (images / "p" / f"{product.sku[4:]}.png").read_bytes())
    wait_for(settled(GOOD), timeout=120, what="lists exact after new photos")

    # --prune: the last 30 are gone from the export; every list that held one is refilled
    kept = good_rows()[:-30]
    doomed = set(Product.objects.filter(sku__in=[r[0] for r in good_rows()[-30:]])
                 .values_list("pk", flat=True))
    holders = set(ProductNeighbour.objects.filter(neighbour_id__in=doomed)
                  .exclude(product_id__in=doomed).values_list("product_id", flat=True))
    assert holders  # the test means something only if some lists held a pruned product
    write_manifest(manifest, [*kept, *(row for row, _, _ in BAD)])
    out, _ = run(str(manifest), "--images", str(images), "--prune")
    assert "deleted 30 product(s) the manifest no longer names: SKU-250, SKU-251" in out
    assert f"summary: created 0, changed 0, unchanged {GOOD - 30}, deleted 30, failed 18" in out
    wait_for(settled(GOOD - 30), timeout=120, what="lists refilled after pruning")
    assert not ProductNeighbour.objects.filter(neighbour_id__in=doomed).exists()
    for pk in holders:
        assert ProductNeighbour.objects.filter(product_id=pk).count() == 10


def test_no_wait_queues_and_exits_and_a_timeout_names_what_is_pending(no_broker, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        (images / f"{i}.png").write_bytes(drawn_image(i, SIZE))
    manifest = tmp_path / "export.csv"
    write_manifest(manifest, [(f"n{i}", "Top", "Tops", f"{i}.png") for i in range(3)])
    out = StringIO()
    call_command("import_catalog", str(manifest), "--images", str(images), "--no-wait",
                 stdout=out, stderr=StringIO())
    assert "not following the workers (--no-wait): 3 pending" in out.getvalue()
    assert "summary: created 3, changed 0, unchanged 0, deleted 0, failed 0; queued 3" in out.getvalue()
    assert [s.kwargs["product_ids"] for s in no_broker] == [
        sorted(Product.objects.values_list("pk", flat=True))]

    (images / "0.png").write_bytes(drawn_image(77, SIZE))
    with pytest.raises(CommandError, match=r"timed out after 0 s: 1 of 1 queued product\(s\) "
                                           r"still pending; are the workers running"):
        call_command("import_catalog", str(manifest), "--images", str(images), "--timeout", "0",
                     stdout=StringIO(), stderr=StringIO())
