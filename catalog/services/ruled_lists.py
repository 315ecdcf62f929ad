"""Lists made under the shop's rules (catalog.selectors.list_rules), and which of them a change
to the matrix may alter. Called by the index writer, under its lock.

A ruled product's list is the exact nearest allowed products of the matrix (which holds only
the products allowed in lists) with its pins placed (``similarity.ruled_list``). After an
upsert, a ruled list changes only if a new vector ranks before the last entry it chose by
distance (or the list has room), or the product pins one of the new products; after a removal,
only if it held the removed product (``neighbour_lists_touching`` finds the rows still stored;
a deleted product's rows are gone, which leaves the list short).
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from catalog.models import MAX_NEIGHBOURS
from catalog.selectors.index_membership import product_ids_existing
from catalog.selectors.list_rules import RuledRow, ruled_pinning, ruled_product_ids, ruled_rows
from catalog.selectors.neighbour_rows import StoredRow, neighbour_lists_stored
from catalog.services.index_writer import categories_of
from catalog.space import Space
from similarity import (
    ListRules,
    NeighbourIndex,
    PartitionedIndex,
    nearest_allowed,
    pins_applied,
    pins_live,
    rows_entered,
)

Neighbours = list[tuple[int, float]]


def _scope(matrix: NeighbourIndex, row: RuledRow) -> NeighbourIndex:
    """Where a ruled list is made: the product's category partition when lists stay inside
    categories (the rules then apply inside it unchanged), else the whole matrix."""
    return matrix.within(row.category) if isinstance(matrix, PartitionedIndex) else matrix


def ruled_nearest(matrix: NeighbourIndex, pid: int, row: RuledRow, existing: Collection[int],
                  k: int) -> Neighbours:
    """The ``k`` nearest allowed products for the ruled product ``pid`` (pins not yet placed),
    skipping products the database no longer holds (``existing`` holds the ids known to exist;
    others are looked up)."""
    matrix = _scope(matrix, row)
    rules = row.rules
    while True:
        nearest = nearest_allowed(matrix, row.vector, own_id=pid, rules=rules, k=k,
                                  limit=MAX_NEIGHBOURS)
        unknown = {nid for nid, _ in nearest if nid not in existing}
        gone = unknown - product_ids_existing(product_ids=unknown) if unknown else set()
        if not gone:
            return nearest
        rules = ListRules(exclude=rules.exclude | gone,
                          pins={r: p for r, p in rules.pins.items() if p not in gone})


def ruled_final(matrix: NeighbourIndex, pid: int, row: RuledRow, nearest: Neighbours) -> Neighbours:
    """The ruled product's list: ``nearest`` (already cut or collapsed) with its pins placed."""
    return pins_applied(_scope(matrix, row), row.vector, own_id=pid, rules=row.rules, nearest=nearest,
                        limit=MAX_NEIGHBOURS)


def ruled_pinned_ids(matrix: NeighbourIndex, pid: int, row: RuledRow) -> list[int]:
    """The products the ruled product's pins place in its list now, by rank."""
    return [target for _, target in pins_live(_scope(matrix, row), pid, row.rules, MAX_NEIGHBOURS)]


def _threshold(stored: list[StoredRow], rules: ListRules) -> tuple[float, int] | None:
    """(distance, id) of the last stored entry chosen by distance; None while the list has room."""
    if len(stored) < MAX_NEIGHBOURS:
        return None
    chosen = [(float(dist), int(nid)) for rank, nid, dist in stored if rules.pins.get(rank) != nid]
    return max(chosen) if chosen else (float("-inf"), -1)


def _other_categories(matrix: NeighbourIndex, rows: dict[int, RuledRow],
                      new_ids: np.ndarray) -> dict[str, set[int]]:
    """For each ruled row's category, the new products of other categories (they never enter
    its list when lists stay inside categories); empty across the catalog."""
    if not isinstance(matrix, PartitionedIndex):
        return {}
    new_categories = dict(zip(new_ids.tolist(), categories_of(new_ids), strict=True))
    return {cat: {nid for nid, c in new_categories.items() if c != cat}
            for cat in {row.category for row in rows.values()}}


def ruled_affected(*, matrix: NeighbourIndex, space: Space, new_ids: np.ndarray,
                   new_vectors: np.ndarray, removed: bool) -> set[int]:
    """Ruled products whose list the upsert of ``new_ids`` (vectors in ``space``) may change,
    and, if products were ``removed``, those whose stored list is short: a deleted product's
    rows went with it (the database cascades), so a list that held it is a row short."""
    if not new_ids.size and not removed:
        return set()
    rows = ruled_rows(product_ids=ruled_product_ids(), space=space)
    stored = neighbour_lists_stored(product_ids=rows)
    short = {pid for pid in rows if len(stored.get(pid, [])) < MAX_NEIGHBOURS} if removed else set()
    if not new_ids.size:
        return short
    order = sorted(rows)
    others = _other_categories(matrix, rows, new_ids)
    hit = rows_entered(
        np.stack([rows[pid].vector for pid in order]) if order else np.empty((0, matrix.dim)),
        [_threshold(stored.get(pid, []), rows[pid].rules) for pid in order],
        new_ids, new_vectors, matrix.metric,
        [{pid, *rows[pid].rules.exclude, *others.get(rows[pid].category, ())} for pid in order])
    entering = {pid for pid, entered in zip(order, hit.tolist(), strict=True) if entered}
    return short | entering | ruled_pinning(target_ids=new_ids.tolist())
