"""Staff upload garments through the admin (add form and bulk upload); the real worker on Redis
embeds and indexes them; the stored lists equal brute force; the storefront tag, the admin
preview and the changelist show them; an admin delete and an admin image change are repaired."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from catalog.models import Product, ProductNeighbour
from tests.catalog.readside import ADMIN_CHANGE_EXTRA
from tests.e2e.dom import parse
from tests.e2e.support import (
    assert_lists_equal_brute_force,
    settled,
    similar_cards,
    stored_ids,
    wait_settled,
)
from tests.pipeline.helpers import K, upload, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "correct horse battery staple"


@pytest.fixture
def staff(client, django_user_model):
    """A superuser logged in through the admin's own login form."""
    django_user_model.objects.create_superuser("shopkeeper", "shop@example.com", PASSWORD)
    login = reverse("admin:login")
    assert client.get(login).status_code == 200
    response = client.post(
        login, {"username": "shopkeeper", "password": PASSWORD, "next": reverse("admin:index")}
    )
    assert response.status_code == 302 and response["Location"] == reverse("admin:index")
    return client


def form_errors(response) -> str:
    return " | ".join(ul.text() for ul in parse(response.content).find_all("ul", cls="errorlist"))


def admin_add(client, *, name: str, category: str, data: bytes) -> Product:
    url = reverse("admin:catalog_product_add")
    assert client.get(url).status_code == 200
    response = client.post(
        url,
        {"name": name, "slug": "", "category": category, "image": upload(data, f"{name}.png"),
         "_save": "Save"},
    )
    assert response.status_code == 302, form_errors(response)
    assert response["Location"] == reverse("admin:catalog_product_changelist")
    return Product.objects.get(name=name)


def admin_bulk_upload(client, *, items: list[tuple[str, bytes]], category: str) -> list[Product]:
    url = reverse("admin:catalog_product_bulk_upload")
    assert client.get(url).status_code == 200
    before = set(Product.objects.values_list("pk", flat=True))
    response = client.post(
        url,
        {
            "files": [upload(data, f"{cls.replace('/', '-')}-{i}.png")
                      for i, (cls, data) in enumerate(items)],
            "category": category,
            "name_pattern": "{category} {n}",
        },
        follow=True,
    )
    assert response.redirect_chain == [(reverse("admin:catalog_product_changelist"), 302)], (
        form_errors(response)
    )
    messages = parse(response.content).one("ul", cls="messagelist").text()
    assert f"Created {len(items)} product(s) in {category!r}" in messages
    created = list(Product.objects.exclude(pk__in=before).order_by("pk"))
    assert [p.name for p in created] == [f"{category} {n}" for n in range(1, len(items) + 1)]
    return created


def upload_catalog(client, garments, *, singles: int, bulk: int) -> list[Product]:
    products = [
        admin_add(client, name=f"{cls} {i:02d}", category=cls, data=data)
        for i, (cls, data) in enumerate(garments[:singles])
    ]
    products += admin_bulk_upload(client, items=garments[singles : singles + bulk], category="New arrivals")
    assert {p.status for p in products} <= {Product.Status.PENDING, Product.Status.PROCESSING,
                                            Product.Status.READY}
    return products


def test_admin_upload_reaches_ready_and_every_page_shows_the_ten_neighbours(worker, staff, garments):
    products = upload_catalog(staff, garments, singles=12, bulk=4)
    n = len(products)
    wait_settled(n, f"{n} admin-uploaded products ready with 10 brute-force neighbours each")

    lists = assert_lists_equal_brute_force()
    assert set(lists) == {p.pk for p in products}
    assert all(len(ids) == min(K, n - 1) == 10 for ids in lists.values())
    by_id = Product.objects.in_bulk(list(lists))
    shopper = Client()  # the storefront, as an anonymous visitor

    for pid, ids in lists.items():
        product = by_id[pid]
        # the storefront: {% similar_items product %} lists exactly the stored neighbours, by rank
        page = shopper.get(product.get_absolute_url())
        assert page.status_code == 200
        state, cards = similar_cards(page.content)
        assert state == "ready"
        assert [(c.name, c.href, c.image) for c in cards] == [
            (by_id[nid].name, by_id[nid].get_absolute_url(), by_id[nid].image.url) for nid in ids
        ], product.name

        # the admin change page: a read-only preview with 10 thumbnails, links and distances
        change = staff.get(reverse("admin:catalog_product_change", args=[pid]))
        assert change.status_code == 200
        preview = parse(change.content).one("ol", cls="lookalike-similar")
        items = preview.find_all("li")
        assert len(items) == 10 and len(preview.find_all("img")) == 10
        distances = dict(
            ProductNeighbour.objects.filter(product_id=pid).values_list("neighbour_id", "distance")
        )
        for rank, (li, nid) in enumerate(zip(items, ids, strict=True), start=1):
            assert li.one("a").attrs["href"] == reverse("admin:catalog_product_change", args=[nid])
            assert li.one("img").attrs["src"] == by_id[nid].image.url
            assert f"#{rank} {by_id[nid].name}" in li.text()
            assert f"distance {distances[nid]:.4f}" in li.text()

    # the changelist: every product listed with the status "Ready"
    changelist = parse(staff.get(reverse("admin:catalog_product_changelist")).content)
    rows = changelist.one("table", id="result_list").one("tbody").find_all("tr")
    listed = {row.one(cls="field-name").text(): row.one(cls="field-coloured_status").text() for row in rows}
    assert len(rows) == n
    assert listed == {p.name: "Ready" for p in by_id.values()}

def test_admin_delete_and_image_change_are_repaired(worker, staff, garments):
    products = upload_catalog(staff, garments, singles=10, bulk=4)
    n = len(products)
    wait_settled(n, f"{n} products settled")
    assert_lists_equal_brute_force()

    # delete, through the admin's confirmation page, the product held by the most lists
    held = {p.pk: ProductNeighbour.objects.filter(neighbour_id=p.pk).count() for p in products}
    victim = max(held, key=held.get)
    assert held[victim] > 0
    delete_url = reverse("admin:catalog_product_delete", args=[victim])
    confirm = staff.get(delete_url)
    assert confirm.status_code == 200 and "Are you sure" in confirm.text
    response = staff.post(delete_url, {"post": "yes"})
    assert response.status_code == 302
    assert not Product.objects.filter(pk=victim).exists()
    assert not ProductNeighbour.objects.filter(neighbour_id=victim).exists()

    # change another product's image through the admin change form
    target = next(p for p in products if p.pk != victim)
    old_sha = Product.objects.get(pk=target.pk).image_sha256
    _, replacement = garments[-1]  # not in this catalog
    change_url = reverse("admin:catalog_product_change", args=[target.pk])
    assert staff.get(change_url).status_code == 200
    response = staff.post(
        change_url,
        {"name": target.name, "slug": target.slug, "category": target.category,
         "image": upload(replacement, "replacement.png"), "_save": "Save", **ADMIN_CHANGE_EXTRA},
    )
    assert response.status_code == 302, form_errors(response)
    changed = Product.objects.get(pk=target.pk)
    assert changed.image_sha256 != old_sha

    def repaired() -> bool | str:
        now = Product.objects.get(pk=target.pk)
        if now.embedded_image_sha256 != now.image_sha256:
            return f"{target.name} not re-embedded yet ({now.status})"
        return settled(n - 1)()

    wait_for(repaired, timeout=60, what="the delete and the image change repaired")
    lists = assert_lists_equal_brute_force()
    assert victim not in lists
    assert all(victim not in ids for ids in lists.values())
    changed = Product.objects.get(pk=target.pk)
    assert changed.status == Product.Status.READY
    assert changed.embedded_image_sha256 == changed.image_sha256 != old_sha
    assert stored_ids(target.pk) == lists[target.pk] and len(lists[target.pk]) == 10


def test_an_upload_while_the_broker_is_down_is_saved_pending_and_the_admin_answers(
    staff, garments, monkeypatch, caplog
):
    from kombu.exceptions import OperationalError

    from workers.app import app

    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(app, "send_task", broker_down)
    cls, data = garments[0]
    product = admin_add(staff, name=f"{cls} offline", category=cls, data=data)  # 302, not 500
    assert product.status == Product.Status.PENDING  # the nightly rebuild re-queues it
    assert "Connection refused" in caplog.text
