import pytest

from catalog.models import Product, ProductPhoto
from catalog.selectors import storefront
from tests.catalog.readside import link_neighbours, make_photo, make_product

pytestmark = pytest.mark.django_db


def test_product_list_filters_by_category_newest_first():
    a = make_product("Red top", category="Tops")
    b = make_product("Blue jeans", category="Trousers")
    c = make_product("Green top", category="Tops")
    assert list(storefront.product_list()) == [c, b, a]
    assert list(storefront.product_list(category="Tops")) == [c, a]
    assert list(storefront.product_list(category="Hats")) == []


def test_categories_are_distinct_and_sorted():
    for cat in ["Trousers", "Tops", "Bags", "Tops"]:
        make_product(category=cat)
    assert storefront.product_categories() == ["Bags", "Tops", "Trousers"]


def test_neighbours_are_ordered_by_rank_with_the_neighbour_loaded(django_assert_num_queries):
    product = make_product("Main")
    others = [make_product(f"Other {i}") for i in range(10)]
    link_neighbours(product, others)  # rows inserted in reverse rank order
    with django_assert_num_queries(1):
        links = storefront.product_neighbours(product=product)
        names = [link.neighbour.name for link in links]
    assert [link.rank for link in links] == list(range(1, 11))
    assert names == [f"Other {i}" for i in range(10)]
    assert [link.distance for link in links] == sorted(link.distance for link in links)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (Product.Status.PENDING, "computing"),
        (Product.Status.PROCESSING, "computing"),
        (Product.Status.FAILED, "failed"),
    ],
)
def test_state_follows_the_product_status(status, expected):
    product = make_product(status=status)
    link_neighbours(product, [make_product()])
    assert storefront.product_neighbours_state(product=product) == expected


def test_state_ready_with_neighbours():
    product = make_product()
    link_neighbours(product, [make_product()])
    assert storefront.product_neighbours_state(product=product) == "ready"


def test_ready_without_a_list_yet_is_computing_while_others_exist():
    product = make_product()
    make_product()
    assert storefront.product_neighbours_state(product=product) == "computing"


def test_a_lone_ready_product_is_ready_with_no_neighbours():
    product = make_product()
    make_product(status=Product.Status.PENDING)
    assert storefront.product_neighbours_state(product=product) == "ready"
    assert storefront.product_neighbours(product=product) == []


def test_product_photos_main_first_then_further_by_id_without_failed_ones():
    product = make_product("Coat")
    second = make_photo(product)
    failed = make_photo(product, status=ProductPhoto.Status.FAILED)
    third = make_photo(product, status=ProductPhoto.Status.PENDING)
    make_photo(make_product("Other"))
    names = [f.name for f in storefront.product_photos(product=product)]
    assert names == [product.image.name, second.image.name, third.image.name]
    every = [f.name for f in storefront.product_photos(product=product, failed=True)]
    assert every == [product.image.name, second.image.name, failed.image.name, third.image.name]


def test_product_photos_of_a_product_with_one_photo():
    product = make_product("Coat")
    assert [f.name for f in storefront.product_photos(product=product)] == [product.image.name]
