"""A real Chromium (Playwright, sync API) against the live Django server, on a catalog the real
worker built: catalog list → product → its 10 similar items (images really loaded) → a
neighbour's page; then search by photo with a file chosen in the form."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from catalog.models import Product
from tests.e2e.browser import ALL_LOADED, assert_png, chromium_page, skip_without_chromium
from tests.e2e.support import build_catalog, embed_query, search_brute_force, stored_ids, wait_settled
from tests.pipeline.helpers import K

pytestmark = pytest.mark.django_db(transaction=True)

HUMAN_COPY = Path("/tmp/lookalike-e2e-product.png")
N = 20


def test_shopper_browses_similar_items_and_searches_by_photo(
    worker, live_server, garments, query_garments, tmp_path
):
    skip_without_chromium()
    from playwright.sync_api import expect

    # Everything the pages should show is read from the database before the browser starts
    # (Playwright's sync API runs an event loop, in which Django refuses ORM calls).
    build_catalog(garments[:N])
    wait_settled(N, f"{N} products built by the worker")
    by_id = Product.objects.in_bulk()
    product = by_id[min(by_id)]
    neighbours = [by_id[nid] for nid in stored_ids(product.pk)]
    assert len(neighbours) == K
    first = neighbours[0]
    first_neighbours = [by_id[nid].name for nid in stored_ids(first.pk)]
    query_cls, query_png = query_garments[7]
    query_file = tmp_path / "query-garment.png"
    query_file.write_bytes(query_png)
    want_search = [by_id[pid].name for pid, _ in search_brute_force(embed_query(query_png))]

    shots = tmp_path / "screenshots"
    shots.mkdir()
    with chromium_page() as page:
        # the catalog list, then a click on one product
        page.goto(live_server.url + "/")
        cards = page.locator("a.card")
        expect(cards).to_have_count(N)
        page.locator("a.card", has=page.get_by_text(product.name, exact=True)).click()
        expect(page).to_have_url(live_server.url + product.get_absolute_url())
        expect(page.locator("h1")).to_have_text(product.name)

        # its 10 similar items, in rank order, with their images really loaded
        block = page.locator("section.similar-items")
        expect(block).to_have_attribute("data-state", "ready")
        expect(block.locator("h2")).to_have_text("Similar items")
        expect(block.locator("li")).to_have_count(K)
        expect(block.locator(".card-name")).to_have_text([p.name for p in neighbours])
        links = block.locator("a.card")
        assert [links.nth(i).get_attribute("href") for i in range(K)] == [
            p.get_absolute_url() for p in neighbours
        ]
        images = block.locator("img")
        for i in range(K):
            images.nth(i).scroll_into_view_if_needed()  # they are loading="lazy"
        page.wait_for_function(ALL_LOADED, arg=".product-image img, section.similar-items img")
        widths = images.evaluate_all("(imgs) => imgs.map((img) => img.naturalWidth)")
        assert len(widths) == K and all(w > 0 for w in widths), widths
        page.evaluate("() => window.scrollTo(0, 0)")
        product_shot = shots / "product.png"
        page.screenshot(path=str(product_shot), full_page=True)

        # a click on the first neighbour lands on its page, with its own similar items
        links.first.click()
        expect(page).to_have_url(live_server.url + first.get_absolute_url())
        expect(page.locator("h1")).to_have_text(first.name)
        expect(page.locator("section.similar-items .card-name")).to_have_text(first_neighbours)

        # search by photo: choose a file, submit, see the 10 brute-force nearest products
        page.get_by_role("link", name="Search by photo").click()
        expect(page.locator("h1")).to_have_text("Search by photo")
        page.locator("input[type=file][name=image]").set_input_files(str(query_file))
        page.get_by_role("button", name="Search").click()
        results = page.locator("section.search-results")
        expect(results.locator("li")).to_have_count(K)
        expect(results.locator(".card-name")).to_have_text(want_search)
        expect(results.locator("h2").nth(1)).to_have_text("10 most similar products")
        expect(page.locator("img.query-thumb")).to_be_visible()
        for i in range(K):
            results.locator("img").nth(i).scroll_into_view_if_needed()
        page.wait_for_function(ALL_LOADED, arg="section.search-results img")
        page.evaluate("() => window.scrollTo(0, 0)")
        search_shot = shots / "search.png"
        page.screenshot(path=str(search_shot), full_page=True)

    assert_png(product_shot)
    assert_png(search_shot)
    shutil.copyfile(product_shot, HUMAN_COPY)
    print(f"\nproduct page screenshot: {HUMAN_COPY} (search page: {search_shot}; query: a {query_cls})")
