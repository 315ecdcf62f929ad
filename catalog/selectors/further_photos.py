"""A product's vector from all its photos: the main photo's and its further photos'.

The catalog's product distance is measured and chosen in docs/quality.md ("Several photos per
product"): one vector per product, the mean of its photos' vectors in the similarity space
(its direction, at the photos' mean length: ``similarity.product_vectors``), so both index
layouts keep exact lists unchanged. A further photo counts once it has a vector of the current
model; a photo whose image changed counts with its previous vector until it is re-embedded
(as a main photo does), a failed one not at all.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
from django.db.models import Count, F, Q, QuerySet

from catalog.models import Product, ProductPhoto
from catalog.space import Space
from catalog.vectors import colour_from_bytes, vector_from_bytes, vector_key_current
from similarity import COLOUR_DIM, EMBEDDING_DIM, PhotoGroups, chunked, product_vectors

_CHUNK = 500
# From this many products, one read of every counted photo beats IN lists of _CHUNK ids.
_READ_ALL_FROM = 4 * _CHUNK


def further_photos_counted() -> QuerySet[ProductPhoto]:
    """Further photos that count in their product's vector."""
    return (ProductPhoto.objects.filter(vector__isnull=False, vector_key=vector_key_current())
            .exclude(status=Product.Status.FAILED))


def further_photos_stale() -> QuerySet[ProductPhoto]:
    """Further photos (not failed) without a vector of the current model for their image."""
    return ProductPhoto.objects.exclude(status=Product.Status.FAILED).filter(
        Q(vector__isnull=True) | ~Q(vector_key=vector_key_current())
        | ~Q(embedded_image_sha256=F("image_sha256")))


def products_photo_counts(*, product_ids: Collection[int]) -> dict[int, int]:
    """How many photos each product has (its main photo and its further ones, as
    ``Product.photos_counted``); a product that does not exist is left out."""
    counts = {pid: 1 for pid in Product.objects.filter(pk__in=list(product_ids))
              .values_list("pk", flat=True)}
    further = (ProductPhoto.objects.filter(product_id__in=list(counts)).order_by().values("product_id")
               .annotate(n=Count("id")).values_list("product_id", "n"))
    for product_id, n in further:
        counts[product_id] += n
    return counts


def further_photo_vectors(*, product_ids: Collection[int],
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(owner product ids, raw vectors, colour descriptors) of the counted further photos of
    ``product_ids``, by product then photo id."""
    rows = further_photos_counted().order_by("product_id", "pk").values_list(
        "product_id", "vector", "colour", "colour_key")
    wanted = set(product_ids)
    found: list[tuple[int, bytes | memoryview | None, bytes | memoryview | None, str]] = []
    if len(wanted) > _READ_ALL_FROM:  # the catalog or most of it (rebuild, search's cache)
        found.extend(r for r in rows.iterator(chunk_size=1000) if r[0] in wanted)
    else:
        for chunk in chunked(sorted(wanted), _CHUNK):
            found.extend(rows.filter(product_id__in=chunk))
    owners = np.fromiter((r[0] for r in found), dtype=np.int64, count=len(found))
    if not found:
        return owners, np.empty((0, EMBEDDING_DIM), np.float32), np.empty((0, COLOUR_DIM), np.float32)
    vectors = np.stack([vector_from_bytes(r[1] or b"") for r in found])
    colours = np.stack([colour_from_bytes(r[2], r[3]) for r in found])
    return owners, vectors, colours


def with_further_photos(ids: np.ndarray, mapped: np.ndarray, space: Space) -> np.ndarray:
    """``mapped`` (each product's main-photo vector in ``space``, rows in the order of
    ``ids``) with every product that has counted further photos replaced by the vector of all
    its photos (float32, as the index holds them)."""
    owners, vectors, colours = further_photo_vectors(product_ids=ids.tolist())
    if owners.size == 0:
        return mapped
    row_of = {int(pid): i for i, pid in enumerate(ids.tolist())}
    present = np.fromiter((int(pid) in row_of for pid in owners.tolist()), bool, count=owners.size)
    owners, photos = owners[present], space.apply(vectors[present], colours[present])
    if owners.size == 0:
        return mapped
    products, counts = np.unique(owners, return_counts=True)
    rows = np.array([row_of[int(pid)] for pid in products.tolist()], dtype=np.int64)
    stacked = np.empty((int(owners.size + products.size), mapped.shape[1]), np.float64)
    groups = PhotoGroups.from_counts(counts + 1)
    stacked[groups.starts] = mapped[rows]
    stacked[np.setdiff1d(np.arange(stacked.shape[0]), groups.starts)] = photos
    out = np.array(mapped, dtype=np.float32, copy=True)
    out[rows] = product_vectors(stacked, groups).astype(np.float32)
    return out
