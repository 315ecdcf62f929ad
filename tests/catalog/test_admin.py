import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from catalog.models import Product, RebuildRun
from catalog.services.queue import EMBED, REBUILD, REMOVE
from tests.catalog import readside
from tests.catalog.readside import ADMIN_CHANGE_EXTRA, link_neighbours, make_product, png_bytes

media_root = readside.media_root
fresh_caches = readside.fresh_caches

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media(media_root, fresh_caches):
    return media_root


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(user)
    return client


def png_upload(name="shirt.png", colour=(10, 120, 200)):
    return SimpleUploadedFile(name, png_bytes(colour), content_type="image/png")


def queued(callbacks) -> list[tuple[str, dict]]:
    return [(cb.task, cb.kwargs) for cb in callbacks if hasattr(cb, "task")]


# -- changelist ---------------------------------------------------------------------------------


def test_changelist_shows_thumbnails_status_errors_and_filters(staff):
    ok = make_product("Ready shirt", category="Shirts")
    bad = make_product("Broken bag", category="Bags", status=Product.Status.FAILED,
                       error_message="JPEG data is truncated or corrupt")
    make_product("New coat", category="Coats", status=Product.Status.PENDING)
    response = staff.get(reverse("admin:catalog_product_changelist"))
    assert response.status_code == 200
    html = response.text
    assert f'<img src="{ok.image.url}"' in html
    assert "lookalike-status-ready" in html
    assert "lookalike-status-failed" in html
    assert "lookalike-status-pending" in html
    assert "JPEG data is truncated or corrupt" in html
    assert "By status" in html and "By category" in html
    assert "?status__exact=failed" in html
    assert "?category=Bags" in html
    assert "Bulk upload" in html and reverse("admin:catalog_product_bulk_upload") in html
    assert "Rebuild everything" in html
    filtered = staff.get(reverse("admin:catalog_product_changelist"), {"status__exact": "failed"})
    assert list(filtered.context["cl"].result_list) == [bad]


def test_changelist_search_by_name_category_slug(staff):
    target = make_product("Velvet dress", category="Dresses")
    make_product("Plain tee", category="Tops")
    for q in ("velvet", "Dresses", target.slug):
        response = staff.get(reverse("admin:catalog_product_changelist"), {"q": q})
        assert list(response.context["cl"].result_list) == [target]


# -- change page --------------------------------------------------------------------------------


def test_change_page_previews_the_ten_similar_items(staff):
    product = make_product("Main")
    others = [make_product(f"Similar {i}") for i in range(10)]
    link_neighbours(product, others)
    response = staff.get(reverse("admin:catalog_product_change", args=[product.pk]))
    assert response.status_code == 200
    html = response.text
    assert 'class="lookalike-similar"' in html
    for i, other in enumerate(others):
        assert f"Similar {i}" in html
        assert other.image.url in html
        assert reverse("admin:catalog_product_change", args=[other.pk]) in html
    assert "distance 0.6000" in html and "distance 1.5000" in html


def test_change_page_of_a_pending_product_says_computing(staff):
    product = make_product(status=Product.Status.PENDING)
    response = staff.get(reverse("admin:catalog_product_change", args=[product.pk]))
    assert "Similar items are still being computed." in response.text


# -- add / change / delete through the services -------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"this is not an image", "unreadable"), (b"", "empty"), (png_bytes()[:70], "truncated")],
)
def test_add_with_a_bad_image_shows_the_reason_and_saves_nothing(staff, data, reason, media_root):
    response = staff.post(
        reverse("admin:catalog_product_add"),
        {"name": "Bad", "category": "Tops", "slug": "", "image": SimpleUploadedFile("bad.png", data)},
    )
    assert response.status_code == 200
    assert f"reason: {reason}" in response.text
    assert Product.objects.count() == 0
    assert not (media_root / "products").exists() or not any((media_root / "products").iterdir())


def test_add_with_a_good_image_creates_a_pending_product_and_queues_it(
    staff, media_root, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff.post(
            reverse("admin:catalog_product_add"),
            {"name": "Blue shirt", "category": "Shirts", "slug": "", "image": png_upload("../../evil.png")},
        )
    assert response.status_code == 302
    product = Product.objects.get()
    assert product.name == "Blue shirt" and product.slug == "blue-shirt"
    assert product.status == Product.Status.PENDING
    assert len(product.image_sha256) == 64
    # The stored file lives under MEDIA_ROOT with a fresh name.
    path = (media_root / product.image.name).resolve()
    assert path.is_file() and media_root.resolve() in path.parents
    assert "evil" not in product.image.name
    assert queued(callbacks) == [(EMBED, {"product_ids": [product.pk]})]


@pytest.fixture
def image_checks(monkeypatch):
    """Every image check the write side makes (``check_image`` under the limits), counted."""
    from catalog.services import products

    calls = []
    real = products.check_image

    def counting(data, **kwargs):
        calls.append(len(data))
        return real(data, **kwargs)

    monkeypatch.setattr(products, "check_image", counting)
    return calls


def test_an_uploaded_image_is_checked_once(staff, image_checks):
    response = staff.post(
        reverse("admin:catalog_product_add"),
        {"name": "Blue shirt", "category": "Shirts", "slug": "", "image": png_upload()},
    )
    assert response.status_code == 302
    assert len(image_checks) == 1
    product = Product.objects.get()
    response = staff.post(
        reverse("admin:catalog_product_change", args=[product.pk]),
        {"name": "Blue shirt", "category": "Shirts", "slug": product.slug,
         "image": png_upload(colour=(1, 2, 3)), **ADMIN_CHANGE_EXTRA},
    )
    assert response.status_code == 302
    assert len(image_checks) == 2


def test_change_without_a_new_image_queues_nothing(staff, django_capture_on_commit_callbacks):
    product = make_product("Old name", category="Tops")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff.post(
            reverse("admin:catalog_product_change", args=[product.pk]),
            {"name": "New name", "category": "Tops", "slug": product.slug, **ADMIN_CHANGE_EXTRA},
        )
    assert response.status_code == 302, response.context["adminform"].form.errors
    product.refresh_from_db()
    assert product.name == "New name"
    assert product.status == Product.Status.READY
    assert queued(callbacks) == []


def test_change_with_a_new_image_makes_it_pending_again(staff, django_capture_on_commit_callbacks):
    product = make_product("Shirt")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff.post(
            reverse("admin:catalog_product_change", args=[product.pk]),
            {"name": "Shirt", "category": product.category, "slug": product.slug,
             "image": png_upload(colour=(1, 2, 3)), **ADMIN_CHANGE_EXTRA},
        )
    assert response.status_code == 302
    product.refresh_from_db()
    assert product.status == Product.Status.PENDING
    assert queued(callbacks) == [(EMBED, {"product_ids": [product.pk]})]


def test_delete_goes_through_the_service(staff, django_capture_on_commit_callbacks):
    product = make_product()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff.post(reverse("admin:catalog_product_delete", args=[product.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Product.objects.exists()
    assert (REMOVE, {"product_ids": [product.pk]}) in queued(callbacks)


def test_bulk_delete_action_goes_through_the_service(staff, django_capture_on_commit_callbacks):
    products = [make_product() for _ in range(3)]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        staff.post(
            reverse("admin:catalog_product_changelist"),
            {"action": "delete_selected", "_selected_action": [p.pk for p in products], "post": "yes"},
        )
    assert not Product.objects.exists()
    assert (REMOVE, {"product_ids": sorted(p.pk for p in products)}) in queued(callbacks)


# -- actions --------------------------------------------------------------------------------------


def test_recompute_action_queues_the_selected(staff, django_capture_on_commit_callbacks):
    products = [make_product() for _ in range(2)]
    make_product()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff.post(
            reverse("admin:catalog_product_changelist"),
            {"action": "recompute_similarity", "_selected_action": [p.pk for p in products]},
            follow=True,
        )
    assert "Queued 2 product(s)" in response.text
    assert queued(callbacks) == [(EMBED, {"product_ids": sorted(p.pk for p in products)})]


def test_rebuild_action_and_button_queue_the_rebuild(staff, django_capture_on_commit_callbacks):
    product = make_product()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff.post(
            reverse("admin:catalog_product_changelist"),
            {"action": "rebuild_everything", "_selected_action": [product.pk]},
            follow=True,
        )
    assert "A full rebuild has been queued" in response.text
    assert queued(callbacks) == [(REBUILD, {"trigger": "admin"})]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff.post(reverse("admin:catalog_product_rebuild"))
    assert response.status_code == 302
    assert queued(callbacks) == [(REBUILD, {"trigger": "admin"})]
    assert staff.get(reverse("admin:catalog_product_rebuild")).status_code == 405


# -- bulk upload ----------------------------------------------------------------------------------


def test_bulk_upload_form_renders(staff):
    response = staff.get(reverse("admin:catalog_product_bulk_upload"))
    assert response.status_code == 200
    assert 'type="file"' in response.text and "multiple" in response.text
    assert 'name="category"' in response.text
    assert "{category} {n}" in response.text


def test_bulk_upload_creates_one_product_per_file(staff, django_capture_on_commit_callbacks):
    files = [png_upload(f"img{i}.png", (i * 40, 10, 10)) for i in range(3)]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff.post(
            reverse("admin:catalog_product_bulk_upload"),
            {"files": files, "category": "Socks", "name_pattern": "{category} {n}"},
        )
    assert response.status_code == 302
    assert sorted(Product.objects.values_list("name", flat=True)) == ["Socks 1", "Socks 2", "Socks 3"]
    assert all(p.status == Product.Status.PENDING for p in Product.objects.all())
    assert queued(callbacks)[0][0] == EMBED


def test_bulk_upload_with_a_bad_file_lists_it_and_saves_nothing(staff):
    files = [png_upload("good.png"), SimpleUploadedFile("notes.txt", b"hello there")]
    response = staff.post(
        reverse("admin:catalog_product_bulk_upload"),
        {"files": files, "category": "Socks", "name_pattern": "{category} {n}"},
    )
    assert response.status_code == 200
    assert "notes.txt: the file contains text" in response.text
    assert "(reason: unreadable)" in response.text
    assert "Nothing was uploaded" in response.text
    assert not Product.objects.exists()


def test_bulk_upload_without_files(staff):
    response = staff.post(
        reverse("admin:catalog_product_bulk_upload"), {"category": "Socks", "name_pattern": "{n}"}
    )
    assert response.status_code == 200
    assert "This field is required" in response.text


def test_bulk_upload_rejects_a_bad_pattern(staff):
    response = staff.post(
        reverse("admin:catalog_product_bulk_upload"),
        {"files": [png_upload()], "category": "Socks", "name_pattern": "{colour} {n}"},
    )
    assert response.status_code == 200
    assert "Unknown placeholder" in response.text
    assert not Product.objects.exists()


def test_bulk_upload_needs_staff(client):
    response = client.get(reverse("admin:catalog_product_bulk_upload"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


# -- rebuild runs ---------------------------------------------------------------------------------


def test_rebuild_runs_are_listed_read_only_with_progress(staff):
    RebuildRun.objects.create(state=RebuildRun.State.RUNNING, step="embedding", done=30, total=120)
    response = staff.get(reverse("admin:catalog_rebuildrun_changelist"))
    assert response.status_code == 200
    assert '<progress max="100" value="25"' in response.text
    assert "25% (30 / 120)" in response.text
    assert "embedding" in response.text
    assert staff.get(reverse("admin:catalog_rebuildrun_add")).status_code == 403
