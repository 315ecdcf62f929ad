"""The admin's API keys (shown once, stored hashed, revocable), SKUs, and a 500-file upload."""

import hashlib
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from catalog.models import ApiKey, Product
from tests.catalog import readside
from tests.catalog.readside import png_bytes

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


def test_a_new_key_is_shown_once_and_only_its_hash_is_kept(staff, client):
    response = staff.post(reverse("admin:catalog_apikey_add"), {"name": "erp", "scope": "write"},
                          follow=True)
    raw = re.search(r'lookalike-new-key">([^<]+)<', response.text).group(1)
    key = ApiKey.objects.get()
    assert key.key_sha256 == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in {key.name, key.prefix, key.key_sha256}
    assert raw not in staff.get(reverse("admin:catalog_apikey_change", args=[key.pk])).text
    staff.post(reverse("admin:catalog_apikey_changelist"),
               {"action": "revoke", "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert client.get("/api/v1/products", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401


def test_the_admin_sets_a_sku_or_derives_it_from_the_file_name(staff):
    for sku, name in (("SHOP-1", "a.png"), ("", "Summer dress.png")):
        staff.post(reverse("admin:catalog_product_add"), {
            "name": "Dress", "sku": sku, "category": "Dress",
            "image": SimpleUploadedFile(name, png_bytes((len(name), 0, 0)), "image/png")})
    assert sorted(Product.objects.values_list("sku", flat=True)) == ["SHOP-1", "Summer-dress"]


def test_a_bulk_upload_of_500_files_works(staff, settings):
    assert settings.LOOKALIKE_BULK_MAX_FILES == 500
    files = [SimpleUploadedFile(f"g{i}.png", png_bytes((i % 256, i // 256, 9), size=8),
                                "image/png") for i in range(500)]
    response = staff.post(reverse("admin:catalog_product_bulk_upload"),
                          {"files": files, "category": "Socks", "name_pattern": "{stem}"})
    assert response.status_code == 302
    assert Product.objects.count() == 500
    assert Product.objects.filter(sku="g499").exists()
