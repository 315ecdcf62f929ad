"""Which products belong in the index, which are in it or wait for it, and their vectors.

The index writer (catalog.services.indexing) reads through these; each reads only the rows of
the products it is given (in chunks), except where it says it reads the whole catalog.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from typing import Literal, overload

import numpy as np
from django.db import connection
from django.db.models import Exists, F, OuterRef, QuerySet

from catalog.models import ListRule, Product
from catalog.plain_sql import quoted_table, vector_current_sql
from catalog.selectors.further_photos import with_further_photos
from catalog.space import Space
from catalog.vectors import colour_from_bytes, vector_from_bytes, vector_key_current
from similarity import COLOUR_DIM, EMBEDDING_DIM, chunked

_CHUNK = 500

_VectorRow = tuple[int, bytes | memoryview | None, bytes | memoryview | None, str]


def _pks_among(qs: QuerySet[Product], ids: Iterable[int]) -> set[int]:
    """The primary keys of ``qs`` among ``ids``, queried a chunk at a time."""
    found: set[int] = set()
    for chunk in chunked(sorted(set(ids)), _CHUNK):
        found.update(qs.filter(pk__in=chunk).values_list("pk", flat=True))
    return found


def products_indexable() -> QuerySet[Product]:
    """Products whose vector is current for their current image: these belong in the matrix."""
    return (
        Product.objects.filter(vector__isnull=False, vector_key=vector_key_current())
        .exclude(status=Product.Status.FAILED)
        .exclude(image_sha256="")
        .filter(embedded_image_sha256=F("image_sha256"))
    )


def in_lists(qs: QuerySet[Product]) -> QuerySet[Product]:
    """Of ``qs``, the products that may appear in lists and search: listed, and not excluded
    from every list. The matrix holds only these; the others keep lists of their own."""
    everywhere = ListRule.objects.filter(kind=ListRule.Kind.EXCLUDE_EVERYWHERE,
                                         target=OuterRef("pk"))
    return qs.filter(listed=True).exclude(Exists(everywhere))


def products_candidates() -> QuerySet[Product]:
    """Indexable products that may appear in lists: the matrix's members."""
    return in_lists(products_indexable())


def product_ids_keepable(*, product_ids: Iterable[int] | None = None) -> set[int]:
    """Products allowed to stay in the matrix (of ``product_ids``, or of the whole catalog):
    a current-model vector, not failed, allowed in lists (``in_lists``).

    A product whose image just changed keeps its old vector (and list) until re-embedded.
    """
    qs = in_lists(Product.objects.filter(vector__isnull=False, vector_key=vector_key_current())
                  .exclude(status=Product.Status.FAILED))
    if product_ids is None:
        return set(qs.values_list("pk", flat=True))
    return _pks_among(qs, product_ids)


def products_awaiting_reembed(*, product_ids: Collection[int]) -> set[int]:
    """Of ``product_ids``, products whose vector is from an older model or policy (not failed).

    After the model, policy or space changes (an adoption), their lists stay as they are
    until the beat rebuild re-embeds them and writes the new lists: no list goes empty.
    """
    qs = (Product.objects.filter(vector__isnull=False).exclude(vector_key=vector_key_current())
          .exclude(status=Product.Status.FAILED))
    return _pks_among(qs, product_ids)


def product_categories(*, product_ids: Iterable[int]) -> dict[int, str]:
    """The category ("" for none) of each of ``product_ids`` the database holds."""
    found: dict[int, str] = {}
    for chunk in chunked(sorted(set(product_ids)), _CHUNK):
        found.update(Product.objects.filter(pk__in=chunk).values_list("pk", "category"))
    return found


def product_ids_existing(*, product_ids: Iterable[int]) -> set[int]:
    """Of ``product_ids``, those the database holds."""
    return _pks_among(Product.objects.all(), product_ids)


def product_ids_all() -> set[int]:
    """Every product id. Every index task that writes needs it (a product deleted behind the
    services' back must leave the index before any changed set can be trusted), so it is one
    plain query, without the ORM's per-row work (profiled: 23 ms of a task at N = 10,000)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {quoted_table(Product)}")  # noqa: S608 - a quoted model table name
        return {row[0] for row in cursor.fetchall()}


@overload
def products_indexable_vectors(
    *, product_ids: Collection[int] | None = None, space: Space | None = None,
    with_colours: Literal[False] = False, candidates: bool = False,
) -> tuple[np.ndarray, np.ndarray]: ...


@overload
def products_indexable_vectors(
    *, product_ids: Collection[int] | None = None, space: None = None, with_colours: Literal[True],
    candidates: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


def products_indexable_vectors(
    *, product_ids: Collection[int] | None = None, space: Space | None = None,
    with_colours: bool = False, candidates: bool = False,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids int64, vectors float32 N x EMBEDDING_DIM) of indexable products (with
    ``candidates``, only those allowed in lists: the matrix's members), by id, read with
    their colour descriptors; with ``space``, the products' vectors in it (N x space.dim, its
    stored projection and colour blend, every photo of a product counted:
    catalog.selectors.further_photos); without, the main photos' raw vectors, and with
    ``with_colours`` also their colour descriptors (float32 N x COLOUR_DIM; zeros where none
    of the current version)."""
    ids, vecs, cols = _indexable_rows(product_ids, candidates)
    if with_colours:
        return ids, vecs, cols
    if space is not None:
        vecs = with_further_photos(ids, space.apply(vecs, cols), space)
    return ids, vecs


def _indexable_rows(product_ids: Collection[int] | None,
                    candidates: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, raw vectors, colour descriptors) of the indexable products (among ``product_ids``)."""
    ids: list[int] = []
    vecs: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    for pk, vector, colour, colour_key in _vector_rows(product_ids, candidates):
        if vector is not None:  # indexable products always have one
            ids.append(pk)
            vecs.append(vector_from_bytes(vector))
            cols.append(colour_from_bytes(colour, colour_key))
    return (np.asarray(ids, dtype=np.int64),
            np.stack(vecs) if vecs else np.empty((0, EMBEDDING_DIM), np.float32),
            np.stack(cols) if cols else np.empty((0, COLOUR_DIM), np.float32))


def _vector_rows(product_ids: Collection[int] | None, candidates: bool) -> Iterator[_VectorRow]:
    qs = products_candidates() if candidates else products_indexable()
    base = qs.order_by("pk").values_list("pk", "vector", "colour", "colour_key")
    if product_ids is None:
        yield from base.iterator(chunk_size=1000)
        return
    for chunk in chunked(sorted(set(product_ids)), _CHUNK):
        yield from base.filter(pk__in=chunk)


def products_indexed(*, product_ids: Iterable[int]) -> set[int]:
    """Of ``product_ids``, the ready products whose lists were committed for their current
    vector (``indexed_as``). Read before the vectors: a product re-embedded in between then
    shows a vector the matrix lacks, and is indexed. Plain SQL, like ``products_mark_ready``."""
    current, marker = vector_current_sql()
    quote = connection.ops.quote_name
    sql = (f"SELECT id FROM {quoted_table(Product)} WHERE {current} AND "  # noqa: S608
           f"{quote('status')} = %s AND {quote('indexed_as')} = {marker} AND id IN ({{}})")
    found: set[int] = set()
    with connection.cursor() as cursor:
        for chunk in chunked(sorted(set(product_ids)), _CHUNK):
            cursor.execute(sql.format(", ".join(["%s"] * len(chunk))),
                           [vector_key_current(), Product.Status.READY, *chunk])
            found.update(row[0] for row in cursor.fetchall())
    return found


def products_awaiting_index(*, limit: int) -> set[int]:
    """Up to ``limit`` embedded products waiting for the index. An index task takes them
    along with its own, so a backlog behind a busy index worker goes in a few large batches
    (their own tasks then find nothing to do); a task's fixed cost is paid once."""
    return set(
        products_indexable().filter(status=Product.Status.PROCESSING)
        .order_by("pk").values_list("pk", flat=True)[:limit]
    )


def product_hashes_and_vectors(
    *, product_ids: Iterable[int],
) -> dict[int, tuple[str, bytes | memoryview | None]]:
    """(image sha256, raw vector) of those of ``product_ids`` that have a vector."""
    rows: dict[int, tuple[str, bytes | memoryview | None]] = {}
    for chunk in chunked(sorted(set(product_ids)), _CHUNK):
        rows.update(
            (pk, (sha, vector)) for pk, sha, vector in Product.objects.filter(
                pk__in=chunk, vector__isnull=False
            ).values_list("pk", "image_sha256", "vector")
        )
    return rows
