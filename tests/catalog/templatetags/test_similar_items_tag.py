import pytest
from django.template import Context, Template

from catalog.models import Product
from tests.catalog.readside import link_neighbours, make_product

pytestmark = pytest.mark.django_db

TAG = Template("{% load similar_items %}{% similar_items product %}")


def render(product) -> str:
    return TAG.render(Context({"product": product}))


def test_renders_the_ten_neighbours_with_image_name_and_link():
    product = make_product("Main")
    others = [make_product(f"Neighbour {i}") for i in range(10)]
    link_neighbours(product, others)
    html = render(product)
    assert 'data-state="ready"' in html
    positions = [html.index(f"Neighbour {i}<") for i in range(10)]
    assert positions == sorted(positions)
    for other in others:
        assert f'href="{other.get_absolute_url()}"' in html
        assert f'src="{other.image.url}"' in html


def test_computing_and_failed_states():
    assert "Similar items are still being computed" in render(make_product(status=Product.Status.PENDING))
    assert "Similar items are not available" in render(make_product(status=Product.Status.FAILED))


def test_a_shop_template_overrides_the_default(settings, tmp_path):
    shop = tmp_path / "shop_templates"
    (shop / "catalog").mkdir(parents=True)
    (shop / "catalog" / "similar_items.html").write_text(
        '<div class="shop-similar">{{ state }}:'
        "{% for link in neighbours %}[{{ link.rank }} {{ link.neighbour.name }} "
        '{{ link.neighbour.get_absolute_url }}]{% endfor %}</div>'
    )
    settings.TEMPLATES = [
        {**settings.TEMPLATES[0], "DIRS": [shop, *settings.TEMPLATES[0]["DIRS"]]},
    ]
    product = make_product("Main")
    others = [make_product(f"Alt {i}") for i in range(3)]
    link_neighbours(product, others)
    from django.template import engines

    html = engines["django"].from_string("{% load similar_items %}{% similar_items product %}").render(
        {"product": product}
    )
    assert html.startswith('<div class="shop-similar">ready:')
    assert f"[1 Alt 0 {others[0].get_absolute_url()}]" in html
    assert "similar-items" not in html  # the app's default was not used


def test_the_product_page_uses_the_override(settings, tmp_path, client):
    shop = tmp_path / "t"
    (shop / "catalog").mkdir(parents=True)
    (shop / "catalog" / "similar_items.html").write_text("SHOP OVERRIDE {{ neighbours|length }}")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [shop]}]
    product = make_product("Main")
    link_neighbours(product, [make_product() for _ in range(10)])
    assert "SHOP OVERRIDE 10" in client.get(product.get_absolute_url()).text
