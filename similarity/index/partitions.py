"""Lists inside a product's category: one index per category (a *partition*).

Each category's products form an index of their own (either layout, chosen by its own size),
so a list is computed inside its product's partition by the very code that keeps a whole
catalog's lists exact and incremental: an add scans its partition only, a removal repairs only
its partition's rows, and a product's own rules (``similarity.index.rules``) apply inside the
partition unchanged. Products without a category (``NO_CATEGORY``) form one partition of their
own. A product whose category changes leaves its partition and enters the new one.

Search by photo with a category searches that partition; without one it merges the
partitions' exact top-k by (distance, id), which is the exact top-k of the whole catalog (the
partitions too small to prune ranked as one scan, ``similarity.index.partition_search``).

Why partitions rather than a category mask on each list (the shop-rules machinery): a mask
makes every list a ruled list, recomputed by a query against the whole catalog and re-checked
on every add; at a million products in the top-k layout that is a full scan per list. A
partition keeps lists as stored rows, and shrinks the scans to the category's size.

``PartitionedIndex`` is the in-memory view (one ``NeighbourIndex`` per category);
``similarity.index.partition_store`` persists it.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from similarity.errors import MatrixError
from similarity.index.dense import DistanceMatrix, as_ids, check_int, validate_vectors
from similarity.index.layout import NeighbourIndex
from similarity.index.partition_search import ScanBounds, nearest_across, scanned_whole
from similarity.model.spec import EMBEDDING_DIM

NO_CATEGORY = ""
PARTITIONS_DIR = "categories"
PART_PREFIX = "part-"
_NONE_NAME = "none"  # not hex, so it never names a category

Neighbours = list[tuple[int, float]]


def partition_name(category: str) -> str:
    """The directory name of a category's partition (any text, safely)."""
    return PART_PREFIX + (category.encode().hex() if category else _NONE_NAME)


def partition_category(name: str) -> str:
    """The category a partition directory name stands for."""
    code = name[len(PART_PREFIX):]
    return NO_CATEGORY if code == _NONE_NAME else bytes.fromhex(code).decode()


def partitions_present(directory: str | os.PathLike[str]) -> bool:
    """Whether ``directory`` holds a partitioned index (a plain store there is then stale)."""
    root = Path(directory) / PARTITIONS_DIR
    return root.is_dir() and any(p.name.startswith(PART_PREFIX) for p in root.iterdir())


def merge_nearest(answers: Iterable[Neighbours], k: int) -> Neighbours:
    """The ``k`` first of several lists each ordered by (distance, id), by (distance, id)."""
    ordered = heapq.merge(*answers, key=lambda e: (e[1], e[0]))
    return [entry for _, entry in zip(range(k), ordered, strict=False)]


class PartitionedIndex:
    """One ``NeighbourIndex`` per category; reads route to the product's partition."""

    layout = "partitioned"

    def __init__(self, parts: Mapping[str, NeighbourIndex] | None = None, *,
                 dim: int = EMBEDDING_DIM, metric: str = "euclidean", k: int = 10) -> None:
        self.parts: dict[str, NeighbourIndex] = dict(parts or {})
        self.dim, self.metric, self.k = dim, metric, k
        self.version: tuple[int, int] | None = None
        self.sealed = False
        self.scan_bounds = ScanBounds()  # for searches across the catalog

    def __repr__(self) -> str:
        sizes = {cat: len(part) for cat, part in sorted(self.parts.items())}
        return f"PartitionedIndex({sizes})"

    # ------------------------------------------------------------------ reading

    @property
    def ids(self) -> np.ndarray:
        parts = [part.ids for part in self.parts.values()]
        return np.sort(np.concatenate(parts)) if parts else np.empty(0, np.int64)

    @property
    def vectors(self) -> np.ndarray:
        ids = self.ids
        if not ids.size:
            return np.empty((0, self.dim), np.float32)
        return np.stack([self.vector(pid) for pid in ids.tolist()])

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts.values())

    def __contains__(self, product_id: object) -> bool:
        return self.category_of(product_id) is not None

    def category_of(self, product_id: object) -> str | None:
        """The partition holding the product, or None."""
        for category, part in self.parts.items():
            if product_id in part:
                return category
        return None

    def _part_of(self, product_id: int) -> NeighbourIndex:
        category = self.category_of(product_id)
        if category is None:
            raise KeyError(product_id)
        return self.parts[category]

    def neighbours(self, product_id: int, k: int | None = None) -> Neighbours:
        """The product's list, inside its category."""
        return self._part_of(product_id).neighbours(product_id, k)

    def vector(self, product_id: int) -> np.ndarray:
        return self._part_of(product_id).vector(product_id)

    def query(self, vector: Any, k: int = 10, exclude: Iterable[int] = ()) -> Neighbours:
        """The ``k`` nearest of the whole catalog: the partitions' top-k merged exactly, the
        partitions that a search reads whole searched as one (``partition_search``)."""
        k = check_int(k, "k")
        skip = sorted(set(exclude))
        q32 = validate_vectors(vector, 1, self.dim, self.metric)
        scanned = [part for part in self.parts.values() if scanned_whole(part)]
        joint = nearest_across(scanned, q32, k, as_ids(skip, what="exclude"), self.scan_bounds)
        rest = [part for part in self.parts.values() if joint is None or not scanned_whole(part)]
        return merge_nearest([joint or [], *(part.query(q32[0], k=k, exclude=skip)
                                              for part in rest)], k)

    def query_within(self, category: str, vector: Any, k: int = 10,
                     exclude: Iterable[int] = ()) -> Neighbours:
        """The ``k`` nearest inside ``category`` (none when it holds no product)."""
        part = self.parts.get(category)
        return [] if part is None else part.query(vector, k=k, exclude=exclude)

    def holders(self, ids: Iterable[int] | np.ndarray) -> set[int]:
        wanted = list(ids)
        return set().union(*(part.holders(wanted) for part in self.parts.values()))

    def holds(self, product_id: int, vector: Any, category: str) -> bool:
        """Whether the product is in ``category``'s partition with exactly this vector."""
        part = self.parts.get(category)
        return (part is not None and product_id in part
                and np.array_equal(part.vector(product_id), np.asarray(vector, np.float32)))

    def top_k_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        tables = [part.top_k_table() for part in self.parts.values()]
        if not tables:
            return (np.empty(0, np.int64), np.empty((0, self.k), np.int64),
                    np.empty((0, self.k), np.float32))
        ids, nbr_ids, nbr_dist = (np.concatenate(cols) for cols in zip(*tables, strict=True))
        return ids, nbr_ids, nbr_dist

    # ------------------------------------------------------------------ in memory

    def plan_upsert(self, ids: Sequence[int] | np.ndarray,
                    vectors: Any) -> tuple[np.ndarray, np.ndarray]:
        """Of ``ids``, those not held with exactly these vectors (in any partition)."""
        ids_arr = np.asarray(ids, np.int64).reshape(-1)
        vecs = np.asarray(vectors, np.float32).reshape(ids_arr.size, -1)
        keep = [i for i, pid in enumerate(ids_arr.tolist())
                if pid not in self or not np.array_equal(self.vector(pid), vecs[i])]
        return ids_arr[keep], vecs[keep]

    def apply_upsert(self, ids: np.ndarray, vecs: np.ndarray) -> set[int]:
        raise MatrixError("a partitioned index needs each product's category: use upsert")

    def plan_remove(self, ids: Iterable[int] | np.ndarray) -> np.ndarray:
        return np.unique(np.asarray([pid for pids in self.locate(ids).values() for pid in pids],
                                    np.int64))

    def apply_remove(self, present: np.ndarray) -> set[int]:
        return self.remove(present)

    def upsert(self, ids: Sequence[int] | np.ndarray, vectors: Any,
               categories: Sequence[str] | None = None, *,
               make: Callable[[], NeighbourIndex] | None = None) -> set[int]:
        """Add or move products (not persisted: ``PartitionedStore.upsert`` is); returns the
        products whose lists may have changed. ``make`` builds an empty partition (dense)."""
        if categories is None:
            raise MatrixError("a partitioned index needs each product's category")
        changed: set[int] = set()
        for category, (pids, vecs) in group_by_category(ids, vectors, categories).items():
            changed |= self.remove(pid for pid in pids if self.category_of(pid) not in
                                   (None, category))
            part = self.parts.get(category)
            if part is None:
                part = self.parts[category] = (make or self._empty_dense)()
            changed |= part.upsert(pids, vecs)
        return changed

    def remove(self, ids: Iterable[int] | np.ndarray) -> set[int]:
        changed: set[int] = set()
        for category, pids in self.locate(ids).items():
            changed |= self.parts[category].remove(pids)
        return changed

    def locate(self, ids: Iterable[int] | np.ndarray) -> dict[str, list[int]]:
        """The held ones of ``ids``, by partition."""
        found: dict[str, list[int]] = {}
        for pid in np.asarray(list(ids), np.int64).tolist():
            category = self.category_of(pid)
            if category is not None:
                found.setdefault(category, []).append(pid)
        return found

    def within(self, category: str) -> NeighbourIndex:
        """The partition of ``category`` (an empty index when it holds no product)."""
        return self.parts.get(category) or self._empty_dense()

    def replace_state(self, other: Any) -> None:
        if not isinstance(other, PartitionedIndex):
            raise MatrixError(f"cannot replace a partitioned index with {type(other).__name__}")
        self.parts, self.version = dict(other.parts), other.version

    def _empty_dense(self) -> NeighbourIndex:
        return DistanceMatrix(dim=self.dim, metric=self.metric, k=self.k)


def partitioned(matrix: NeighbourIndex) -> PartitionedIndex:
    """``matrix`` as the partitioned index it must be."""
    if not isinstance(matrix, PartitionedIndex):
        raise MatrixError(f"expected a partitioned index, got {type(matrix).__name__}")
    return matrix


def group_by_category(ids: Sequence[int] | np.ndarray, vectors: Any, categories: Sequence[str],
                      ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """ids and vectors split by category, in input order."""
    ids_arr = np.asarray(ids, np.int64).reshape(-1)
    vecs = np.asarray(vectors, np.float32).reshape(ids_arr.size, -1)
    cats = list(categories)
    if len(cats) != ids_arr.size:
        raise MatrixError(f"{ids_arr.size} ids but {len(cats)} categories")
    # One sort instead of a pass per category (a rebuild groups a million products).
    names, first, inverse = np.unique(np.asarray(cats, dtype=str), return_index=True,
                                      return_inverse=True)
    order = np.argsort(inverse.reshape(-1), kind="stable")
    rows_of = np.split(order, np.cumsum(np.bincount(inverse.reshape(-1), minlength=names.size))[:-1])
    return {str(names[g]): (ids_arr[rows_of[g]], vecs[rows_of[g]])
            for g in np.argsort(first, kind="stable").tolist()}
