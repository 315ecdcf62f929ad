"""The dense layout's storage: the capacity-based arrays (ids, raw and working vectors, the
N x N distances, the top-k tables), their geometric growth, moving a row into a hole, and the
one working-memory budget (``BLOCK_BYTES``) every blockwise pass is sized by."""

from __future__ import annotations

import math
from typing import IO, Any

import numpy as np

from similarity.errors import MatrixError
from similarity.index.dense_inputs import METRICS, check_int, validate_vectors
from similarity.index.exact import raw_sq, work_vectors
from similarity.model.spec import EMBEDDING_DIM

NO_ID = -1
# The one working-memory budget: a block of rows of distances when building or recomputing,
# a chunk of working vectors, a chunk of a streamed distance matrix.
BLOCK_BYTES = 32 * 2**20
_GROWTH = 1.25
_MIN_GROWTH = 64


def format_bytes(n: float) -> str:
    """``n`` bytes for a message: "512 B", "1.5 MB" (up to GB)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GB"  # pragma: no cover


def memory_needed(n: int, dim: int) -> int:
    """Bytes held by a matrix of ``n`` products: distances, raw and working vectors, top-k."""
    return 4 * n * n + 12 * n * dim + 8 * n


def read_exact(stream: IO[bytes], nbytes: int) -> bytes | None:
    """Exactly ``nbytes`` from ``stream``, or None if it ends first."""
    chunks, got = [], 0
    while got < nbytes:
        chunk = stream.read(nbytes - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


class DenseStorage:
    """The arrays of a dense matrix and their capacity; rows [0, len) are the products.

    ``version`` and ``sealed`` are bookkeeping for ``similarity.index.store.MatrixStore``.
    """

    def __init__(
        self,
        *,
        dim: int = EMBEDDING_DIM,
        metric: str = "euclidean",
        k: int = 10,
        max_items: int = 20_000,
        headroom: float = 0.05,
    ) -> None:
        if metric not in METRICS:
            raise MatrixError(f"metric must be one of {METRICS}, got {metric!r}")
        if not 0 <= headroom <= 10:
            raise MatrixError(f"headroom must be between 0 and 10, got {headroom!r}")
        self.headroom = float(headroom)
        self.dim = check_int(dim, "dim", minimum=1)
        self.metric = metric
        self.k = check_int(k, "k", minimum=1)
        self.max_items = check_int(max_items, "max_items")
        self.version: tuple[int, int] | None = None
        self.sealed = False
        self._n = 0
        self._index: dict[int, int] = {}
        self._allocate(0)

    def _allocate(self, cap: int) -> None:
        self._cap = cap
        self._ids = np.empty(cap, np.int64)
        self._vecs = np.empty((cap, self.dim), np.float32)
        self._work = np.empty((cap, self.dim), np.float64)
        self._sq = np.empty(cap, np.float64)
        self._d = np.empty((cap, cap), np.float32)
        self._nbr_ids = np.full((cap, self.k), NO_ID, np.int64)
        self._nbr_dist = np.full((cap, self.k), np.inf, np.float32)

    def _initial_capacity(self, n: int) -> int:
        spare = max(_MIN_GROWTH, math.ceil(n * self.headroom))
        return max(n, min(self.max_items, n + spare))

    def _reserve(self, needed: int) -> None:
        """Make room for ``needed`` products, growing geometrically (amortised O(1) copies)."""
        if needed <= self._cap:
            return
        new_cap = max(needed, self._cap + _MIN_GROWTH, int(self._cap * _GROWTH))
        new_cap = min(new_cap, max(self.max_items, needed))
        n = self._n
        old = (self._ids, self._vecs, self._work, self._sq, self._d, self._nbr_ids, self._nbr_dist)
        self._allocate(new_cap)
        o_ids, o_vecs, o_work, o_sq, o_d, o_nids, o_ndist = old
        self._ids[:n] = o_ids[:n]
        self._vecs[:n] = o_vecs[:n]
        self._work[:n] = o_work[:n]
        self._sq[:n] = o_sq[:n]
        self._d[:n, :n] = o_d[:n, :n]
        self._nbr_ids[:n] = o_nids[:n]
        self._nbr_dist[:n] = o_ndist[:n]

    @property
    def capacity(self) -> int:
        """Rows allocated (>= len(self))."""
        return self._cap

    def _set_rows(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        """Allocate for ``ids`` (with headroom) and store them, their vectors and work copies."""
        n = ids.size
        self._allocate(self._initial_capacity(n))
        self._ids[:n] = ids
        self._index = {i: j for j, i in enumerate(ids.tolist())}
        self._vecs[:n] = vecs
        self._fill_work(n)

    def _swap_remove(self, i: int) -> None:
        last = self._n - 1
        if i != last:
            moved = int(self._ids[last])
            self._ids[i] = moved
            self._index[moved] = i
            self._vecs[i] = self._vecs[last]
            self._work[i] = self._work[last]
            self._sq[i] = self._sq[last]
            self._nbr_ids[i] = self._nbr_ids[last]
            self._nbr_dist[i] = self._nbr_dist[last]
            # Row then column: d[i, i] ends as d[last, last] == 0.
            self._d[i, : last + 1] = self._d[last, : last + 1]
            self._d[: last + 1, i] = self._d[: last + 1, last]
        self._n = last

    def _as_vectors(self, vectors: Any, m: int) -> np.ndarray:
        return validate_vectors(vectors, m, self.dim, self.metric)

    def _prepare_work(self, vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        work = work_vectors(vecs, raw_sq(vecs), self.metric)
        return work, np.einsum("ij,ij->i", work, work)

    def _fill_work(self, n: int) -> None:
        """Compute the float64 working vectors and squared norms of rows [0, n), in chunks."""
        step = max(1, BLOCK_BYTES // (8 * self.dim))
        for s in range(0, n, step):
            e = min(n, s + step)
            self._work[s:e], self._sq[s:e] = self._prepare_work(self._vecs[s:e])

    def _read_distances(self, stream: IO[bytes], n: int) -> None:
        """Read n x n little-endian float32 values (C order) into the matrix, in chunks."""
        rows = max(1, BLOCK_BYTES // max(4 * n, 1))
        for s in range(0, n, rows):
            r = min(rows, n - s)
            data = read_exact(stream, 4 * r * n)
            if data is None:
                raise MatrixError(f"distances are truncated: expected {n}x{n} float32 values")
            self._d[s : s + r, :n] = np.frombuffer(data, dtype="<f4").reshape(r, n)

    def _rows_block(self, n: int) -> int:
        return max(1, BLOCK_BYTES // (8 * max(n, 1)))
