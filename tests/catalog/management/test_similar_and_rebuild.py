"""``similar`` (search by photo from the shell, with a sheet) and ``rebuild_similarity``."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from catalog.models import Product, ProductNeighbour, RebuildRun
from similarity.evaluation.contact_sheet import SheetRow, sheet_geometry
from tests.pipeline.helpers import neighbour_mismatches, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def run(name: str, *args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(name, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def catalog(worker) -> list[Product]:
    """10 Fashion-MNIST garments (one per class), imported through the worker, all ready."""
    run("import_garments", "--fashion-mnist", "--per-class", "1", "--offset", "5", "--timeout", "300")
    products = list(Product.objects.order_by("pk"))
    assert len(products) == 10 and all(p.status == Product.Status.READY for p in products)
    return products


def test_similar_json_table_and_sheet(catalog, tmp_path):
    target = next(p for p in catalog if p.category == "Sneaker")
    query = tmp_path / "query.png"
    with target.image.open("rb") as fh:
        query.write_bytes(fh.read())

    out, _ = run("similar", str(query), "--json", "-k", "5")
    hits = json.loads(out)
    assert len(hits) == 5
    for hit in hits:
        assert set(hit) == {"id", "name", "category", "distance"}
        assert isinstance(hit["id"], int) and isinstance(hit["distance"], float)
    assert hits[0]["id"] == target.pk and hits[0]["name"] == target.name == "Sneaker 1"
    assert hits[0]["category"] == "Sneaker"
    assert hits[0]["distance"] == pytest.approx(0.0, abs=1e-3)
    assert [h["distance"] for h in hits] == sorted(h["distance"] for h in hits)
    assert hits[1]["distance"] > 1.0  # a different garment is far away

    out, _ = run("similar", str(query), "-k", "3")
    lines = out.strip().splitlines()
    assert lines[0].split() == ["rank", "distance", "id", "category", "name"]
    assert len(lines) == 4
    assert lines[1].split()[:5] == ["1", "0.0000", str(target.pk), "Sneaker", "Sneaker"]

    sheet_path = tmp_path / "out" / "sheet.png"
    out, err = run("similar", str(query), "-k", "5", "--sheet", str(sheet_path))
    with Image.open(sheet_path) as sheet:
        assert sheet.format == "PNG"
        tile = Image.new("RGB", (8, 8))
        expected = sheet_geometry([SheetRow(tile, [(tile, "#1 Sneaker\nd = 0.000")] * 5)]).size
        assert sheet.size == expected
    assert f"sheet written to {sheet_path}" in err


def test_similar_refuses_bad_images(tmp_path, media_root):
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is plain text, not a garment")
    with pytest.raises(CommandError, match=r"notes\.png rejected \(unreadable\): the file contains text"):
        run("similar", str(bad))
    with pytest.raises(CommandError, match="cannot read"):
        run("similar", str(tmp_path / "missing.png"))
    with pytest.raises(CommandError, match="k must be between 1 and 100"):
        run("similar", str(bad), "-k", "0")


def test_rebuild_in_process_then_async(catalog):
    # drift for the rebuild to repair: a lost neighbour list
    ProductNeighbour.objects.filter(product=catalog[0]).delete()

    out, err = run("rebuild_similarity")
    run_row = RebuildRun.objects.get(trigger="command")
    assert run_row.state == RebuildRun.State.DONE and run_row.step == "done"
    assert run_row.done == run_row.total == 10 and run_row.finished_at
    assert f"rebuild #{run_row.pk} done in" in out and "matrix of 10 product(s)" in out
    assert "neighbours" in err and "10/10" in err  # the step bars
    assert neighbour_mismatches() == []
    assert ProductNeighbour.objects.filter(product=catalog[0]).count() == 9

    out, err = run("rebuild_similarity", "--async", "--timeout", "120")
    queued = RebuildRun.objects.filter(trigger__startswith="command-").get()
    assert queued.state == RebuildRun.State.DONE
    assert "queued the rebuild" in out and f"rebuild #{queued.pk} done in" in out
    wait_for(lambda: neighbour_mismatches() == [] or neighbour_mismatches(), what="lists intact")


def test_async_rebuild_without_a_worker_times_out_clearly(no_broker):
    with pytest.raises(CommandError, match="no worker started the rebuild; are the workers running"):
        run("rebuild_similarity", "--async", "--timeout", "0")
    assert [s.task for s in no_broker] == ["workers.tasks.rebuild_similarity"]
    assert no_broker[0].kwargs["trigger"].startswith("command-")
