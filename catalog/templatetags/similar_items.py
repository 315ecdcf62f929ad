"""``{% load similar_items %}{% similar_items product %}``: a product's 10 nearest neighbours.

Rendered through ``catalog/similar_items.html``; a shop overrides it with a template of the
same name in the project's ``templates/`` directory (DIRS are searched before app templates).
"""

from __future__ import annotations

from django import template

from catalog.models import Product
from catalog.selectors.storefront import product_neighbours, product_neighbours_state

register = template.Library()


@register.inclusion_tag("catalog/similar_items.html")
def similar_items(product: Product) -> dict:
    neighbours = product_neighbours(product=product)
    state = product_neighbours_state(product=product, neighbours=neighbours)
    return {
        "product": product,
        "state": state,
        "neighbours": neighbours if state == "ready" else [],
        "items": [link.neighbour for link in neighbours] if state == "ready" else [],
    }
