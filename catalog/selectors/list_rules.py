"""The shop's rules as the index writer reads them: which products' lists are made under rules
(not in lists themselves, or with pins and exclusions of their own), their rules, vectors and
stored thresholds. Nothing here writes.

A *ruled* product has a current vector and either may not appear in lists (not listed,
excluded everywhere: the matrix does not hold it) or has pins or exclusions of its own. Its
list is not a row of the matrix but ``similarity.ruled_list`` of its vector against it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

import numpy as np
from django.db.models import Q

from catalog.models import ListRule, Product
from catalog.selectors.index_membership import (
    in_lists,
    product_categories,
    products_indexable,
    products_indexable_vectors,
)
from catalog.space import Space
from similarity import ListRules, chunked

_CHUNK = 500


@dataclass(frozen=True)
class RuledRow:
    """A ruled product's vector in the matrix's space, its own rules and its category ("" for
    none: with lists inside categories, its list is made inside that category's partition)."""

    vector: np.ndarray
    rules: ListRules
    category: str = ""


def _rules_by_product(product_ids: Iterable[int]) -> dict[int, ListRules]:
    """The pins and exclusions of each of ``product_ids`` that has any."""
    exclude: dict[int, set[int]] = {}
    pins: dict[int, dict[int, int]] = {}
    for chunk in chunked(sorted(set(product_ids)), _CHUNK):
        rows = ListRule.objects.filter(product_id__in=chunk).values_list(
            "product_id", "kind", "target_id", "rank")
        for pid, kind, target, rank in rows:
            if kind == ListRule.Kind.PIN and rank is not None:
                pins.setdefault(pid, {})[rank] = target
            else:
                exclude.setdefault(pid, set()).add(target)
    return {pid: ListRules(exclude=frozenset(exclude.get(pid, ())), pins=pins.get(pid, {}))
            for pid in set(exclude) | set(pins)}


def _ruled_filter() -> Q:
    """Products with rules of their own, or kept out of lists."""
    everywhere = ListRule.objects.filter(kind=ListRule.Kind.EXCLUDE_EVERYWHERE)
    return (Q(listed=False) | Q(pk__in=everywhere.values("target_id"))
            | Q(pk__in=ListRule.objects.exclude(product=None).values("product_id")))


def ruled_rows(*, product_ids: Collection[int], space: Space) -> dict[int, RuledRow]:
    """Of ``product_ids``, the ruled ones with a current vector: their vector in ``space`` and
    their rules."""
    ruled: set[int] = set()
    for chunk in chunked(sorted(set(product_ids)), _CHUNK):
        ruled.update(products_indexable().filter(_ruled_filter(), pk__in=chunk)
                     .values_list("pk", flat=True))
    if not ruled:
        return {}
    ids, vecs = products_indexable_vectors(product_ids=ruled, space=space)
    rules = _rules_by_product(ruled)
    categories = product_categories(product_ids=ruled)
    return {pid: RuledRow(vec, rules.get(pid, ListRules()), categories.get(pid, ""))
            for pid, vec in zip(ids.tolist(), vecs, strict=True)}


def ruled_product_ids() -> set[int]:
    """Every ruled product with a current vector (the whole catalog's: one indexed query)."""
    return set(products_indexable().filter(_ruled_filter()).values_list("pk", flat=True))


def ruled_pinning(*, target_ids: Collection[int]) -> set[int]:
    """Products that pin any of ``target_ids`` (a pin applies again when its product is back)."""
    found: set[int] = set()
    for chunk in chunked(sorted(set(target_ids)), _CHUNK):
        found.update(ListRule.objects.filter(kind=ListRule.Kind.PIN, target_id__in=chunk)
                     .values_list("product_id", flat=True))
    return found


def products_out_of_lists(*, product_ids: Iterable[int]) -> set[int]:
    """Of ``product_ids``, those that may not appear in lists (not listed, excluded everywhere)."""
    out: set[int] = set()
    for chunk in chunked(sorted(set(product_ids)), _CHUNK):
        qs = Product.objects.filter(pk__in=chunk)
        out.update(set(qs.values_list("pk", flat=True))
                   - set(in_lists(qs).values_list("pk", flat=True)))
    return out
