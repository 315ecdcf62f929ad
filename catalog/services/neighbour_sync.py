"""The neighbour table brought in line with the matrix, for exactly the products whose list changed.

Each such list is compared with the stored rows and rewritten from its first changed rank on
(delete + insert, in one transaction, committed only after the writer's fence passes). Running
the same sync twice leaves the same state: the second finds nothing to change. Call it under
``index_writer`` (catalog.services.index_writer).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from functools import partial

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from catalog.models import MAX_NEIGHBOURS, Product, ProductNeighbour
from catalog.plain_sql import quoted_table, vector_current_sql
from catalog.selectors.index_membership import (
    product_hashes_and_vectors,
    product_ids_existing,
    products_awaiting_reembed,
)
from catalog.selectors.list_rules import ruled_rows
from catalog.selectors.neighbour_rows import StoredRow, neighbour_list_ends, neighbour_lists_stored
from catalog.services.locking import Fence
from catalog.services.ruled_lists import ruled_final, ruled_nearest, ruled_pinned_ids
from catalog.space import Space
from catalog.vectors import vector_from_bytes, vector_key_current
from similarity import (
    EMBEDDING_DIM,
    NeighbourIndex,
    PartitionedIndex,
    chunked,
    first_distinct,
    rows_entered,
)

Neighbours = list[tuple[int, float]]
_CHUNK = 500
_COLLAPSE_CANDIDATES = 3 * MAX_NEIGHBOURS


def _list_k(matrix: NeighbourIndex) -> int | None:
    """How many neighbours a list is made from: the matrix's k, or with duplicates collapsed,
    spare candidates, so that copies skipped still leave ten places filled (more are read
    when they do not)."""
    if settings.LOOKALIKE_COLLAPSE_DUPLICATES:
        return min(_COLLAPSE_CANDIDATES, max(len(matrix) - 1, 0))
    return None


def matrix_lists(*, matrix: NeighbourIndex, product_ids: Collection[int]) -> dict[int, Neighbours]:
    """The matrix's lists (as a sync reads them) of those of ``product_ids`` it holds."""
    k = _list_k(matrix)
    return {pid: matrix.neighbours(pid, k=k) for pid in product_ids if pid in matrix}


def _gone(nbrs: Neighbours, existing: Collection[int]) -> set[int]:
    """Of ``nbrs``, the products the database no longer holds (``existing`` holds ids known to
    exist; others are looked up)."""
    unknown = {nid for nid, _ in nbrs if nid not in existing}
    return unknown - product_ids_existing(product_ids=unknown) if unknown else set()


def _wanted_list(matrix: NeighbourIndex, pid: int, existing: Collection[int], k: int | None,
                 read: Mapping[int, Neighbours] | None) -> Neighbours:
    """The product's ``k`` nearest (ten for None) from the matrix, looking further down its row
    past neighbours gone from the database."""
    reuse = read is not None and pid in read and k == _list_k(matrix)
    nbrs = read[pid] if read is not None and reuse else matrix.neighbours(pid, k=k)
    gone = _gone(nbrs, existing)
    if gone:
        alive = [(nid, d) for nid, d in matrix.neighbours(pid, k=max(len(matrix) - 1, 0))
                 if nid not in gone]
        while gone:
            nbrs = alive[:k or MAX_NEIGHBOURS]
            gone = _gone(nbrs, existing)
            alive = [(nid, d) for nid, d in alive if nid not in gone]
    return [(int(nid), float(d)) for nid, d in nbrs]


def _wanted_lists(
    matrix: NeighbourIndex, product_ids: Iterable[int], existing: Collection[int],
    read: Mapping[int, Neighbours] | None = None, space: Space | None = None,
) -> dict[int, Neighbours]:
    """Each existing product's top-10 from the matrix, skipping neighbours gone from the DB
    (``read``: lists already read from this matrix, ``matrix_lists``); with ``space`` (the
    matrix's), ruled products' lists under the shop's rules (catalog.services.ruled_lists)."""
    product_ids = list(product_ids)
    migrating = products_awaiting_reembed(product_ids=[pid for pid in product_ids if pid not in matrix])
    ruled = ruled_rows(product_ids=product_ids, space=space) if space is not None else {}
    k = _list_k(matrix)
    wanted: dict[int, Neighbours] = {}
    more: dict[int, Callable[[int], Neighbours]] = {}
    for pid in product_ids:
        if pid not in existing:
            continue  # deleted: its rows went with it
        if pid in migrating:
            continue  # its old list stays visible until the rebuild re-embeds it
        if pid in ruled:
            more[pid] = partial(ruled_nearest, matrix, pid, ruled[pid], existing)
            wanted[pid] = more[pid](k or MAX_NEIGHBOURS)
        elif pid in matrix:
            more[pid] = partial(_wanted_list, matrix, pid, existing, read=None)
            wanted[pid] = _wanted_list(matrix, pid, existing, k, read)
        else:
            wanted[pid] = []
    if settings.LOOKALIKE_COLLAPSE_DUPLICATES:
        pinned = {pid: ruled_pinned_ids(matrix, pid, row) for pid, row in ruled.items() if pid in wanted}
        _collapse_duplicates(wanted, more, pinned)
    for pid, row in ruled.items():
        if pid in wanted:
            wanted[pid] = ruled_final(matrix, pid, row, wanted[pid])
    return wanted


class _Duplicates:
    """Which products are near-duplicates: raw vectors of their main photos within
    ``LOOKALIKE_DUPLICATE_THRESHOLD`` cosine distance, or the same image bytes (rows read from
    the database once, as the lists ask)."""

    def __init__(self) -> None:
        self.rows: dict[int, tuple[str, np.ndarray]] = {}
        self.threshold = float(settings.LOOKALIKE_DUPLICATE_THRESHOLD)

    def load(self, product_ids: Iterable[int]) -> None:
        missing = [pid for pid in product_ids if pid not in self.rows]
        found = product_hashes_and_vectors(product_ids=missing) if missing else {}
        for pid in missing:
            sha, blob = found.get(pid, ("", None))
            vector = vector_from_bytes(blob) if blob else np.zeros(EMBEDDING_DIM, np.float32)
            self.rows[pid] = (sha or "", vector)  # no vector: a duplicate of nothing by vector

    def kept(self, candidates: Neighbours, pinned: list[int], room: int) -> Neighbours:
        """Up to ``room`` of ``candidates`` (best first), each no near-duplicate of a pinned
        product or of a candidate kept before it."""
        if not candidates:
            return []
        ids = [*pinned, *(nid for nid, _ in candidates)]
        self.load(ids)
        rows = first_distinct(np.stack([self.rows[pid][1] for pid in ids]),
                              [self.rows[pid][0] for pid in ids], fixed=len(pinned), room=room,
                              threshold=self.threshold)
        return [candidates[i - len(pinned)] for i in rows if i >= len(pinned)]


def _distinct(dups: _Duplicates, candidates: Neighbours, more: Callable[[int], Neighbours],
              pinned: list[int]) -> Neighbours:
    """The list's nearest part with near-duplicates left out: as many as the places its pins
    leave, reading further candidates (``more(k)``: the ``k`` nearest) while skipped copies
    leave places empty and the matrix holds more."""
    room = MAX_NEIGHBOURS - len(pinned)
    k = max(len(candidates), 1)
    while True:
        kept = dups.kept(candidates, pinned, room)
        if len(kept) >= room or len(candidates) < k:
            return kept
        k *= 2
        candidates = more(k)


def _collapse_duplicates(wanted: dict[int, Neighbours], more: Mapping[int, Callable[[int], Neighbours]],
                         pinned: Mapping[int, list[int]]) -> None:
    """Leave out of each list (in place) every near-duplicate of a product ranked before it in
    the list or pinned in it, the places freed going to the next candidates; the pins stay
    (similarity/index/dedup.py ``first_distinct``, docs/quality.md)."""
    dups = _Duplicates()
    dups.load({nid for lst in wanted.values() for nid, _ in lst}
              | {nid for ids in pinned.values() for nid in ids})
    for pid, lst in wanted.items():
        if pid in more:
            wanted[pid] = _distinct(dups, lst, more[pid], pinned.get(pid, []))


def collapsed_affected(*, matrix: NeighbourIndex, new_ids: np.ndarray, new_vectors: np.ndarray,
                       removed: bool) -> set[int]:
    """With duplicates collapsed, the products of the matrix whose list may change although
    its row of the matrix does not: a list that skipped copies ends further down than its
    row's ten, so it changes when a new product ranks before its last entry (or it has room);
    after a removal, the lists left short (a deleted product's rows went with it)."""
    if not settings.LOOKALIKE_COLLAPSE_DUPLICATES or (not new_ids.size and not removed):
        return set()
    ends = neighbour_list_ends()
    short = {pid for pid in matrix.ids.tolist() if pid not in ends}
    if not new_ids.size:
        return short
    entered: set[int] = set()
    scopes = list(matrix.parts.values()) if isinstance(matrix, PartitionedIndex) else [matrix]
    for scope in scopes:
        rows = [i for i, nid in enumerate(new_ids.tolist()) if nid in scope]
        ids = scope.ids.tolist()
        if not rows or not ids:
            continue
        hit = rows_entered(scope.vectors, [ends.get(pid) for pid in ids], new_ids[rows],
                           new_vectors[rows], scope.metric, [{pid} for pid in ids])
        entered |= {pid for pid, h in zip(ids, hit.tolist(), strict=True) if h}
    return short | entered


def _first_difference(stored: list[StoredRow], wanted: Neighbours) -> int | None:
    """The first rank (1-based) where the stored rows and the wanted list differ, or None."""
    for rank, (row, want) in enumerate(zip(stored, wanted, strict=False), start=1):
        if row != (rank, *want):
            return rank
    if len(stored) == len(wanted):
        return None
    return min(len(stored), len(wanted)) + 1


def _write_lists(lists: dict[int, tuple[int, Neighbours]]) -> None:
    """Rewrite each list from its first changed rank on: ``lists[pid] = (rank, list)``.

    A product entering a list moves only the ranks below it, so most of a list's rows stay;
    plain ``executemany`` (a model instance per row cost the index worker most of its time:
    profiled 4.3 of 6.9 s for 2,600 rows a batch at N = 3,000).
    """
    table = quoted_table(ProductNeighbour)
    quote = connection.ops.quote_name
    columns = ", ".join(quote(c) for c in ("product_id", "neighbour_id", "rank", "distance"))
    delete = f"DELETE FROM {table} WHERE product_id = %s AND {quote('rank')} >= %s"  # noqa: S608
    insert = f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s, %s)"  # noqa: S608
    ids = sorted(lists)
    rows = [(pid, nid, rank, dist) for pid in ids
            for rank, (nid, dist) in enumerate(lists[pid][1], start=1) if rank >= lists[pid][0]]
    starts = [(pid, lists[pid][0]) for pid in ids]
    with connection.cursor() as cursor:
        for part in chunked(starts, 5000):
            cursor.executemany(delete, part)
        for chunk in chunked(rows, 5000):
            cursor.executemany(insert, chunk)


def _mark_ready_sql() -> tuple[str, str]:
    """(UPDATE making pending or processing products ready, UPDATE recording ``indexed_as``),
    each for the products whose vector is current, with ``{}`` for their id placeholders."""
    table, quote = quoted_table(Product), connection.ops.quote_name
    current, marker = vector_current_sql()
    ready = (f"UPDATE {table} SET {quote('status')} = %s, {quote('status_changed_at')} = %s "  # noqa: S608
             f"WHERE {current} AND {quote('status')} IN (%s, %s) AND id IN ({{}})")
    mark = (f"UPDATE {table} SET {quote('indexed_as')} = {marker} "  # noqa: S608
            f"WHERE {current} AND {quote('indexed_as')} <> {marker} AND id IN ({{}})")
    return ready, mark


def products_mark_ready(*, product_ids: Collection[int], fence: Fence | None = None) -> None:
    """Mark indexed products ready and record the vector their lists were written for
    (call after the lists are written, under the writer's fence: ``fence`` is called before
    the writes, ``neighbours_sync(ready=...)`` fences its own commit).

    Plain SQL (the ORM's query building was half of this call's time); only rows that change
    are written: the rebuild and the reconcile sweep pass every id."""
    if not product_ids:
        return
    if fence is not None:
        fence()
    ready, mark = _mark_ready_sql()
    key = vector_key_current()
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    status = Product.Status
    with connection.cursor() as cursor:
        for chunk in chunked(sorted(product_ids), _CHUNK):
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(ready.format(marks), [status.READY, now, key, status.PENDING,
                                                 status.PROCESSING, *chunk])
            cursor.execute(mark.format(marks), [key, *chunk])


def neighbours_sync(
    *, matrix: NeighbourIndex, product_ids: Iterable[int], existing: Collection[int],
    fence: Fence | None = None, ready: Collection[int] = (),
    read: Mapping[int, Neighbours] | None = None, space: Space | None = None,
) -> set[int]:
    """Rewrite, in one transaction, the stored lists of ``product_ids`` that differ from the
    matrix (missing neighbours skipped); return the ids rewritten. ``ready``: products to
    mark ready in the same transaction (``products_mark_ready``), so that a product turns
    ready together with its list, for one commit and one fence. ``read``: the matrix's lists
    of these products, if the caller has them already. ``space``: the matrix's, so that ruled
    products' lists follow the shop's rules (every writer passes it).

    ``fence`` (the writer lock's check) is called right before the commit: if it raises, the
    transaction rolls back and nothing is written.
    """
    with transaction.atomic():
        wanted = _wanted_lists(matrix, sorted(set(product_ids)), existing, read, space)
        stored = neighbour_lists_stored(product_ids=wanted)
        differ = {}
        for pid, lst in wanted.items():
            first = _first_difference(stored.get(pid, []), lst)
            if first is not None:
                differ[pid] = (first, lst)
        _write_lists(differ)
        products_mark_ready(product_ids=ready)
        if (differ or ready) and fence is not None:
            fence()
    return set(differ)


def neighbours_sync_chunked(
    *, matrix: NeighbourIndex, product_ids: Sequence[int], existing: Collection[int],
    chunk: int = _CHUNK, progress: Callable[[int, int], None] | None = None,
    fence: Fence | None = None, space: Space | None = None,
) -> set[int]:
    """Like ``neighbours_sync`` but one transaction per ``chunk`` products, with progress."""
    rewritten: set[int] = set()
    ids = sorted(set(product_ids))
    for done, part in enumerate(chunked(ids, chunk), start=1):
        rewritten |= neighbours_sync(matrix=matrix, product_ids=part, existing=existing,
                                     fence=fence, space=space)
        if progress is not None:
            progress(min(done * chunk, len(ids)), len(ids))
    return rewritten
