"""``import_garments``: Fashion-MNIST and folders, through the real worker, and its reports."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.core.validators import validate_slug

from catalog.models import Product, ProductNeighbour
from catalog.vectors import sha256_hex
from similarity.evaluation.fashion_mnist import CLASS_NAMES
from tests.pipeline.helpers import fashion_images, neighbour_mismatches

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("import_garments", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def garment_pngs(model_path) -> list[tuple[str, bytes]]:
    return fashion_images(1)  # one garment per class, 224 px PNG


def test_fashion_mnist_through_the_worker_then_skip_existing(worker):
    out, err = run("--fashion-mnist", "--per-class", "2", "--batch-size", "7", "--timeout", "120")

    products = list(Product.objects.order_by("pk"))
    assert len(products) == 20
    assert {p.status for p in products} == {Product.Status.READY}
    assert sorted({p.category for p in products}) == sorted(CLASS_NAMES)
    assert all(ProductNeighbour.objects.filter(product=p).count() == 10 for p in products)
    assert neighbour_mismatches() == []
    tops = Product.objects.filter(category="T-shirt/top").order_by("pk")
    assert [p.name for p in tops] == ["T-shirt/top 1", "T-shirt/top 2"]
    for p in products:
        validate_slug(p.slug)
        assert p.get_absolute_url()
        assert p.name.startswith(p.category + " ")
    # dark garment on white, 224 px
    with Product.objects.get(name="Trouser 1").image.open("rb") as fh:
        from PIL import Image

        img = Image.open(fh)
        img.load()
    assert img.size == (224, 224) and img.convert("L").getpixel((0, 0)) > 240
    assert "importing 20 Fashion-MNIST garment(s): train split, 2 per class" in out
    assert "created 20 product(s)" in out
    assert "summary: imported 20, ready 20, failed 0, pending 0" in out
    assert "import" in err and "workers" in err and "20/20" in err  # the progress bars

    # the demo's re-run: every image is already there, nothing is created
    out, _ = run("--fashion-mnist", "--per-class", "2", "--skip-existing", "--no-wait")
    assert Product.objects.count() == 20
    assert "created 0 product(s); skipped 20 already in the catalog; rejected 0" in out


def test_directory_with_two_categories_and_a_bad_file(worker, garment_pngs, tmp_path):
    root = tmp_path / "shop"
    (root / "Tops").mkdir(parents=True)
    (root / "Trousers").mkdir()
    tops = [data for cls, data in garment_pngs if cls in {"T-shirt/top", "Shirt", "Pullover"}]
    trousers = [data for cls, data in garment_pngs if cls == "Trouser"]
    for i, data in enumerate(tops):
        (root / "Tops" / f"top-{i}.png").write_bytes(data)
    (root / "Trousers" / "jeans.png").write_bytes(trousers[0])
    (root / "Trousers" / "broken.png").write_bytes(trousers[0][:400])  # truncated PNG
    (root / "Trousers" / ".DS_Store").write_bytes(b"hidden")
    (root / "loose.png").write_bytes(tops[0])

    out, err = run(str(root), "--timeout", "300")

    products = {p.name: p for p in Product.objects.all()}
    assert set(products) == {"top-0", "top-1", "top-2", "jeans"}
    assert {p.category for p in products.values()} == {"Tops", "Trousers"}
    assert products["jeans"].category == "Trousers"
    assert all(p.status == Product.Status.READY for p in products.values())
    assert all(ProductNeighbour.objects.filter(product=p).count() == 3 for p in products.values())
    assert products["jeans"].image_sha256 == sha256_hex(trousers[0])
    assert "importing 5 file(s)" in out and "2 categories: Tops, Trousers" in out
    assert "rejected Trousers/broken.png: truncated:" in out
    assert "summary: imported 4, ready 4, failed 0, pending 0, rejected 1" in out
    assert "rejected before import, by reason: truncated 1" in out
    assert "ignoring 1 file(s) directly in" in err


def test_product_folders_through_the_worker_then_rerun(worker, garment_pngs, tmp_path):
    """A folder in a category folder is one product; its photos embedded by the real worker."""
    from catalog.models import ProductPhoto

    root = tmp_path / "shop"
    images = [data for _, data in garment_pngs]
    files = {
        "Tops/loose.png": images[0],
        "Tops/Shirt/1.png": images[1], "Tops/Shirt/2.png": images[2],
        "Tops/Polo/c.png": images[3], "Tops/Polo/a.png": images[4], "Tops/Polo/b.png": images[5],
        "Trousers/Jeans/1.png": images[6][:400],  # truncated: the next photo is the main one
        "Trousers/Jeans/2.png": images[7],
    }
    for relative, data in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    (root / "Trousers" / "Empty").mkdir()

    out, err = run(str(root), "--timeout", "300")

    products = {p.name: p for p in Product.objects.all()}
    assert {name: p.photos_counted() for name, p in products.items()} == {
        "loose": 1, "Shirt": 2, "Polo": 3, "Jeans": 1}
    assert products["Polo"].image_sha256 == sha256_hex(images[4])  # a.png, first by name
    assert products["Jeans"].image_sha256 == sha256_hex(images[7])
    assert products["Polo"].sku == "Polo" and products["Jeans"].category == "Trousers"
    assert {p.status for p in products.values()} == {Product.Status.READY}
    assert {p.status for p in ProductPhoto.objects.all()} == {ProductPhoto.Status.READY}
    assert ProductPhoto.objects.filter(vector__isnull=False).count() == 3
    assert all(ProductNeighbour.objects.filter(product=p).count() == 3 for p in products.values())
    assert "importing 8 file(s) (4 product folder(s) among them)" in out
    assert "created 4 product(s) and 3 further photo(s); skipped 0" in out
    assert "rejected Trousers/Empty: empty_folder: the product folder holds no photo file" in out
    assert "rejected Trousers/Jeans/1.png: truncated:" in out
    assert ("summary: imported 4 with 3 further photo(s), ready 4, failed 0, pending 0, "
            "rejected 2") in out
    assert "further photos: added 3, ready 3, failed 0, pending 0" in out
    assert "9/9" in err  # the progress bar: 8 files and the empty folder

    out, _ = run(str(root), "--skip-existing", "--no-wait")
    assert Product.objects.count() == 4 and ProductPhoto.objects.count() == 3
    assert "created 0 product(s); skipped 7 already in the catalog; rejected 2" in out


def test_timeout_names_what_is_still_pending(no_broker, garment_pngs, tmp_path):
    (tmp_path / "Bags").mkdir()
    for i, (_, data) in enumerate(garment_pngs[:3]):
        (tmp_path / "Bags" / f"bag-{i}.png").write_bytes(data)

    with pytest.raises(CommandError, match=r"timed out after 0 s: 3 of 3 imported product\(s\) "
                                           r"still pending .*workers running"):
        run(str(tmp_path), "--timeout", "0", "--name-pattern", "{category} {n}")
    assert sorted(Product.objects.values_list("name", flat=True)) == ["Bags 1", "Bags 2", "Bags 3"]
    assert [s.task for s in no_broker] == ["workers.tasks.embed_products"]  # one batched task
    assert sorted(no_broker[0].kwargs["product_ids"]) == sorted(Product.objects.values_list("pk", flat=True))


def test_summary_groups_worker_failures_by_reason(no_broker, garment_pngs, tmp_path, monkeypatch):
    """The follow loop sees one product fail in the worker and the others become ready."""
    from catalog.management.commands import import_garments

    (tmp_path / "Coats").mkdir()
    for i, (_, data) in enumerate(garment_pngs[:4]):
        (tmp_path / "Coats" / f"coat-{i}.png").write_bytes(data)
    real_follow = import_garments.follow_products

    def worker_outcome(ids, **kwargs):
        ids = sorted(ids)
        Product.objects.filter(pk__in=ids[:2]).update(
            status=Product.Status.FAILED, error_message="truncated: image file is truncated"
        )
        Product.objects.filter(pk__in=ids[2:]).update(status=Product.Status.READY)
        return real_follow(ids, **kwargs)

    monkeypatch.setattr(import_garments, "follow_products", worker_outcome)
    out, _ = run(str(tmp_path))
    assert "summary: imported 4, ready 2, failed 2, pending 0" in out
    assert "failed in the workers, by reason:" in out
    assert "  truncated: 2: coat-0 (#" in out


def test_summary_names_further_photos_failed_in_the_workers(
        no_broker, garment_pngs, tmp_path, monkeypatch):
    from catalog.management.commands import import_garments
    from catalog.models import ProductPhoto

    for i, (_, data) in enumerate(garment_pngs[:3]):
        (tmp_path / "Coats" / "Duffle").mkdir(parents=True, exist_ok=True)
        (tmp_path / "Coats" / "Duffle" / f"{i}.png").write_bytes(data)
    real_follow = import_garments.follow_products

    def worker_outcome(ids, **kwargs):
        Product.objects.filter(pk__in=ids).update(status=Product.Status.READY)
        first, second = ProductPhoto.objects.order_by("pk")
        ProductPhoto.objects.filter(pk=first.pk).update(
            status=ProductPhoto.Status.FAILED, error_message="no_garment: nothing found")
        ProductPhoto.objects.filter(pk=second.pk).update(status=ProductPhoto.Status.READY)
        return real_follow(ids, **kwargs)

    monkeypatch.setattr(import_garments, "follow_products", worker_outcome)
    out, _ = run(str(tmp_path))
    first = ProductPhoto.objects.order_by("pk").first()
    assert "summary: imported 1 with 2 further photo(s), ready 1, failed 0, pending 0" in out
    assert "further photos: added 2, ready 1, failed 1, pending 0" in out
    assert "further photos failed in the workers, by reason:" in out
    assert f"  no_garment: 1: Duffle (photo #{first.pk})" in out


def test_bad_arguments_are_command_errors(no_broker, tmp_path):
    with pytest.raises(CommandError, match="exactly one"):
        run()
    with pytest.raises(CommandError, match="exactly one"):
        run(str(tmp_path), "--fashion-mnist")
    with pytest.raises(CommandError, match="does not exist"):
        run(str(tmp_path / "missing"))
    with pytest.raises(CommandError, match="no image files"):
        run(str(tmp_path))
    (tmp_path / "Hats").mkdir()
    (tmp_path / "Hats" / "a.png").write_bytes(b"x")
    with pytest.raises(CommandError, match="name pattern"):
        run(str(tmp_path), "--name-pattern", "{colour}")
    assert not Product.objects.exists()
