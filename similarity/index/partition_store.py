"""Persisting lists inside categories: ``PartitionedStore`` keeps a ``PartitionedIndex``
(``similarity.index.partitions``) as one ``MatrixStore`` per category under
``<directory>/categories/part-<hex of the category>``, each with its own generations, deltas
and fencing. A plain (catalog-wide) store's files in ``<directory>`` itself make the
partitioned store stale (and ``partitions_present`` tells a plain store the reverse), so
switching between the two is a rebuild.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from similarity.errors import MatrixError, StaleMatrixError
from similarity.index.layout import NeighbourIndex
from similarity.index.partitions import (
    PART_PREFIX,
    PARTITIONS_DIR,
    PartitionedIndex,
    group_by_category,
    partition_category,
    partition_name,
    partitioned,
)
from similarity.index.store import MatrixStore
from similarity.index.store_listing import LOCK_NAME, scan
from similarity.index.store_lock import exclusive_flock
from similarity.index.store_settings import MatrixMeta
from similarity.model.spec import EMBEDDING_DIM


class PartitionedStore:
    """A directory of per-category ``MatrixStore``s, kept like one (module docstring).

    ``layout``: "auto" (each partition dense up to ``max_items`` products, top-k beyond),
    "dense" or "topk". ``fence``, ``meta`` and ``dim`` apply to every partition's store.
    """

    def __init__(self, directory: str | os.PathLike[str], *, meta: MatrixMeta, k: int = 10,
                 max_items: int = 20_000, dim: int = EMBEDDING_DIM,
                 max_deltas: Callable[[str], int] | None = None,
                 fence: Callable[[], None] | None = None, layout: str = "auto",
                 engine: str = "numpy") -> None:
        if layout not in ("auto", "dense", "topk"):
            raise MatrixError(f"layout must be auto, dense or topk, got {layout!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.meta, self.k, self.max_items, self.dim = meta, k, max_items, dim
        self.fence, self.layout, self.engine = fence, layout, engine
        #: max_deltas of a partition's store by its layout (compaction rewrites top-k vectors)
        self.max_deltas = max_deltas or (lambda layout: 500)
        self._stores: dict[str, MatrixStore] = {}

    def __repr__(self) -> str:
        return f"PartitionedStore({str(self.directory)!r}, meta={self.meta!r})"

    @property
    def root(self) -> Path:
        return self.directory / PARTITIONS_DIR

    def layout_for(self, n: int) -> str:
        if self.layout != "auto":
            return self.layout
        return "topk" if n > self.max_items else "dense"

    def part_store(self, category: str, *, layout: str | None = None) -> MatrixStore:
        """The store of ``category``'s partition (one object per category, given this store's
        settings). ``layout``: what its rebuild or an empty partition gets; what is on disk
        keeps its own layout."""
        store = self._stores.get(category)
        if store is None:
            store = MatrixStore(self.root / partition_name(category), meta=self.meta, k=self.k,
                                layout=self.layout_for(0))
            if store.stored_layout() == "topk":
                store.layout = "topk"
            self._stores[category] = store
        if layout is not None:
            store.layout = layout
        store.meta, store.k, store.max_items, store.dim = self.meta, self.k, self.max_items, self.dim
        store.fence, store.engine = self.fence, self.engine
        store.max_deltas = self.max_deltas(store.layout)
        return store

    def categories_on_disk(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(partition_category(p.name) for p in self.root.iterdir()
                      if p.is_dir() and p.name.startswith(PART_PREFIX))

    # ------------------------------------------------------------------ reading

    def _check_not_plain(self) -> None:
        if scan(self.directory).generation:
            raise StaleMatrixError(f"{self.directory} holds lists across the catalog, not "
                                   "inside each category")

    def load(self, *, allow_stale: bool = False) -> PartitionedIndex:
        if not allow_stale:
            self._check_not_plain()
        parts = {cat: self.part_store(cat).load(allow_stale=allow_stale)
                 for cat in self.categories_on_disk()}
        index = PartitionedIndex(parts, dim=self.dim, metric=self.meta.metric, k=self.k)
        index.version = (0, 0)
        return index

    def refresh(self, matrix: NeighbourIndex) -> set[int]:
        """Bring every partition to the newest state on disk (new partitions loaded, removed
        ones dropped); returns the products whose lists may have changed."""
        matrix = partitioned(matrix)
        self._check_not_plain()
        changed: set[int] = set()
        on_disk = set(self.categories_on_disk())
        for category in set(matrix.parts) - on_disk:
            changed |= set(matrix.parts.pop(category).ids.tolist())
            self._stores.pop(category, None)
        for category in sorted(on_disk):
            store = self.part_store(category)
            part = matrix.parts.get(category)
            if part is None:
                matrix.parts[category] = part = store.load()
                changed |= set(part.ids.tolist())
            else:
                changed |= store.refresh(part)
        return changed

    def stored_layout(self) -> str | None:
        """The partitions' layout on disk: "dense" or "topk" when all share it, "mixed", or
        None without any partition."""
        layouts = {self.part_store(cat).stored_layout() for cat in self.categories_on_disk()}
        layouts.discard(None)
        if not layouts:
            return None
        return layouts.pop() if len(layouts) == 1 else "mixed"

    # ------------------------------------------------------------------ writing

    def upsert(self, matrix: NeighbourIndex, ids: Sequence[int] | np.ndarray, vectors: Any,
               categories: Sequence[str]) -> set[int]:
        """Durably add or move products; a product whose category changed leaves its old
        partition first. Returns the products whose lists may have changed."""
        matrix = partitioned(matrix)
        self.refresh(matrix)
        changed: set[int] = set()
        for category, (pids, vecs) in group_by_category(ids, vectors, categories).items():
            moving = [pid for pid in pids.tolist()
                      if matrix.category_of(pid) not in (None, category)]
            changed |= self._remove_held(matrix, moving)
            store, part = self._writable(matrix, category, pids)
            changed |= store.upsert(part, pids, vecs)
        return changed

    def _writable(self, matrix: PartitionedIndex, category: str,
                  incoming: np.ndarray) -> tuple[MatrixStore, NeighbourIndex]:
        """The partition's store and index, moved to the top-k layout first if the incoming
        products take a dense partition past ``max_items`` (its lists kept as they are)."""
        part = matrix.parts.get(category)
        size = 0 if part is None else len(part)
        grown = size + sum(1 for pid in incoming.tolist() if part is None or pid not in part)
        store = self.part_store(category, layout=None if part else self.layout_for(grown))
        if part is None:
            part = matrix.parts[category] = store.load()
        if part.layout == "dense" and self.layout_for(grown) == "topk":
            part = matrix.parts[category] = store.convert(part, "topk")
            store = self.part_store(category, layout="topk")
        return store, part

    def remove(self, matrix: NeighbourIndex, ids: Iterable[int] | np.ndarray) -> set[int]:
        """Durably remove products from their partitions; unknown ids are ignored."""
        matrix = partitioned(matrix)
        self.refresh(matrix)
        return self._remove_held(matrix, ids)

    def _remove_held(self, matrix: PartitionedIndex, ids: Iterable[int] | np.ndarray) -> set[int]:
        changed: set[int] = set()
        for category, pids in matrix.locate(ids).items():
            changed |= self.part_store(category).remove(matrix.parts[category], pids)
        return changed

    def compact(self, matrix: NeighbourIndex) -> None:
        matrix = partitioned(matrix)
        self.refresh(matrix)
        for category, part in matrix.parts.items():
            self.part_store(category).compact(part)

    def rebuild(self, ids: Sequence[int] | np.ndarray, vectors: Any, categories: Sequence[str],
                *, built: Mapping[str, NeighbourIndex] | None = None) -> PartitionedIndex:
        """Full build: every partition published as a fresh generation of its store, the
        partitions of categories no longer present and a plain store's files removed.
        ``built``: partitions the caller already published this way (a distributed rebuild's
        top-k partitions, ``part_store(category).publish_rebuild``); the others are built here."""
        groups = group_by_category(ids, vectors, categories)
        parts: dict[str, NeighbourIndex] = dict(built or {})
        for category, (pids, vecs) in sorted(groups.items()):
            if category not in parts:
                parts[category] = self.part_store(category, layout=self.layout_for(pids.size)) \
                    .rebuild(pids, vecs)
        for category in set(self.categories_on_disk()) - set(groups):
            self._check_fence()
            shutil.rmtree(self.root / partition_name(category))
            self._stores.pop(category, None)
        plain_files_remove(self.directory, self._check_fence)
        index = PartitionedIndex(parts, dim=self.dim, metric=self.meta.metric, k=self.k)
        index.version = (0, 0)
        return index

    def _check_fence(self) -> None:
        if self.fence is not None:
            self.fence()

    # ------------------------------------------------------------------ files

    def cleanup_temp(self) -> int:
        return sum(self.part_store(cat).cleanup_temp() for cat in self.categories_on_disk())

    def lock(self, *, timeout: float | None = None) -> contextlib.AbstractContextManager[None]:
        return exclusive_flock(self.directory / LOCK_NAME, timeout=timeout)


def plain_files_remove(directory: Path, fence: Callable[[], None] | None = None) -> int:
    """Remove a plain store's bases and deltas from ``directory`` (once a partitioned index
    replaced it); returns how many files went."""
    doomed = list(_plain_files(directory))
    if doomed and fence is not None:
        fence()
    for path in doomed:
        path.unlink(missing_ok=True)
    return len(doomed)


def partitions_remove(directory: Path, fence: Callable[[], None] | None = None) -> bool:
    """Remove a partitioned index from ``directory`` (once a plain store replaced it)."""
    root = Path(directory) / PARTITIONS_DIR
    if not root.is_dir():
        return False
    if fence is not None:
        fence()
    shutil.rmtree(root)
    return True


def _plain_files(directory: Path) -> Iterator[Path]:
    for path in Path(directory).iterdir():
        if path.is_file() and path.name.startswith(("base-", "delta-")):
            yield path

