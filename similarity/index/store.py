"""Persistence of an index (either layout) as ``.npz`` files: atomic, versioned, incremental.

Directory layout::

    base-GGGGGGGG.npz             full state of generation G and the meta (format, weights
                                  hash, policy, metric, k, dim, layout). Dense: ids, vectors,
                                  distances, top-k tables. Top-k: ids, squared norms, top-k
                                  tables and the name of its vectors file:
    base-GGGGGGGG-XXXXXXXXXXXX.vectors.npy
                                  (top-k) the base's float32 vectors, uncompressed, opened
                                  with ``mmap_mode="r"`` so processes share them through the
                                  page cache; written (or hard-linked from a distributed
                                  rebuild's input) before the .npz that names it
    base-GGGGGGGG-XXXXXXXXXXXX.low.npy
                                  (top-k, large enough bases) the rows' low coordinates in
                                  the base's basis (``basis_mean``, ``basis_axes`` in the
                                  .npz), float32, memory-mapped like the vectors: they prune
                                  every scan (similarity.index.prune)
    rebuild-XXXXXXXXXXXX/         a distributed rebuild's input (similarity.index.block_knn)
    delta-GGGGGGGG-SSSSSSSS.npz   one operation on top of base G, seq S = 1, 2, ...:
                                  op "upsert" (ids, vectors), "remove" (ids) or "seal"
    .w-XXXXXXXX.tmp               a file being written (removed by ``cleanup_temp``)
    .lock                         target of the optional ``lock()``

Loading takes the newest base and replays its deltas in seq order (dense: through the same
``DistanceMatrix`` methods; top-k: a delta also holds the lists its operation wrote, which
are written back, so a reader never recomputes and never re-reads the base's vectors);
deltas of other generations are ignored (and deleted as stale by the next write).
No base at all means an empty index (generation 0).

Every file is written to a temp file in the same directory (``np.savez`` given the open
file, never a name), flushed, fsynced, then published, and the directory is fsynced.
Deltas and bases are published with ``os.link`` (fails if the name exists) so two writers
that both read seq 41 cannot both write seq 42: the second gets ``ConcurrentWriterError``
(a ``MatrixError``) and must ``refresh`` and retry. Writers first ``refresh`` the matrix to
the newest state on disk, so sequential writers from different processes just work.

Compaction (``compact``, ``rebuild``, or automatically once a generation holds
``max_deltas`` deltas) first claims the next seq of the current generation with a "seal"
delta, so no writer can append to a generation that is being folded into a new base, then
publishes ``base-(G+1)``, then deletes the older files. A crash at any point leaves a
loadable state; a writer that finds a generation sealed without a newer base finishes the
compaction itself. A writer that managed to append to a generation after a newer base was
published (only possible once the seal was deleted) notices it, withdraws its delta and
raises ``ConcurrentWriterError``.

Fencing: a store given ``fence`` (a callable; the index writer passes its Redis lock's
check, see catalog.services.locking) calls it after a temp file is written and fsynced and
right before publishing it; if it raises, the temp file is removed and nothing is published,
so a writer whose distributed lock expired cannot add a file. ``similarity.failpoints`` names
that moment ``store.before_publish`` (crash tests pause and SIGKILL a writer there).

Everything is read with ``np.load(..., allow_pickle=False)`` and written with
``allow_pickle=False``: ids are int64, text is fixed-width unicode, no object arrays.

``MatrixStore`` is the facade; each role lives in a module of its own beside this one:
``store_listing`` (file names, listing a directory), ``store_format`` (what the files hold,
reading and checking it), ``store_publish`` (atomic publication, fencing, cleanup),
``store_loader`` and ``store_replay`` (a base, then its deltas), ``store_writer`` (logging an
operation, compaction), ``store_lock``, ``store_info`` and ``store_settings`` (``MatrixMeta``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from similarity.errors import MatrixError, StaleMatrixError
from similarity.index.block_knn import Block, merge_blocks, open_input, write_input
from similarity.index.dense import DistanceMatrix
from similarity.index.layout import LAYOUTS, NeighbourIndex, to_topk
from similarity.index.store_format import FORMAT_VERSION, OPS, base_layout
from similarity.index.store_info import store_info
from similarity.index.store_listing import (
    LOCK_NAME,
    TEMP_PREFIX,
    TEMP_SUFFIX,
    base_path,
    retry_while_changing,
    scan,
)
from similarity.index.store_loader import IndexLoader
from similarity.index.store_lock import exclusive_flock
from similarity.index.store_publish import (
    AtomicPublisher,
    ConcurrentWriterError,
    cleanup_temps,
    housekeeping,
)
from similarity.index.store_replay import replay
from similarity.index.store_settings import MatrixMeta
from similarity.index.store_writer import IndexWriter
from similarity.index.topk import ListChange, TopKIndex
from similarity.model.spec import EMBEDDING_DIM

__all__ = [
    "FORMAT_VERSION",
    "LOCK_NAME",
    "OPS",
    "TEMP_PREFIX",
    "TEMP_SUFFIX",
    "ConcurrentWriterError",
    "MatrixMeta",
    "MatrixStore",
]

class MatrixStore:
    """A directory holding one persisted ``DistanceMatrix`` (see the module docstring)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        meta: MatrixMeta,
        k: int = 10,
        max_items: int = 20_000,
        dim: int = EMBEDDING_DIM,
        max_deltas: int = 500,
        fence: Callable[[], None] | None = None,
        layout: str = "dense",
        engine: str = "numpy",
    ) -> None:
        if max_deltas < 1:
            raise MatrixError(f"max_deltas must be >= 1, got {max_deltas}")
        if layout not in LAYOUTS:
            raise MatrixError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        #: Layout of what ``rebuild`` builds and of an empty store; a stored base keeps its
        #: own layout until ``convert`` (see similarity.index.layout).
        self.layout = layout
        #: Ranking engine of the top-k layout's full scans: "numpy" or "faiss".
        self.engine = engine
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.meta = meta
        self.k = k
        self.max_items = max_items
        self.dim = dim
        self.max_deltas = max_deltas
        #: Called right before every file is published; raises to refuse the write (a writer
        #: whose distributed lock expired: see catalog.services.locking). None: no check.
        self.fence = fence
        # Collaborators: they read the attributes above on every call.
        self._loader = IndexLoader(self)
        self._writer = IndexWriter(self, AtomicPublisher(self))

    def __repr__(self) -> str:
        return f"MatrixStore({str(self.directory)!r}, meta={self.meta!r})"

    # ------------------------------------------------------------------ reading

    def load(self, *, allow_stale: bool = False) -> NeighbourIndex:
        """The newest state on disk (an empty matrix when there is none).

        Raises StaleMatrixError when the stored weights, policy, metric, format or dim differ
        from this store's; ``allow_stale=True`` loads anyway (for inspection only).
        """
        return retry_while_changing(
            lambda: self._loader.load_listing(scan(self.directory), allow_stale=allow_stale),
            self.directory, "loading")

    def refresh(self, matrix: NeighbourIndex) -> set[int]:
        """Bring ``matrix`` (in place) to the newest state on disk.

        Applies the deltas other processes wrote since, or reloads when the generation
        changed. Returns the products whose lists may have changed (on a reload, every
        product before and after).
        """
        self._check_matrix(matrix)
        if matrix.version is None and len(matrix):
            raise MatrixError(
                f"this matrix was not loaded from {self.directory}: use MatrixStore.load() "
                "or MatrixStore.rebuild()"
            )
        return retry_while_changing(lambda: self._refresh_once(matrix), self.directory,
                                    "refreshing")

    def _refresh_once(self, matrix: NeighbourIndex) -> set[int]:
        listing = scan(self.directory)
        version = matrix.version
        if (
            version is None
            or version[0] != listing.generation
            or version[1] > max(listing.deltas, default=0)
        ):
            fresh = self._loader.load_listing(listing, allow_stale=False)
            changed = set(matrix.ids.tolist()) | set(fresh.ids.tolist())
            matrix.replace_state(fresh)
            return changed
        return replay(matrix, listing, self.directory)

    def _check_matrix(self, matrix: NeighbourIndex) -> None:
        if matrix.metric != self.meta.metric or matrix.dim != self.dim:
            raise StaleMatrixError(
                f"matrix has metric {matrix.metric!r} and dim {matrix.dim}, the store expects "
                f"{self.meta.metric!r} and {self.dim}"
            )

    # ------------------------------------------------------------------ writing

    def upsert(self, matrix: NeighbourIndex, ids: Sequence[int] | np.ndarray,
               vectors: Any) -> set[int]:
        """Durably log an upsert, then apply it to ``matrix``; returns the changed set.

        A no-op (nothing new, identical vectors) writes nothing and returns an empty set.
        """
        self.refresh(matrix)
        ids_arr, vecs = matrix.plan_upsert(ids, vectors)
        if ids_arr.size == 0:
            return set()
        return self._writer.write(matrix, "upsert", ids_arr, vecs,
                                  lambda: matrix.apply_upsert(ids_arr, vecs))

    def remove(self, matrix: NeighbourIndex, ids: Iterable[int] | np.ndarray) -> set[int]:
        """Durably log a removal, then apply it; unknown ids are ignored (no write)."""
        self.refresh(matrix)
        present = matrix.plan_remove(ids)
        if present.size == 0:
            return set()
        return self._writer.write(matrix, "remove", present,
                                  np.empty((0, self.dim), np.float32),
                                  lambda: matrix.apply_remove(present))

    def compact(self, matrix: NeighbourIndex) -> None:
        """Fold the current state into ``base-(G+1)`` and delete the older files."""
        self.refresh(matrix)
        housekeeping(self.directory)
        self._writer.compact_current(matrix)

    def rebuild(self, ids: Sequence[int] | np.ndarray, vectors: Any) -> NeighbourIndex:
        """Full build (in this store's ``layout``), published as a fresh generation."""
        if self.layout == "topk":
            matrix: NeighbourIndex = TopKIndex.build(ids, vectors, metric=self.meta.metric,
                                                     k=self.k, dim=self.dim, engine=self.engine)
        else:
            matrix = DistanceMatrix.build(ids, vectors, metric=self.meta.metric, k=self.k,
                                          max_items=self.max_items, dim=self.dim)
        return self.publish_generation(matrix)

    def convert(self, matrix: NeighbourIndex, layout: str) -> NeighbourIndex:
        """Publish ``matrix``'s current state in ``layout`` as a fresh generation and return
        it (dense to top-k takes the lists as they are; top-k to dense recomputes)."""
        self.refresh(matrix)
        if layout == "topk":
            target: NeighbourIndex = to_topk(matrix, engine=self.engine)
        elif layout == "dense":
            target = DistanceMatrix.build(matrix.ids, matrix.vectors, metric=matrix.metric,
                                          k=matrix.k, max_items=self.max_items, dim=matrix.dim)
        else:
            raise MatrixError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        return self.publish_generation(target)

    def rebuild_input(self, ids: Sequence[int] | np.ndarray, vectors: Any) -> Path:
        """Write a distributed rebuild's input in this store's directory (see
        similarity.index.block_knn); block workers call ``knn_block`` on the returned directory."""
        return write_input(self.directory, ids, vectors, dim=self.dim, metric=self.meta.metric)

    def publish_rebuild(self, input_dir: Path, blocks: Iterable[Block]) -> TopKIndex:
        """Merge the blocks of a distributed rebuild and publish them as the next generation
        (top-k layout, fenced); the input's vectors become the base's by a hard link."""
        index = open_input(input_dir, k=self.k, metric=self.meta.metric, engine=self.engine)
        ids = index.ids
        nbr_ids, nbr_dist = merge_blocks(ids, blocks, self.k)
        index.apply_lists(ListChange(ids, nbr_ids, nbr_dist))
        self.publish_generation(index, vectors_from=Path(input_dir) / "vectors.npy")
        return index

    def publish_generation(self, matrix: NeighbourIndex,
                           vectors_from: Path | None = None) -> NeighbourIndex:
        """Seal the current generation and publish ``matrix`` as the next one (fenced)."""
        return self._writer.publish_generation(matrix, vectors_from)

    # ------------------------------------------------------------------ files

    def cleanup_temp(self) -> int:
        """Remove temp files left by crashed writers (not those a live writer holds)."""
        return cleanup_temps(scan(self.directory).temps)

    def lock(self, *, timeout: float | None = None) -> contextlib.AbstractContextManager[None]:
        """Exclusive ``fcntl.flock`` on ``<dir>/.lock``: serialises writers on one host."""
        return exclusive_flock(self.directory / LOCK_NAME, timeout=timeout)

    # ------------------------------------------------------------------ inspection

    def stored_layout(self) -> str | None:
        """The layout of the newest base on disk (None without one), reading only its
        ``layout`` member: a web process decides how to search without loading anything."""

        def newest() -> str | None:
            generation = scan(self.directory).generation
            return base_layout(base_path(self.directory, generation)) if generation else None

        return retry_while_changing(newest, self.directory, "reading")

    @staticmethod
    def info(path: str | os.PathLike[str]) -> dict[str, Any]:
        """Summary of a store directory without loading the distances.

        Keys: directory, n (after replaying deltas), n_base, dim, k, metric, policy,
        weights_sha256, format, generation, seq (newest delta), deltas (count), bytes (current
        base + deltas), bytes_total (every file in the directory).
        """
        return store_info(path)
