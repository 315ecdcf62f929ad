"""The shop's rules in a real Chromium, on a catalog the real worker built: staff mark a
product sold out with the admin action, and the storefront page that listed it shows, once
the worker has refilled the list, the exact next neighbour in its place, while the sold-out
product's own page says it is no longer available and keeps its list; staff pin a product at
rank 3 in a product's admin inline, and the storefront shows it there, the admin preview
saying who pinned it.

The expected lists are the brute force under the rules (tests/rules_reference.py), computed
before the browser starts (Django refuses ORM calls inside Playwright's event loop).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.conf import settings

from catalog.models import ListRule, Product
from similarity import ListRules
from tests.e2e.browser import ALL_LOADED, assert_png, chromium_page, skip_without_chromium
from tests.e2e.support import build_catalog, stored_ids, wait_settled
from tests.rules_reference import LIMIT, brute

pytestmark = pytest.mark.django_db(transaction=True)

N = 20
REFILL_TIMEOUT = 60.0
STAFF = "shopkeeper"
PASSWORD = "correct horse battery staple"
SOLD_OUT_ACTION = "Mark as not listed (sold out, unpublished)"


NO_RULES = ListRules()


def expected_names(product: Product, *, out: frozenset[int] = frozenset(),
                   rules: ListRules = NO_RULES) -> list[str]:
    """The names in ``product``'s list by the brute force, with ``out`` kept out of lists and
    ``rules`` as the product's own."""
    ready = Product.objects.filter(status=Product.Status.READY).in_bulk()
    vectors = {pid: np.frombuffer(bytes(p.vector), "<f4") for pid, p in ready.items()}
    found = brute(vectors, set(vectors) - set(out), vectors[product.pk], product.pk, rules,
                  settings.LOOKALIKE_METRIC, LIMIT)
    return [ready[pid].name for pid, _ in found]


def farthest_from(product: Product) -> Product:
    ready = Product.objects.filter(status=Product.Status.READY).exclude(pk=product.pk)
    mine = np.frombuffer(bytes(product.vector), "<f4")
    return max(ready, key=lambda p: float(np.linalg.norm(np.frombuffer(bytes(p.vector), "<f4") - mine)))


def similar_names(page: Any) -> list[str]:
    return page.locator("section.similar-items .card-name").all_inner_texts()


def reload_until(page: Any, url: str, check: Callable[[Any], bool | str], what: str) -> None:
    """Load ``url`` again until ``check(page)`` is True, at most ``REFILL_TIMEOUT`` seconds."""
    deadline = time.monotonic() + REFILL_TIMEOUT
    while True:
        page.goto(url)
        last = check(page)
        if last is True:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{url}: {what} not shown within {REFILL_TIMEOUT:.0f} s: {last}")
        page.wait_for_timeout(300)


def showing(names: list[str]) -> Callable[[Any], bool | str]:
    def check(page: Any) -> bool | str:
        shown = similar_names(page)
        return shown == names or f"shows {shown}"

    return check


def shoot(page: Any, path: Path) -> None:
    """A full-page screenshot once every image on the page has loaded (they are lazy)."""
    images = page.locator("img")
    for i in range(images.count()):
        images.nth(i).scroll_into_view_if_needed()
    page.wait_for_function(ALL_LOADED, arg="img")
    page.evaluate("() => window.scrollTo(0, 0)")
    page.screenshot(path=str(path), full_page=True)
    assert_png(path)


def admin_login(page: Any, base: str) -> None:
    page.goto(base + "/admin/login/")
    page.locator("#id_username").fill(STAFF)
    page.locator("#id_password").fill(PASSWORD)
    page.locator("input[type=submit]").click()
    page.wait_for_url(base + "/admin/")


@pytest.fixture
def catalog(worker, garments, django_user_model) -> dict[int, Product]:
    """20 garments embedded and indexed by the worker, and a staff member."""
    skip_without_chromium()
    django_user_model.objects.create_superuser(STAFF, "shop@example.com", PASSWORD)
    build_catalog(garments[:N])
    wait_settled(N, f"{N} products built by the worker")
    return Product.objects.in_bulk()


def test_a_sold_out_neighbour_is_replaced_by_the_next_one(catalog, live_server, tmp_path):
    from playwright.sync_api import expect

    product = catalog[min(catalog)]
    before = [catalog[pid].name for pid in stored_ids(product.pk)]
    sold = catalog[stored_ids(product.pk)[0]]
    after = expected_names(product, out=frozenset({sold.pk}))
    assert after[:-1] == before[1:] and after[-1] not in before  # the next one closes the gap
    sold_own = expected_names(sold, out=frozenset({sold.pk}))
    base = live_server.url

    with chromium_page() as page:
        admin_login(page, base)
        page.goto(base + "/admin/catalog/product/")
        page.locator(f"input.action-select[value='{sold.pk}']").check()
        page.locator("select[name=action]").select_option(label=SOLD_OUT_ACTION)
        page.locator("button[name=index]").click()
        expect(page.locator("ul.messagelist")).to_contain_text("1 product(s) taken out of every list")

        url = base + product.get_absolute_url()
        reload_until(page, url, showing(after), f"the list refilled without {sold.name}")
        expect(page.locator("section.similar-items")).to_have_attribute("data-state", "ready")
        shoot(page, tmp_path / "refilled.png")
        api = page.request.get(f"{base}/api/products/{product.pk}/similar/").json()
        assert [n["name"] for n in api["neighbours"]] == after

        page.goto(base + sold.get_absolute_url())
        expect(page.get_by_test_id("sold-out")).to_contain_text("No longer available")
        assert similar_names(page) == sold_own
        shoot(page, tmp_path / "sold-out.png")

        page.goto(base + "/")
        expect(page.locator("a.card")).to_have_count(N - 1)
        expect(page.locator("a.card", has_text=sold.name)).to_have_count(0)


def test_a_pin_set_in_the_admin_shows_at_its_rank(catalog, live_server, tmp_path):
    from playwright.sync_api import expect

    product = catalog[max(catalog)]
    target = farthest_from(product)
    assert target.pk not in stored_ids(product.pk)
    want = expected_names(product, rules=ListRules(pins={3: target.pk}))
    assert want[2] == target.name
    base = live_server.url
    change = f"{base}/admin/catalog/product/{product.pk}/change/"

    with chromium_page() as page:
        admin_login(page, base)
        page.goto(change)
        group = page.locator("#list_rules-group")
        expect(group).to_contain_text("Pins and exclusions of this product's similar items")
        group.locator("a.addlink").click()
        page.locator("select[name='list_rules-0-kind']").select_option(label="Pin at rank")
        page.locator("input[name='list_rules-0-target']").fill(str(target.pk))
        page.locator("input[name='list_rules-0-rank']").fill("3")
        page.locator("input[name=_save]").click()
        expect(page.locator("ul.messagelist")).to_contain_text("was changed successfully")

        reload_until(page, base + product.get_absolute_url(), showing(want),
                     f"{target.name} pinned at rank 3")
        assert similar_names(page)[2] == target.name
        shoot(page, tmp_path / "pinned-storefront.png")

        def preview_labels(page: Any) -> bool | str:
            third = page.locator("ol.lookalike-similar li").nth(2).inner_text()
            return (f"#3 {target.name}" in third and f"pinned by {STAFF}" in third) or third

        reload_until(page, change, preview_labels, "the pin in the admin preview")
        assert page.locator("ol.lookalike-similar .lookalike-pin").count() == 1
        shoot(page, tmp_path / "pinned-admin.png")

    rule = ListRule.objects.get(product=product)
    assert (rule.kind, rule.target_id, rule.rank, rule.created_by.username) == (
        ListRule.Kind.PIN, target.pk, 3, STAFF)
