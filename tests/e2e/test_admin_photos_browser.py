"""A second photo in a real Chromium: staff add it to a product through the admin's "More
photos" inline; the real worker embeds it and rewrites the lists the product's new vector
(the mean of its two photos') changes; the product's storefront page then shows both photos,
the main one first.

Django refuses ORM calls inside Playwright's event loop: the database is read before and
after the browser, the pages are polled inside it.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from catalog.models import Product, ProductPhoto
from tests.e2e.browser import ALL_LOADED, assert_png, chromium_page, skip_without_chromium
from tests.e2e.support import build_catalog, wait_settled
from tests.pipeline.helpers import neighbour_mismatches, wait_for
from tests.rules_reference import mismatches

pytestmark = pytest.mark.django_db(transaction=True)

N = 12
TIMEOUT = 60.0
STAFF = "shopkeeper"
PASSWORD = "correct horse battery staple"


def reload_until_ready(page: Any, url: str) -> None:
    """Load the admin change page again until its one further photo shows "Ready"."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        page.goto(url)
        badges = page.locator("#photos-group .lookalike-status").all_inner_texts()
        if badges == ["Ready"]:
            return
        assert "Failed" not in badges, page.locator("#photos-group").inner_text()
        if time.monotonic() > deadline:
            raise AssertionError(f"the new photo is not ready within {TIMEOUT:.0f} s: {badges}")
        page.wait_for_timeout(300)


def test_a_second_photo_added_in_the_admin_shows_on_the_storefront(
        worker, garments, django_user_model, live_server, tmp_path):
    from playwright.sync_api import expect

    skip_without_chromium()
    django_user_model.objects.create_superuser(STAFF, "shop@example.com", PASSWORD)
    build_catalog(garments[:N])
    wait_settled(N, f"{N} products built by the worker")
    # a garment of no product, as a second shot of a product of its kind
    kind, second = next((c, d) for c, d in garments[N:] if Product.objects.filter(category=c).exists())
    product = Product.objects.filter(category=kind).order_by("pk").first()
    assert product is not None
    base = live_server.url
    change = f"{base}/admin/catalog/product/{product.pk}/change/"
    main_url = product.image.url

    with chromium_page() as page:
        page.goto(base + "/admin/login/")
        page.locator("#id_username").fill(STAFF)
        page.locator("#id_password").fill(PASSWORD)
        page.locator("input[type=submit]").click()
        page.wait_for_url(base + "/admin/")

        page.goto(change)
        expect(page.locator("#photos-group")).to_contain_text("More photos")
        page.locator("input[name='photos-0-image']").set_input_files(
            {"name": "back.png", "mimeType": "image/png", "buffer": second})
        page.locator("input[name=_save]").click()
        expect(page.locator("ul.messagelist")).to_contain_text("was changed successfully")

        reload_until_ready(page, change)
        page.goto(base + product.get_absolute_url())
        gallery = page.get_by_test_id("product-photos").locator("img")
        expect(gallery).to_have_count(2)
        page.wait_for_function(ALL_LOADED, arg="[data-testid=product-photos] img")
        shown = [gallery.nth(i).get_attribute("src") for i in range(2)]
        page.screenshot(path=str(tmp_path / "two-photos.png"), full_page=True)
    assert_png(tmp_path / "two-photos.png")

    photo = ProductPhoto.objects.get(product=product)
    assert shown == [main_url, photo.image.url]
    assert photo.status == ProductPhoto.Status.READY
    assert photo.embedded_image_sha256 == photo.image_sha256 and photo.vector is not None

    def lists_follow() -> bool | str:
        found = mismatches()
        return not found or "; ".join(found[:3])

    # every list, the product's own among them, follows its vector of both photos
    wait_for(lists_follow, timeout=TIMEOUT, what="the lists rewritten for the product's two photos")
    assert neighbour_mismatches() != []  # they are not the lists of the main photos alone
