"""The stored neighbour rows as the index writer reads them: whole lists by product, and the
lists that may involve given products."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from django.db import connection

from catalog.models import MAX_NEIGHBOURS, ProductNeighbour
from catalog.plain_sql import quoted_table
from similarity import NeighbourIndex, chunked

_CHUNK = 500

StoredRow = tuple[int, int, float]  # (rank, neighbour id, distance)


def neighbour_lists_stored(*, product_ids: Iterable[int]) -> dict[int, list[StoredRow]]:
    """The stored rows as (rank, neighbour id, distance), by rank, per product (plain SQL:
    the ORM's per-row work was a tenth of an index task)."""
    stored: dict[int, list[StoredRow]] = {}
    sql = (f"SELECT product_id, rank, neighbour_id, distance FROM {quoted_table(ProductNeighbour)} "  # noqa: S608
           "WHERE product_id IN ({}) ORDER BY product_id, rank")
    with connection.cursor() as cursor:
        for chunk in chunked(sorted(set(product_ids)), _CHUNK):
            cursor.execute(sql.format(", ".join(["%s"] * len(chunk))), chunk)
            for pid, rank, nid, dist in cursor.fetchall():
                stored.setdefault(pid, []).append((rank, nid, dist))
    return stored


def neighbour_list_ends() -> dict[int, tuple[float, int]]:
    """(distance, neighbour id) of the last place of every full stored list; a list with room
    has none, nor has one a deleted neighbour left with a hole (its rows went with it)."""
    table, rank = quoted_table(ProductNeighbour), connection.ops.quote_name("rank")
    ends = (f"SELECT product_id, distance, neighbour_id FROM {table} WHERE {rank} = %s")  # noqa: S608
    holed = (f"SELECT product_id FROM {table} GROUP BY product_id HAVING COUNT(*) < %s")  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(ends, [MAX_NEIGHBOURS])
        found = {int(pid): (float(dist), int(nid)) for pid, dist, nid in cursor.fetchall()}
        cursor.execute(holed, [MAX_NEIGHBOURS])
        for (pid,) in cursor.fetchall():
            found.pop(int(pid), None)
    return found


def neighbour_lists_touching(*, matrix: NeighbourIndex, product_ids: Collection[int],
                             unmoved: Collection[int] = ()) -> set[int]:
    """Products whose list may involve ``product_ids``: their stored rows hold one of them (an
    indexed query), or, for ``unmoved``, their top-k in the matrix does.

    After a crash between publishing a matrix delta and writing the neighbour rows, the
    redelivered task finds the matrix already up to date (the upsert writes nothing and
    reports no change): this is how it still finds, and repairs, every list the crashed run
    should have rewritten. The pass over the matrix's N x k lists is made only for those
    products (the index plan's ``unmoved``), so that an ordinary task reads no more than its
    own rows.
    """
    found = matrix.holders(unmoved) if unmoved else set()
    for chunk in chunked(sorted(product_ids), _CHUNK):
        found.update(
            ProductNeighbour.objects.filter(neighbour_id__in=chunk)
            .values_list("product_id", flat=True)
        )
    return found
