"""The shop's rules in the admin: the listed field and its actions, a product's pins and
exclusions beside its similar-items preview (who set them, when), and the list of every rule.
Every write goes through catalog.services.merchandising (what it queues is checked here)."""

import pytest
from django.urls import reverse

from catalog.models import ListRule, Product
from catalog.services.queue import INDEX
from tests.catalog import readside
from tests.catalog.readside import link_neighbours, make_product

media_root = readside.media_root
fresh_caches = readside.fresh_caches

pytestmark = pytest.mark.django_db

RULES = "list_rules"


@pytest.fixture(autouse=True)
def _media(media_root, fresh_caches):
    return media_root


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_superuser("merch", "merch@example.com", "pw")


@pytest.fixture
def staff(client, staff_user):
    client.force_login(staff_user)
    return client


def queued(callbacks) -> list[tuple[str, dict]]:
    return [(cb.task, cb.kwargs) for cb in callbacks if hasattr(cb, "task")]


def change_data(product: Product, rules: list[dict] | None = None, *, listed: bool = True,
                initial: int = 0) -> dict:
    """The change form as the browser posts it, with the inline's rows."""
    data = {"name": product.name, "category": product.category, "slug": product.slug,
            f"{RULES}-TOTAL_FORMS": len(rules or []), f"{RULES}-INITIAL_FORMS": initial,
            f"{RULES}-MIN_NUM_FORMS": 0, f"{RULES}-MAX_NUM_FORMS": 1000,
            "photos-TOTAL_FORMS": 0, "photos-INITIAL_FORMS": 0}
    if listed:
        data["listed"] = "on"
    for i, row in enumerate(rules or []):
        data.update({f"{RULES}-{i}-{key}": value for key, value in row.items()})
    return data


def test_unticking_listed_takes_the_product_out_and_queues_its_index_task(
        staff, django_capture_on_commit_callbacks):
    product = make_product("Coat")
    url = reverse("admin:catalog_product_change", args=[product.pk])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff.post(url, change_data(product, listed=False))
    assert response.status_code == 302, response.context["adminform"].form.errors
    product.refresh_from_db()
    assert product.listed is False
    assert queued(callbacks) == [(INDEX, {"product_ids": [product.pk]})]


def test_the_availability_actions_flip_many_at_once(staff, django_capture_on_commit_callbacks):
    products = [make_product(f"Shirt {i}") for i in range(3)]
    url = reverse("admin:catalog_product_changelist")
    ids = [str(p.pk) for p in products[:2]]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff.post(url, {"action": "mark_not_listed", "_selected_action": ids})
    assert response.status_code == 302
    assert sorted(Product.objects.filter(listed=False).values_list("pk", flat=True)) == sorted(
        p.pk for p in products[:2])
    assert queued(callbacks) == [(INDEX, {"product_ids": sorted(p.pk for p in products[:2])})]
    staff.post(url, {"action": "mark_listed", "_selected_action": ids})
    assert not Product.objects.filter(listed=False).exists()
    filtered = staff.get(url, {"listed__exact": "1"})
    assert len(filtered.context["cl"].result_list) == 3


def test_a_pin_made_on_the_change_page_is_recorded_with_who_and_when(
        staff, staff_user, django_capture_on_commit_callbacks):
    product, target = make_product("Coat"), make_product("Scarf")
    url = reverse("admin:catalog_product_change", args=[product.pk])
    page = staff.get(url)
    assert "Pins and exclusions of this product" in page.text
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff.post(url, change_data(product, [{"kind": "pin", "target": target.pk,
                                                           "rank": 3}]))
    assert response.status_code == 302, response.context and response.context["errors"]
    rule = ListRule.objects.get()
    assert (rule.kind, rule.product, rule.target, rule.rank, rule.created_by) == (
        ListRule.Kind.PIN, product, target, 3, staff_user)
    assert queued(callbacks) == [(INDEX, {"product_ids": [product.pk]})]
    # The index writer placed it: the preview says who pinned it.
    others = [make_product(f"Other {i}") for i in range(3)]
    link_neighbours(product, [others[0], others[1], target, others[2]])
    preview = staff.get(url).text
    assert "pinned by merch on" in preview
    assert preview.count("lookalike-pin") == 1


def test_a_pin_without_a_rank_is_refused_with_its_reason(staff):
    product, target = make_product("Coat"), make_product("Scarf")
    url = reverse("admin:catalog_product_change", args=[product.pk])
    response = staff.post(url, change_data(product, [{"kind": "pin", "target": target.pk}]))
    assert response.status_code == 200
    assert "A pin needs a rank, 1 to 10." in response.text
    assert not ListRule.objects.exists()


def test_an_exclusion_and_lifting_it(staff, django_capture_on_commit_callbacks):
    product, target = make_product("Coat"), make_product("Scarf")
    url = reverse("admin:catalog_product_change", args=[product.pk])
    staff.post(url, change_data(product, [{"kind": "exclude", "target": target.pk}]))
    rule = ListRule.objects.get()
    assert rule.kind == ListRule.Kind.EXCLUDE and rule.rank is None
    lift = change_data(product, [{"id": rule.pk, "kind": "exclude", "target": target.pk,
                                  "product": product.pk, "DELETE": "on"}], initial=1)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff.post(url, lift)
    assert response.status_code == 302
    assert not ListRule.objects.exists()
    assert queued(callbacks) == [(INDEX, {"product_ids": [product.pk]})]


def test_exclude_everywhere_action_and_the_rules_list(staff, django_capture_on_commit_callbacks):
    target = make_product("Loud shirt")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        staff.post(reverse("admin:catalog_product_changelist"),
                   {"action": "exclude_everywhere", "_selected_action": [str(target.pk)]})
    rule = ListRule.objects.get()
    assert (rule.kind, rule.product, rule.target) == (ListRule.Kind.EXCLUDE_EVERYWHERE, None, target)
    assert queued(callbacks) == [(INDEX, {"product_ids": [target.pk]})]
    listing = staff.get(reverse("admin:catalog_listrule_changelist"))
    assert "Excluded from every list" in listing.text and "merch" in listing.text
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        staff.post(reverse("admin:catalog_listrule_delete", args=[rule.pk]), {"post": "yes"})
    assert not ListRule.objects.exists()
    assert queued(callbacks) == [(INDEX, {"product_ids": [target.pk]})]
