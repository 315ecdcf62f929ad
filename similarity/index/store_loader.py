"""Loading a store's state: its newest base (dense, or top-k with memory-mapped vectors),
checked against what the store expects, then that generation's deltas replayed."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from similarity.errors import MatrixError, StaleMatrixError
from similarity.index.dense import METRICS, DistanceMatrix
from similarity.index.layout import NeighbourIndex
from similarity.index.prune import Basis
from similarity.index.store_format import (
    BASE_KEYS,
    LOW_KEYS,
    TOPK_BASE_KEYS,
    BaseMeta,
    int_scalar,
    members,
    open_distances,
    open_npz,
    text_scalar,
)
from similarity.index.store_listing import LOW_RE, VECTORS_RE, Listing, base_path
from similarity.index.store_replay import replay
from similarity.index.store_settings import StoreSettings
from similarity.index.topk import TopKIndex


class IndexLoader:
    """Reads the index a store's listing describes; reads the store's settings on every call."""

    def __init__(self, store: StoreSettings) -> None:
        self._store = store

    def load_listing(self, listing: Listing, *, allow_stale: bool) -> NeighbourIndex:
        """The listed generation's base (an empty index without one) with its deltas."""
        gen = listing.generation
        if gen == 0:
            matrix = self._empty()
        else:
            matrix = self._read_base(base_path(self._store.directory, gen), gen,
                                     allow_stale=allow_stale)
        matrix.version = (gen, 0)
        matrix.sealed = False
        replay(matrix, listing, self._store.directory)
        return matrix

    def _empty(self) -> NeighbourIndex:
        s = self._store
        if s.layout == "topk":
            return TopKIndex(dim=s.dim, metric=s.meta.metric, k=s.k, engine=s.engine)
        return DistanceMatrix(dim=s.dim, metric=s.meta.metric, k=s.k, max_items=s.max_items)

    def _read_base(self, path: Path, gen: int, *, allow_stale: bool) -> NeighbourIndex:
        with open_npz(path) as npz:
            if "layout" in npz.files and text_scalar(npz["layout"], "layout") == "topk":
                keys = TOPK_BASE_KEYS + (LOW_KEYS if "low_file" in npz.files else ())
                return self._read_topk_base(members(npz, path, keys), path, gen,
                                            allow_stale=allow_stale)
            z = members(npz, path, [key for key in BASE_KEYS if key != "distances"])
            metric, dim = self._check_base(z, path, gen, allow_stale=allow_stale)
            n = z["ids"].shape[0]
            # Stream the N x N block straight into the matrix's storage (no second copy).
            with open_distances(npz, path, n) as f:
                try:
                    return DistanceMatrix.from_arrays(
                        z["ids"], z["vectors"], f, z["nbr_ids"], z["nbr_dist"],
                        metric=metric, k=self._store.k, max_items=self._store.max_items,
                        dim=dim,
                    )
                except MatrixError as e:
                    raise MatrixError(f"{path.name}: {e}") from e

    def _read_topk_base(self, z: dict[str, np.ndarray], path: Path, gen: int, *,
                        allow_stale: bool) -> TopKIndex:
        """A top-k base: small arrays from the .npz, vectors memory-mapped from the .npy."""
        metric, dim = self._check_base(z, path, gen, allow_stale=allow_stale)
        vectors = self._map_base_file(z, "vectors_file", VECTORS_RE, path, gen)
        low, basis = None, None
        if "low_file" in z:
            low = self._map_base_file(z, "low_file", LOW_RE, path, gen)
            basis = Basis(z["basis_mean"].astype(np.float64), z["basis_axes"].astype(np.float64))
        try:
            return TopKIndex.from_arrays(z["ids"], vectors, z["nbr_ids"], z["nbr_dist"],
                                         sq=z["sq"], metric=metric, k=self._store.k, dim=dim,
                                         engine=self._store.engine, low=low, basis=basis)
        except MatrixError as e:
            raise MatrixError(f"{path.name}: {e}") from e

    def _map_base_file(self, z: dict[str, np.ndarray], key: str, pattern: re.Pattern[str],
                       path: Path, gen: int) -> np.ndarray:
        """The .npy a base names under ``key``, opened with ``mmap_mode="r"``."""
        name = text_scalar(z[key], key)
        if not pattern.match(name) or not name.startswith(f"base-{gen:08d}-"):
            raise MatrixError(f"{path.name}: bad {key} name {name!r}")
        try:
            return np.load(self._store.directory / name, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as e:
            raise MatrixError(f"cannot read {name}: {e}") from e

    def _check_base(self, z: dict[str, np.ndarray], path: Path, gen: int, *,
                    allow_stale: bool) -> tuple[str, int]:
        """Compare a base's meta with the store's; returns its (metric, dim)."""
        stored = BaseMeta.read(z)
        diffs = stored.differences(BaseMeta.expected(self._store.meta, self._store.dim))
        if diffs and not allow_stale:
            raise StaleMatrixError(
                f"the matrix in {self._store.directory} is stale ({'; '.join(diffs)}): rebuild it"
            )
        if int_scalar(z["generation"], "generation") != gen:
            raise MatrixError(f"{path.name} holds generation {int(z['generation'])}")
        if stored.metric not in METRICS:
            raise MatrixError(f"{path.name}: unknown metric {stored.metric!r}")
        return stored.metric, stored.dim
