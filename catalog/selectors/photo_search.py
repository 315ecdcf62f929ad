"""Search by photo: the ready products nearest to an uploaded picture, of those allowed in lists
(listed, not excluded everywhere). Nothing here writes.

It embeds the query with a per-process ImageEmbedder (LiteRT, no TensorFlow),
computes its colour descriptor from the same decoded picture, and compares it, in the current
similarity space, with the vectors (and colour descriptors) of the READY products whose vector
was made by the current model and preprocessing policy (``vector_key``). Those vectors are
loaded from the database once and cached in this process as one float32 array; a cheap
aggregate query run before every search (count, max timestamps, sum of ids of the ready
products) tells whether the catalog has changed since, and only then are the vectors reloaded.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from django.db.models import Count, Max, QuerySet, Sum

from catalog.engine import IndexStore, embedder_get, matrix_store
from catalog.models import Product
from catalog.selectors.further_photos import with_further_photos
from catalog.selectors.index_membership import in_lists
from catalog.space import Space, space_current
from catalog.vectors import colour_from_bytes, vector_key_current
from similarity import (
    COLOUR_DIM,
    EMBEDDING_DIM,
    MatrixError,
    NeighbourIndex,
    PartitionedIndex,
    PartitionedStore,
    StaleMatrixError,
    partitions_present,
)

# Candidates within this fraction of (|q|² + max|x|²) of the k-th float32 squared distance are
# re-checked exactly in float64, so float32 rounding never changes the order of the results.
_SHORTLIST_RTOL = 1e-4


@dataclass(frozen=True)
class _SearchIndex:
    key: tuple[object, ...]
    space: Space
    ids: np.ndarray  # (N,) int64, ascending
    vectors: np.ndarray  # (N, dim) float32 (L2-normalised for cosine)
    sq_norms: np.ndarray  # (N,) float64
    metric: str


_index_lock = threading.Lock()
_index: _SearchIndex | None = None


def _ready_products(vector_key: str) -> QuerySet[Product]:
    """Ready products allowed in lists (a product not listed is never a search result)."""
    return in_lists(Product.objects.filter(
        status=Product.Status.READY, vector__isnull=False, vector_key=vector_key
    ))


def _catalog_key(space: Space, vector_key: str) -> tuple:
    """Changes whenever a ready product is added, removed, re-embedded or touched (a further
    photo embedded, failed or removed touches its product), or the similarity space (its stored
    projection) changes."""
    agg = _ready_products(vector_key).aggregate(
        n=Count("id"), updated=Max("updated_at"), changed=Max("status_changed_at"), ids=Sum("id")
    )
    return (space.metric, space.key, vector_key, agg["n"], agg["updated"], agg["changed"],
            agg["ids"])


def _load_index(key: tuple, space: Space, vector_key: str) -> _SearchIndex:
    metric = space.metric
    rows = list(_ready_products(vector_key).order_by("id")
                .values_list("id", "vector", "colour", "colour_key"))
    # vector__isnull=False above: every blob is bytes (or a memoryview on PostgreSQL).
    n = len(rows)
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
    vectors = np.empty((n, EMBEDDING_DIM), dtype=np.float32)
    colours = np.empty((n, COLOUR_DIM), dtype=np.float32)
    keep = np.ones(n, dtype=bool)
    for i, (_, blob, colour, colour_key) in enumerate(rows):
        raw = bytes(blob or b"")
        if len(raw) != EMBEDDING_DIM * 4:
            keep[i] = False  # a damaged vector is skipped rather than failing every search
            continue
        vectors[i] = np.frombuffer(raw, dtype="<f4")
        colours[i] = colour_from_bytes(colour, colour_key)
    if not keep.all():
        ids, vectors, colours = ids[keep], vectors[keep], colours[keep]
    # The stored projection and colour blend (or the vectors as they are), every photo counted.
    vectors = with_further_photos(ids, space.apply(vectors, colours), space)
    if metric == "cosine":
        norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
        norms[norms == 0] = 1.0
        vectors = (vectors / norms[:, None]).astype(np.float32)
    sq = np.einsum("ij,ij->i", vectors.astype(np.float64), vectors.astype(np.float64))
    return _SearchIndex(key=key, space=space, ids=ids, vectors=vectors, sq_norms=sq, metric=metric)


def _search_index() -> _SearchIndex:
    global _index
    space = space_current()
    vector_key = vector_key_current()
    key = _catalog_key(space, vector_key)
    current = _index
    if current is not None and current.key == key:
        return current
    with _index_lock:
        if _index is not None and _index.key == key:
            return _index
        _index = _load_index(key, space, vector_key)
        return _index


def search_index_clear() -> None:
    """Forget the cached vectors (tests; the key check makes this unnecessary in production)."""
    global _index
    with _index_lock:
        _index = None
    with _stored_lock:
        _stored.clear()


def vectors_nearest(
    query: np.ndarray, *, ids: np.ndarray, vectors: np.ndarray, sq_norms: np.ndarray,
    metric: str, k: int,
) -> list[tuple[int, float]]:
    """Top-k (id, distance) of ``query`` among ``vectors``, ordered by (float32 distance, id).

    One float32 matrix-vector product ranks everything (squared norms - 2 q·x); a shortlist
    around the k-th candidate is then recomputed exactly in float64 from difference vectors.
    """
    n = ids.shape[0]
    if n == 0 or k <= 0:
        return []
    q = np.asarray(query, dtype=np.float64).reshape(-1)
    if metric == "cosine":
        qn = np.linalg.norm(q)
        q = q / (qn if qn else 1.0)
    q_sq = float(q @ q)
    approx = sq_norms - 2.0 * (vectors @ q.astype(np.float32)).astype(np.float64) + q_sq
    kk = min(k, n)
    kth = np.partition(approx, kk - 1)[kk - 1]
    margin = _SHORTLIST_RTOL * (q_sq + float(sq_norms.max())) + 1e-12
    cand = np.flatnonzero(approx <= kth + 2 * margin)
    diff = vectors[cand].astype(np.float64) - q[None, :]
    exact_sq = np.einsum("ij,ij->i", diff, diff)
    dist = np.sqrt(exact_sq) if metric == "euclidean" else 0.5 * exact_sq
    dist32 = dist.astype(np.float32)
    order = np.lexsort((ids[cand], dist32))[:kk]
    return [(int(ids[cand[i]]), float(dist32[i])) for i in order]


def products_search_by_image(*, image_bytes: bytes, k: int = 10,
                             category: str | None = None) -> list[tuple[Product, float]]:
    """The ``k`` ready products nearest to an uploaded image (of ``category`` if given), with
    their distances.

    Raises ``similarity.errors.ImageRejected`` (with its ``reason``) for an unusable image.
    """
    vector, colour = embedder_get().embed_with_colour(image_bytes)
    return products_search_by_vector(vector=vector, colour=colour, k=k, category=category)


def products_search_by_vector(
    *, vector: np.ndarray, colour: np.ndarray | None = None, k: int = 10,
    category: str | None = None,
) -> list[tuple[Product, float]]:
    """The ``k`` ready products nearest to a raw vector (and its colour descriptor: without
    one, a colour-blended space ranks by shape alone). A top-k layout index is searched in
    place (vectors shared through the page cache, deltas replayed); below that size, the
    ready products' vectors are cached from the database."""
    found = _search_stored_index(vector, colour, k, category)
    if found is not None:
        return found
    index = _search_index()
    ids, vectors, sq_norms = index.ids, index.vectors, index.sq_norms
    if category is not None:
        keep = np.isin(ids, _ready_in_category(category))
        ids, vectors, sq_norms = ids[keep], vectors[keep], sq_norms[keep]
    hits = vectors_nearest(
        index.space.query(vector, colour), ids=ids, vectors=vectors, sq_norms=sq_norms,
        metric=index.metric, k=k,
    )
    products = Product.objects.in_bulk([pid for pid, _ in hits])
    # A product deleted since the index was loaded is simply left out.
    return [(products[pid], dist) for pid, dist in hits if pid in products]


def _ready_in_category(category: str) -> np.ndarray:
    ids = Product.objects.filter(status=Product.Status.READY, category=category).values_list(
        "id", flat=True)
    return np.fromiter(ids, dtype=np.int64)


_stored_lock = threading.Lock()
_stored: dict[tuple[object, ...], NeighbourIndex] = {}


def _stored_index(store: IndexStore) -> NeighbourIndex:
    """This process's copy of the stored index, brought up to date (call under the lock)."""
    key = (str(store.directory), store.meta, store.dim)
    index = _stored.get(key)
    if index is None:
        _stored.clear()
        index = _stored[key] = store.load()
    else:
        store.refresh(index)  # replays the new deltas; reloads only after a new generation
    return index


def _searched_in_place(store: IndexStore) -> bool:
    """Whether search reads the stored index: top-k layout (by category: every partition)."""
    if isinstance(store, PartitionedStore):
        return store.stored_layout() == "topk"
    # matrix_store() read the layout on disk; lists by category there: a migration in progress
    return store.layout == "topk" and not partitions_present(store.directory)


def _nearest(index: NeighbourIndex, query: np.ndarray, k: int,
             category: str | None) -> list[tuple[int, float]]:
    """The index's nearest: inside the category's partition when the index holds one per
    category, else across the catalog (the partitions' top-k merged exactly)."""
    if category is not None and isinstance(index, PartitionedIndex):
        return index.query_within(category, query, k=k)
    return index.query(query, k=k)


def _search_stored_index(vector: np.ndarray, colour: np.ndarray | None, k: int,
                         category: str | None = None) -> list[tuple[Product, float]] | None:
    """Search the stored top-k index, or None when the stored index is not top-k (or is of
    another space: a migration in progress)."""
    target = matrix_store()
    if not _searched_in_place(target.store):
        return None
    query = target.space.query(vector, colour)
    with _stored_lock:
        try:
            index = _stored_index(target.store)
        except (StaleMatrixError, MatrixError):
            return None  # another space (a migration), or unreadable: the database path
        wanted = k
        while True:
            hits = _nearest(index, query, min(wanted, len(index)), category)
            wanted_rows = in_lists(Product.objects.filter(status=Product.Status.READY))
            if category is not None:
                wanted_rows = wanted_rows.filter(category=category)
            ready = wanted_rows.in_bulk([pid for pid, _ in hits])
            found = [(ready[pid], dist) for pid, dist in hits if pid in ready][:k]
            if len(found) == k or wanted >= len(index):
                return found
            wanted *= 4  # products indexed but not ready yet took places: look further
