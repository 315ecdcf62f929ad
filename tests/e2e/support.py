"""Shared steps of the end-to-end tests: catalogs built through the worker, brute force, pages."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.conf import settings

from catalog.models import Product, ProductNeighbour
from tests.e2e.dom import Node, parse
from tests.pipeline.helpers import K, brute_force, neighbour_mismatches, settled, upload, wait_for

SETTLE_TIMEOUT = 60.0


@dataclass(frozen=True)
class Card:
    """One product card as a page renders it."""

    name: str
    href: str
    image: str | None


def wait_settled(expected: int, what: str) -> None:
    wait_for(settled(expected), timeout=SETTLE_TIMEOUT, what=what)


def stored_ids(product_id: int) -> list[int]:
    return list(
        ProductNeighbour.objects.filter(product_id=product_id)
        .order_by("rank")
        .values_list("neighbour_id", flat=True)
    )


def assert_lists_equal_brute_force() -> dict[int, list[int]]:
    """Every stored list is the brute-force top-10 from the stored vectors (ids, order, distances).

    Returns the stored lists. Positions may differ only between exactly tied distances.
    """
    assert settings.LOOKALIKE_METRIC == "euclidean"
    assert neighbour_mismatches() == []
    ready = list(Product.objects.filter(status=Product.Status.READY).order_by("pk"))
    expected, true_dist = brute_force(ready)
    lists = {}
    for product in ready:
        have = stored_ids(product.pk)
        want = [nid for nid, _ in expected[product.pk]]
        for got, exp in zip(have, want, strict=True):
            if got != exp:  # only an exact tie may swap two neighbours
                assert np.isclose(true_dist[(product.pk, got)], true_dist[(product.pk, exp)],
                                  rtol=0, atol=1e-6), (product.pk, have, want)
        lists[product.pk] = have
    return lists


def build_catalog(garments: list[tuple[str, bytes]]) -> list[Product]:
    """Products made by the write-side services (as `import_garments` does); the worker embeds them."""
    from catalog.services.products import product_create

    return [
        product_create(name=f"{cls} {i:02d}", category=cls, image=upload(data, f"g{i}.png"))
        for i, (cls, data) in enumerate(garments)
    ]


def search_brute_force(vector: np.ndarray, k: int = K) -> list[tuple[int, float]]:
    """The k ready products nearest to ``vector`` by float64 euclidean distance over stored vectors."""
    rows = list(Product.objects.filter(status=Product.Status.READY).values_list("pk", "vector"))
    ids = np.array([pk for pk, _ in rows])
    vecs = np.stack([np.frombuffer(bytes(v), "<f4").astype(np.float64) for _, v in rows])
    dist = np.linalg.norm(vecs - np.asarray(vector, dtype=np.float64)[None, :], axis=1)
    order = np.lexsort((ids, dist))[:k]
    return [(int(ids[i]), float(dist[i])) for i in order]


def embed_query(data: bytes) -> np.ndarray:
    """The query's vector from the model (the ranking above is done independently, by numpy)."""
    from catalog.engine import embedder_get

    return embedder_get().embed(data)


def _cards(container: Node) -> list[Card]:
    cards = []
    for a in container.find_all("a", cls="card"):
        img = a.find("img")
        cards.append(Card(a.one(cls="card-name").text(), a.attrs["href"], img.attrs["src"] if img else None))
    return cards


def similar_cards(html: str | bytes) -> tuple[str, list[Card]]:
    """(data-state, cards) of the `{% similar_items %}` block of a page."""
    section = parse(html).one("section", cls="similar-items")
    return section.attrs.get("data-state", ""), _cards(section)


def search_result_cards(html: str | bytes) -> list[Card]:
    return _cards(parse(html).one("section", cls="search-results"))
