"""Writing a store: one operation logged as a delta, and compaction into a new base.

Dense: an operation is logged, then applied (replaying recomputes it). Top-k: it is applied,
then logged with the lists it wrote. Compaction first claims the generation's next seq with a
"seal" delta, then publishes ``base-(G+1)`` (top-k: its .npy files first, the .npz naming
them last), then deletes the older files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from similarity.index.dense import DistanceMatrix
from similarity.index.layout import NeighbourIndex
from similarity.index.store_format import delta_arrays, meta_arrays, op_of, unicode_scalar
from similarity.index.store_listing import RETRIES, base_npy_name, base_path, delta_path, scan
from similarity.index.store_publish import (
    AtomicPublisher,
    ConcurrentWriterError,
    housekeeping,
    remove_stale,
)
from similarity.index.store_settings import StoreSettings
from similarity.index.topk import TopKIndex

# Rows per block when a top-k base's vectors and low coordinates are written.
_VECTOR_BLOCK = 65_536


class IndexWriter:
    """Logs operations and publishes generations; reads the store's settings on every call."""

    def __init__(self, store: StoreSettings, publisher: AtomicPublisher) -> None:
        self._store = store
        self._publisher = publisher

    def write(self, matrix: NeighbourIndex, op: str, ids: np.ndarray, vecs: np.ndarray,
              apply: Callable[[], set[int]]) -> set[int]:
        """Log and apply one operation.

        Dense: log, then apply (replaying recomputes). Top-k: apply, then log the lists it
        wrote with it. Either way a failure after the first step leaves the object marked
        for a reload from disk on its next use.
        """
        self._ready_to_log(matrix)
        if isinstance(matrix, TopKIndex):
            try:
                changed = apply()
                self._log(matrix, op, ids, vecs, self._list_arrays(matrix, changed))
            except BaseException:
                matrix.version = (-1, -1)
                raise
            return changed
        self._log(matrix, op, ids, vecs, {})
        try:
            return apply()
        except BaseException:
            matrix.version = (-1, -1)  # the op is durable but not applied in memory
            raise

    def compact_current(self, matrix: NeighbourIndex) -> None:
        """Seal the matrix's generation (unless sealed) and publish it as the next one."""
        assert matrix.version is not None
        gen, seq = matrix.version
        if not matrix.sealed:
            self._seal(gen, seq + 1, matrix.dim)
            matrix.version = (gen, seq + 1)
            matrix.sealed = True
        self._publish_base(matrix, gen + 1)
        self._adopt(matrix, gen + 1)

    def publish_generation(self, matrix: NeighbourIndex,
                           vectors_from: Path | None = None) -> NeighbourIndex:
        """Seal the current generation on disk and publish ``matrix`` as the next one."""
        directory = self._store.directory
        for _ in range(RETRIES):
            try:
                housekeeping(directory)
                listing = scan(directory)
                gen = listing.generation
                last = max(listing.deltas, default=0)
                if last == 0 or op_of(listing.deltas[last]) != "seal":
                    self._seal(gen, last + 1, self._store.dim)
                self._publish_base(matrix, gen + 1, vectors_from)
            except (ConcurrentWriterError, FileNotFoundError):
                continue
            self._adopt(matrix, gen + 1)
            return matrix
        raise ConcurrentWriterError(
            f"concurrent writer: could not publish a rebuild in {directory} after "
            f"{RETRIES} attempts"
        )

    def _adopt(self, matrix: NeighbourIndex, gen: int) -> None:
        """The matrix is base ``gen`` now; the older files go."""
        matrix.version = (gen, 0)
        matrix.sealed = False
        remove_stale(self._store.directory)

    def _ready_to_log(self, matrix: NeighbourIndex) -> None:
        """Compact first when the generation is empty, sealed or full of deltas."""
        assert matrix.version is not None
        housekeeping(self._store.directory)
        gen, seq = matrix.version
        if gen == 0 or matrix.sealed or seq >= self._store.max_deltas:
            self.compact_current(matrix)

    def _log(self, matrix: NeighbourIndex, op: str, ids: np.ndarray, vecs: np.ndarray,
             extra: dict[str, np.ndarray]) -> None:
        assert matrix.version is not None
        gen, seq = matrix.version
        path = delta_path(self._store.directory, gen, seq + 1)
        arrays = {**delta_arrays(gen, seq + 1, op, ids, vecs), **extra}
        self._publisher.publish(path, arrays, exclusive=True)
        self._publisher.check_not_superseded(path, gen)
        matrix.version = (gen, seq + 1)
        matrix.sealed = False

    @staticmethod
    def _list_arrays(index: TopKIndex, changed: set[int]) -> dict[str, np.ndarray]:
        assert index.last_change is not None
        lists = index.last_change
        return {"changed": np.array(sorted(changed), np.int64), "list_ids": lists.ids,
                "list_nbr_ids": lists.nbr_ids, "list_nbr_dist": lists.nbr_dist}

    def _seal(self, gen: int, seq: int, dim: int) -> None:
        """Claim ``seq`` of ``gen`` with a "seal" delta, so no writer appends to it."""
        path = delta_path(self._store.directory, gen, seq)
        empty = np.empty((0, dim), np.float32)
        self._publisher.publish(path, delta_arrays(gen, seq, "seal", np.empty(0, np.int64), empty),
                                exclusive=True)
        self._publisher.check_not_superseded(path, gen)

    def _publish_base(self, matrix: NeighbourIndex, gen: int,
                      vectors_from: Path | None = None) -> None:
        """Publish ``base-gen`` (top-k: its vectors .npy first, written or hard-linked from
        ``vectors_from``; the .npz naming it is the commit point)."""
        ids, nbr_ids, nbr_dist = matrix.top_k_table()
        arrays = {**meta_arrays(matrix, gen, self._store.meta), "ids": ids, "nbr_ids": nbr_ids,
                  "nbr_dist": nbr_dist}
        if isinstance(matrix, DistanceMatrix):
            arrays["vectors"] = matrix.vectors
            arrays["distances"] = matrix.distances  # a strided view: written in chunks
        else:
            assert isinstance(matrix, TopKIndex)
            arrays.update(self._publish_topk_files(matrix, gen, vectors_from))
        self._publisher.publish(base_path(self._store.directory, gen), arrays, exclusive=True)

    def _publish_topk_files(self, index: TopKIndex, gen: int,
                            vectors_from: Path | None) -> dict[str, np.ndarray]:
        """A top-k base's .npy files; returns the .npz members that name them."""
        name = base_npy_name(gen, "vectors")
        if vectors_from is None:
            self._publisher.publish_npy(name, (len(index), index.dim),
                                        index.vector_blocks(_VECTOR_BLOCK))
        else:
            self._publisher.link(vectors_from, self._store.directory / name)
        return {"vectors_file": unicode_scalar(name), "sq": index.sq_norms,
                **self._publish_low(index, gen)}

    def _publish_low(self, index: TopKIndex, gen: int) -> dict[str, np.ndarray]:
        """The base's low coordinates file (basis refitted on the live rows when needed);
        returns the arrays naming it, or none for an index too small to prune."""
        index.refit_for_base()
        basis = index.basis
        if basis is None:
            return {}
        name = base_npy_name(gen, "low")
        self._publisher.publish_npy(name, (len(index), basis.dims),
                                    index.low_blocks(_VECTOR_BLOCK))
        return {"low_file": unicode_scalar(name), "basis_mean": basis.mean,
                "basis_axes": basis.axes}
