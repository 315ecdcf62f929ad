"""catalog.services.imports: folders where a product folder is one product with several photos."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalog.models import Product, ProductPhoto
from catalog.services import queue
from catalog.services.imports import ImportResult, garment_dir_sources, products_import
from catalog.vectors import sha256_hex
from tests.pipeline.helpers import drawn_image

pytestmark = pytest.mark.django_db


def write(root: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def run_import(root: Path, capture, **kwargs) -> tuple[ImportResult, list[queue.TaskSend]]:
    found = garment_dir_sources(directory=root)
    with capture(execute=False) as callbacks:
        result = products_import(sources=found.sources, empty_folders=found.empty_folders,
                                 **kwargs)
    return result, [cb for cb in callbacks if isinstance(cb, queue.TaskSend)]


def embedded_ids(sends: list[queue.TaskSend]) -> list[int]:
    assert {send.task for send in sends} <= {queue.EMBED}
    return sorted(pid for send in sends for pid in send.kwargs["product_ids"])


def main_and_further(product: Product) -> list[str]:
    return [product.image_sha256, *(p.image_sha256 for p in product.photos.order_by("pk"))]


@pytest.fixture
def shop(tmp_path) -> tuple[Path, dict[str, bytes]]:
    """Loose files and 1-, 2- and 3-photo product folders, an empty folder, hidden files."""
    root = tmp_path / "shop"
    files = write(root, {
        "Tops/loose top.png": drawn_image(1),
        "Tops/One/front.png": drawn_image(2),
        "Tops/Two Colours/b-back.png": drawn_image(3),
        "Tops/Two Colours/a-front.png": drawn_image(4),
        "Tops/Three (2)/1.png": drawn_image(5),
        "Tops/Three (2)/2.png": drawn_image(6),
        "Tops/Three (2)/3.png": drawn_image(7),
        "Trousers/jeans.png": drawn_image(8),
        "Trousers/Chinos/side/2.png": drawn_image(9),  # photos under a product folder's folders
        "Trousers/Chinos/1.png": drawn_image(10),
    })
    write(root, {"Tops/Empty/.DS_Store": b"hidden", "Tops/One/.hidden.png": drawn_image(11)})
    return root, files


def test_a_product_folder_is_one_product_its_first_file_the_main_photo(
        shop, django_capture_on_commit_callbacks):
    root, files = shop
    # a batch of 2 never splits the 3-photo folder
    result, sends = run_import(root, django_capture_on_commit_callbacks, batch_size=2)

    products = {p.name: p for p in Product.objects.all()}
    assert set(products) == {"loose top", "One", "Two Colours", "Three (2)", "jeans", "Chinos"}
    assert {name: p.photos_counted() for name, p in products.items()} == {
        "loose top": 1, "One": 1, "Two Colours": 2, "Three (2)": 3, "jeans": 1, "Chinos": 2}
    assert main_and_further(products["Two Colours"]) == [
        sha256_hex(files["Tops/Two Colours/a-front.png"]),
        sha256_hex(files["Tops/Two Colours/b-back.png"])]
    assert main_and_further(products["Three (2)"]) == [
        sha256_hex(files[f"Tops/Three (2)/{n}.png"]) for n in (1, 2, 3)]
    assert main_and_further(products["Chinos"]) == [
        sha256_hex(files["Trousers/Chinos/1.png"]), sha256_hex(files["Trousers/Chinos/side/2.png"])]
    assert products["Three (2)"].sku == "Three-2" and products["Three (2)"].category == "Tops"
    assert products["Chinos"].category == "Trousers"
    assert {p.status for p in ProductPhoto.objects.all()} == {ProductPhoto.Status.PENDING}

    assert sorted(result.product_ids) == sorted(p.pk for p in products.values())
    assert len(result.photo_ids) == ProductPhoto.objects.count() == 4
    assert result.skipped == []
    assert [(r.label, r.reason) for r in result.rejected] == [("Tops/Empty", "empty_folder")]
    assert result.handled == len(files) + 1
    # every product queued once for embedding (its further photos with it), a task per batch
    assert embedded_ids(sends) == sorted(result.product_ids)


def test_rerun_with_skip_existing_adds_nothing(shop, django_capture_on_commit_callbacks):
    root, files = shop
    run_import(root, django_capture_on_commit_callbacks)
    before = {p.name: main_and_further(p) for p in Product.objects.all()}

    result, sends = run_import(root, django_capture_on_commit_callbacks, skip_existing=True)

    assert {p.name: main_and_further(p) for p in Product.objects.all()} == before
    assert result.product_ids == [] and result.photo_ids == [] and sends == []
    assert sorted(result.skipped) == sorted(files)
    assert [r.reason for r in result.rejected] == ["empty_folder"]


def test_a_bad_photo_is_rejected_and_the_next_good_one_is_main(
        tmp_path, django_capture_on_commit_callbacks):
    root = tmp_path / "shop"  # tmp_path also holds the test's media
    good = [drawn_image(n) for n in (21, 22, 23)]
    write(root, {
        "Coats/Parka/1.png": good[0][:400],  # truncated
        "Coats/Parka/2.png": good[1],
        "Coats/Parka/3.txt": b"not an image",
        "Coats/Parka/4.png": good[2],
        "Coats/Broken/1.png": b"garbage",
    })
    result, _ = run_import(root, django_capture_on_commit_callbacks)

    parka = Product.objects.get()
    assert parka.name == "Parka"
    assert main_and_further(parka) == [sha256_hex(good[1]), sha256_hex(good[2])]
    assert sorted((r.label, r.reason) for r in result.rejected) == [
        ("Coats/Broken/1.png", "unreadable"), ("Coats/Parka/1.png", "truncated"),
        ("Coats/Parka/3.txt", "unreadable")]

    # the fixed photo, imported again, joins the product instead of making another
    (root / "Coats/Parka/1.png").write_bytes(good[0])
    result, sends = run_import(root, django_capture_on_commit_callbacks, skip_existing=True)
    assert Product.objects.get().pk == parka.pk
    assert main_and_further(parka) == [sha256_hex(good[n]) for n in (1, 2, 0)]
    assert result.product_ids == [] and len(result.photo_ids) == 1
    assert embedded_ids(sends) == [parka.pk]


def test_photos_past_the_limit_are_rejected_naming_it(
        tmp_path, settings, django_capture_on_commit_callbacks):
    settings.LOOKALIKE_MAX_PHOTOS = 3
    root = tmp_path / "shop"
    photos = write(root, {f"Dresses/Gown/{n:02d}.png": drawn_image(30 + n) for n in range(5)})

    result, _ = run_import(root, django_capture_on_commit_callbacks)

    gown = Product.objects.get()
    assert main_and_further(gown) == [sha256_hex(data) for data in list(photos.values())[:3]]
    assert [(r.label, r.reason) for r in result.rejected] == [
        ("Dresses/Gown/03.png", "too_many_photos"), ("Dresses/Gown/04.png", "too_many_photos")]
    assert "at most 3 photos (LOOKALIKE_MAX_PHOTOS)" in result.rejected[0].message
    assert "the first 3 usable photos of Dresses/Gown" in result.rejected[0].message

    # the same import again: still full, nothing added, nothing duplicated
    result, _ = run_import(root, django_capture_on_commit_callbacks, skip_existing=True)
    assert Product.objects.get().photos_counted() == 3
    assert len(result.skipped) == 3 and [r.reason for r in result.rejected] == ["too_many_photos"] * 2
    assert "the product of Dresses/Gown has 3 already" in result.rejected[0].message

    # the limit raised: the rest join the same product
    settings.LOOKALIKE_MAX_PHOTOS = 5
    result, _ = run_import(root, django_capture_on_commit_callbacks, skip_existing=True)
    assert main_and_further(Product.objects.get()) == [sha256_hex(d) for d in photos.values()]
    assert result.rejected == [] and len(result.photo_ids) == 2


def test_without_skip_existing_a_rerun_imports_again(tmp_path, django_capture_on_commit_callbacks):
    """As for single files: only ``skip_existing`` recognises what is in the catalog."""
    root = tmp_path / "shop"
    write(root, {"Bags/Tote/1.png": drawn_image(41), "Bags/Tote/2.png": drawn_image(42)})
    run_import(root, django_capture_on_commit_callbacks)
    run_import(root, django_capture_on_commit_callbacks)
    assert sorted(Product.objects.values_list("sku", flat=True)) == ["Tote", "Tote-2"]
    assert ProductPhoto.objects.count() == 2


def test_dir_sources_keep_loose_files_one_product_each(shop):
    root, _ = shop
    found = garment_dir_sources(directory=root)
    assert [(s.label, s.folder) for s in found.sources] == [
        ("Tops/One/front.png", "Tops/One"),
        ("Tops/Three (2)/1.png", "Tops/Three (2)"),
        ("Tops/Three (2)/2.png", "Tops/Three (2)"),
        ("Tops/Three (2)/3.png", "Tops/Three (2)"),
        ("Tops/Two Colours/a-front.png", "Tops/Two Colours"),
        ("Tops/Two Colours/b-back.png", "Tops/Two Colours"),
        ("Tops/loose top.png", ""),
        ("Trousers/Chinos/1.png", "Trousers/Chinos"),
        ("Trousers/Chinos/side/2.png", "Trousers/Chinos"),
        ("Trousers/jeans.png", ""),
    ]
    assert {s.category for s in found.sources if s.folder.startswith("Tops/")} == {"Tops"}
    assert found.empty_folders == ["Tops/Empty"]
    assert found.product_folders == 5
