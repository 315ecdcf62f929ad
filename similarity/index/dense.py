"""In-memory symmetric distance matrix with incrementally maintained top-k neighbour lists.

``DistanceMatrix`` holds, for N products:

- ``ids``: int64 product ids (non-negative, unique);
- ``vectors``: the raw float32 embeddings (N x dim);
- ``distances``: a symmetric float32 N x N matrix with an exact zero diagonal;
- every product's top-k neighbour list (ids and distances, sorted by (distance, id)).

Distances are computed the vectorised way in float64 (squared norms + one matrix product)
and stored as float32; every stored value equals the canonical distance of
``similarity.index.exact`` (entries the norm formula cannot decide are recomputed from the
difference vectors), so identical vectors are at distance exactly 0, exact ties stay exact
ties, and the top-k layout (``similarity.index.topk``) reports the very same lists.
``metric="cosine"`` means 1 - cosine similarity, computed on L2-normalised copies (the raw
vectors are what is stored and returned).

Ordering everywhere is by (float32 distance, product id): ties are broken by the smaller id.

Storage is capacity based: a built or loaded matrix keeps ``headroom`` (5 %, at least 64
rows) of spare rows, and grows geometrically (x1.25) up to ``max_items`` when they run out,
so adding one product does not copy the N x N matrix; removal moves the last row/column
into the hole (O(N)). The float64 working copy of the vectors (normalised for
cosine) is kept next to the raw float32 ones, so one addition costs one matrix-vector
product against the N stored vectors.

Changed sets: ``upsert`` and ``remove`` return the ids of exactly the products whose
neighbour list changed, where a list is the ordered sequence of (neighbour id, distance)
pairs. Products added by the call are always in the set (even a lone product whose list
stays empty); upserting a vector bit-identical to the stored one is a no-op.

Duplicated ids within one ``upsert`` call: the last occurrence wins.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import IO, Any, TypeGuard

import numpy as np

from similarity.errors import MatrixError, MatrixFullError
from similarity.index.exact import raw_sq, settle_dense, work_vectors
from similarity.index.inplace import adopt_state
from similarity.model.spec import EMBEDDING_DIM

METRICS = ("euclidean", "cosine")

_INT64_MAX = int(np.iinfo(np.int64).max)
_NO_ID = -1
# The one working-memory budget: a block of rows of distances when building or recomputing,
# a chunk of working vectors, a chunk of a streamed distance matrix.
BLOCK_BYTES = 32 * 2**20
_GROWTH = 1.25
_MIN_GROWTH = 64
# Upserts of more products than this recompute every list instead of merging candidates
# (merging holds up to N x (k + m) candidates; the index takes batches of up to ~300).
_MERGE_MAX = 512
# Larger magnitudes could overflow a float32 distance; embeddings are O(1).
_MAX_ABS = 1e18


class UnknownProductError(MatrixError, KeyError):
    """The product id is not in the matrix (a ``KeyError`` and a ``MatrixError``)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def is_int(value: object) -> TypeGuard[int | np.integer]:
    """A Python or numpy integer, not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_int(value: object, name: str, *, minimum: int = 0) -> int:
    """``value`` as an int if it is an integer (not a bool) >= ``minimum``; else MatrixError."""
    if not is_int(value) or int(value) < minimum:
        kind = "positive" if minimum == 1 else "non-negative" if minimum == 0 else f">= {minimum}"
        raise MatrixError(f"{name} must be a {kind} integer, got {value!r}")
    return int(value)


def _format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GB"  # pragma: no cover


def memory_needed(n: int, dim: int) -> int:
    """Bytes held by a matrix of ``n`` products: distances, raw and working vectors, top-k."""
    return 4 * n * n + 12 * n * dim + 8 * n


def as_ids(ids: Iterable[int] | np.ndarray, *, what: str = "ids") -> np.ndarray:
    """Validate product ids and return them as a 1-D int64 array.

    Ids must be integers representable as int64 and non-negative.
    """
    if isinstance(ids, (str, bytes)):
        raise MatrixError(f"{what} must be a sequence of integers, got a string")
    arr = np.asarray(ids if isinstance(ids, (Sequence, np.ndarray)) else list(ids))
    if arr.ndim != 1:
        raise MatrixError(f"{what} must be a 1-D sequence of integers, got shape {arr.shape}")
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "O" and all(isinstance(x, (int, np.integer)) for x in arr.tolist()):
            raise MatrixError(f"{what} must fit in int64 (0 .. {_INT64_MAX}), got {arr.tolist()}")
        raise MatrixError(f"{what} must be integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and int(arr.max()) > _INT64_MAX:
        raise MatrixError(f"{what} must fit in int64 (0 .. {_INT64_MAX}), got {int(arr.max())}")
    out = arr.astype(np.int64, copy=True)
    if (out < 0).any():
        bad = out[out < 0][:5].tolist()
        raise MatrixError(f"{what} must be non-negative, got {bad}")
    return out


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


def validate_vectors(vectors: Any, m: int, dim: int, metric: str) -> np.ndarray:
    """``vectors`` as a fresh float32 (m x dim) array of finite, bounded values (non-zero
    rows for cosine); MatrixError otherwise. One 1-D vector is accepted when m == 1."""
    arr = np.asarray(vectors)
    if arr.ndim == 1 and m == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape != (m, dim):
        raise MatrixError(
            f"vectors must have shape ({m}, {dim}) for {m} id(s), got {arr.shape}"
        )
    if arr.dtype.kind not in "fiu":
        raise MatrixError(f"vectors must be real numbers, got dtype {arr.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.array(arr, dtype=np.float32, copy=True)
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        raise MatrixError(
            f"vectors contain NaN or inf (row(s) {np.flatnonzero(bad)[:5].tolist()})"
        )
    if m and float(np.abs(out).max()) > _MAX_ABS:
        raise MatrixError(f"vector values must be within ±{_MAX_ABS:g}")
    if metric == "cosine" and m:
        zero = ~(out != 0).any(axis=1)
        if zero.any():
            raise MatrixError(
                "cosine metric cannot use an all-zero vector "
                f"(row(s) {np.flatnonzero(zero)[:5].tolist()})"
            )
    return out


def last_wins(ids: np.ndarray) -> np.ndarray:
    """Positions of the last occurrence of every distinct id, in call order."""
    m = ids.size
    _, pos_rev = np.unique(ids[::-1], return_index=True)
    return np.sort(m - 1 - pos_rev)


def _symmetrise_square(sq: np.ndarray) -> None:
    """Make a square block symmetric in place (upper triangle wins), zero its diagonal."""
    upper = np.triu_indices(sq.shape[0], 1)
    sq[upper[1], upper[0]] = sq[upper]
    np.fill_diagonal(sq, 0)


def _topk_block(block: np.ndarray, ids: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``block`` (b x n float32), the ``kk`` smallest entries by (distance, id).

    Entries to exclude must already be +inf and ``kk`` must not exceed the number of finite
    entries of any row. Ties at the k-th boundary keep the smaller ids.
    """
    b, n = block.shape
    if kk == 0 or b == 0:
        return np.empty((b, 0), np.int64), np.empty((b, 0), np.float32)
    if kk < n:
        part = np.argpartition(block, kk - 1, axis=1)[:, :kk]
    else:
        part = np.broadcast_to(np.arange(n), (b, n)).copy()
    vals = np.take_along_axis(block, part, axis=1)
    cand_ids = ids[part]
    order = np.lexsort((cand_ids, vals), axis=1)
    out_ids = np.take_along_axis(cand_ids, order, axis=1)
    out_d = np.take_along_axis(vals, order, axis=1)
    if kk < n:
        kth = out_d[:, -1]
        counts = np.count_nonzero(block <= kth[:, None], axis=1)
        # Rows with more entries equal to the k-th value than places: argpartition picked an
        # arbitrary subset of the tied entries; redo them keeping the smallest ids.
        for r in np.flatnonzero(counts > kk):
            row = block[r]
            cand = np.flatnonzero(row <= kth[r])
            o = np.lexsort((ids[cand], row[cand]))[:kk]
            out_ids[r] = ids[cand[o]]
            out_d[r] = row[cand[o]]
    return out_ids, out_d


class DistanceMatrix:
    """Symmetric float32 distance matrix over product vectors, with top-k lists kept current.

    ``version`` and ``sealed`` are bookkeeping for ``similarity.index.store.MatrixStore``: the
    (generation, seq) of the persisted state this object reflects, or None when it was not
    loaded from a store.
    """

    layout = "dense"

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

    # ------------------------------------------------------------------ storage

    def _allocate(self, cap: int) -> None:
        self._cap = cap
        self._ids = np.empty(cap, np.int64)
        self._vecs = np.empty((cap, self.dim), np.float32)
        self._work = np.empty((cap, self.dim), np.float64)
        self._sq = np.empty(cap, np.float64)
        self._d = np.empty((cap, cap), np.float32)
        self._nbr_ids = np.full((cap, self.k), _NO_ID, np.int64)
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

    # ------------------------------------------------------------------ validation

    def _as_vectors(self, vectors: Any, m: int) -> np.ndarray:
        return validate_vectors(vectors, m, self.dim, self.metric)

    def plan_upsert(self, ids: Sequence[int] | np.ndarray, vectors: Any) -> tuple[
        np.ndarray, np.ndarray
    ]:
        """Validate an upsert and reduce it to the rows that would change something.

        Returns (ids int64, vectors float32): duplicates resolved (last wins), rows whose
        vector is identical to the stored one dropped. Raises MatrixError on bad input and
        MatrixFullError when the new products would exceed ``max_items``. Changes nothing.
        """
        ids_arr = as_ids(ids)
        vecs = self._as_vectors(vectors, ids_arr.size)
        if ids_arr.size == 0:
            return ids_arr, vecs
        keep = last_wins(ids_arr)
        ids_arr, vecs = ids_arr[keep], vecs[keep]
        idx = np.fromiter((self._index.get(i, -1) for i in ids_arr.tolist()), np.int64,
                          ids_arr.size)
        existing = idx >= 0
        if existing.any():
            same = np.zeros(ids_arr.size, bool)
            same[existing] = (self._vecs[idx[existing]] == vecs[existing]).all(axis=1)
            ids_arr, vecs, existing = ids_arr[~same], vecs[~same], existing[~same]
        n_new = int((~existing).sum())
        if self._n + n_new > self.max_items:
            total = self._n + n_new
            raise MatrixFullError(
                f"cannot add {n_new} product(s) to a matrix holding {self._n}: the limit is "
                f"max_items={self.max_items}; {total} products would need about "
                f"{_format_bytes(memory_needed(total, self.dim))} of memory "
                f"({total}x{total} float32 distances plus vectors)"
            )
        return ids_arr, vecs

    def plan_remove(self, ids: Iterable[int] | np.ndarray) -> np.ndarray:
        """Validate a removal; return the distinct ids that are present (sorted)."""
        ids_arr = as_ids(ids)
        present = [i for i in np.unique(ids_arr).tolist() if i in self._index]
        return np.asarray(present, dtype=np.int64)

    # ------------------------------------------------------------------ distances

    def _prepare_work(self, vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        work = work_vectors(vecs, raw_sq(vecs), self.metric)
        return work, np.einsum("ij,ij->i", work, work)

    def _pair_distances(
        self, a: np.ndarray, a_sq: np.ndarray, b: np.ndarray, b_sq: np.ndarray
    ) -> np.ndarray:
        """Canonical float32 (len(a) x len(b)) distances between working vectors
        (see ``similarity.index.exact``): a float64 norm formula, settled exactly where needed."""
        g = a @ b.T
        if g.size == 0:
            return g.astype(np.float32)
        g *= -2.0
        if self.metric == "euclidean":
            g += a_sq[:, None]
            g += b_sq[None, :]
        else:
            g += 2.0  # unit working vectors: s = 2 - 2 a.b
        np.maximum(g, 0.0, out=g)
        return settle_dense(g, a, a_sq, b, b_sq, self.metric)

    def _rows_block(self, n: int) -> int:
        return max(1, BLOCK_BYTES // (8 * max(n, 1)))

    def _recompute_rows(self, rows: np.ndarray) -> None:
        """Recompute the top-k lists of ``rows`` from the stored distances."""
        n = self._n
        kk = min(self.k, n - 1)
        ids = self._ids[:n]
        step = self._rows_block(n)
        for s in range(0, rows.size, step):
            r = rows[s : s + step]
            block = self._d[r, :n]  # fancy indexing: a copy
            block[np.arange(r.size), r] = np.inf
            nid, nd = _topk_block(block, ids, kk)
            self._nbr_ids[r, :kk] = nid
            self._nbr_dist[r, :kk] = nd
            self._nbr_ids[r, kk:] = _NO_ID
            self._nbr_dist[r, kk:] = np.inf

    # ------------------------------------------------------------------ construction

    @classmethod
    def build(
        cls,
        ids: Sequence[int] | np.ndarray,
        vectors: Any,
        *,
        metric: str = "euclidean",
        k: int = 10,
        max_items: int = 20_000,
        dim: int = EMBEDDING_DIM,
        headroom: float = 0.05,
    ) -> DistanceMatrix:
        """Full rebuild from scratch, vectorised in row blocks.

        Peak memory is the final matrix (with its ``headroom`` spare rows) plus the float64
        working vectors plus one block of rows (``BLOCK_BYTES`` of float64 and its
        by-products); only the upper triangle is computed, then mirrored. Duplicate ids: the
        last wins.
        """
        m = cls(dim=dim, metric=metric, k=k, max_items=max_items, headroom=headroom)
        ids_arr = as_ids(ids)
        vecs = m._as_vectors(vectors, ids_arr.size)
        keep = last_wins(ids_arr)
        ids_arr, vecs = ids_arr[keep], vecs[keep]
        n = ids_arr.size
        if n > m.max_items:
            raise MatrixFullError(
                f"cannot build a matrix of {n} products: the limit is max_items={m.max_items}; "
                f"it would need about {_format_bytes(memory_needed(n, m.dim))} of memory"
            )
        m._set_rows(ids_arr, vecs)
        del vecs
        m._fill_distances(n)
        m._n = n
        m._recompute_rows(np.arange(n))
        return m

    def _set_rows(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        """Allocate for ``ids`` (with headroom) and store them, their vectors and work copies."""
        n = ids.size
        self._allocate(self._initial_capacity(n))
        self._ids[:n] = ids
        self._index = {i: j for j, i in enumerate(ids.tolist())}
        self._vecs[:n] = vecs
        self._fill_work(n)

    def _fill_distances(self, n: int) -> None:
        """All pairwise distances of rows [0, n), upper triangle by row blocks, mirrored."""
        step = self._rows_block(n)
        for s in range(0, n, step):
            e = min(n, s + step)
            blk = self._pair_distances(self._work[s:e], self._sq[s:e], self._work[s:n],
                                       self._sq[s:n])
            _symmetrise_square(blk[:, : e - s])
            self._d[s:e, s:n] = blk
            self._d[s:n, s:e] = blk.T

    @classmethod
    def from_arrays(
        cls,
        ids: np.ndarray,
        vectors: np.ndarray,
        distances: np.ndarray | IO[bytes],
        nbr_ids: np.ndarray | None = None,
        nbr_dist: np.ndarray | None = None,
        *,
        metric: str = "euclidean",
        k: int = 10,
        max_items: int = 20_000,
        dim: int = EMBEDDING_DIM,
        headroom: float = 0.05,
    ) -> DistanceMatrix:
        """Restore persisted arrays without recomputing distances.

        ``distances`` is a float32 N x N array, or a binary stream positioned at N x N
        little-endian float32 values in C order (read straight into the matrix's storage,
        so loading never holds two copies). The top-k tables are recomputed when missing or
        built for another k.
        """
        m = cls(dim=dim, metric=metric, k=k, max_items=max_items, headroom=headroom)
        ids_arr = as_ids(ids)
        n = ids_arr.size
        vecs = m._as_vectors(vectors, n)
        if np.unique(ids_arr).size != n:
            raise MatrixError("ids contain duplicates")
        m._set_rows(ids_arr, vecs)
        del vecs
        m._restore_distances(distances, n)
        m._n = n
        m._restore_tables(nbr_ids, nbr_dist)
        return m

    def _restore_distances(self, distances: np.ndarray | IO[bytes], n: int) -> None:
        if isinstance(distances, np.ndarray):
            if distances.shape != (n, n) or distances.dtype != np.float32:
                raise MatrixError(
                    f"distances must be float32 of shape ({n}, {n}), "
                    f"got {distances.dtype} {distances.shape}"
                )
            self._d[:n, :n] = distances
        else:
            self._read_distances(distances, n)
        if n and (np.diagonal(self._d[:n, :n]) != 0).any():
            raise MatrixError("distances must have a zero diagonal")

    def _restore_tables(self, nbr_ids: np.ndarray | None, nbr_dist: np.ndarray | None) -> None:
        """Take the stored top-k tables if they fit this matrix's k, else recompute them."""
        n = self._n
        if (
            nbr_ids is not None
            and nbr_dist is not None
            and nbr_ids.shape == (n, self.k)
            and nbr_dist.shape == (n, self.k)
            and nbr_ids.dtype == np.int64
            and nbr_dist.dtype == np.float32
        ):
            self._nbr_ids[:n] = nbr_ids
            self._nbr_dist[:n] = nbr_dist
        else:
            self._recompute_rows(np.arange(n))

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

    def replace_state(self, other: Any) -> None:
        """Make this object hold ``other``'s state (used to reload in place)."""
        adopt_state(self, other)

    # ------------------------------------------------------------------ changes

    def upsert(self, ids: Sequence[int] | np.ndarray, vectors: Any) -> set[int]:
        """Add new products or replace the vectors of existing ones.

        Only the affected rows/columns are computed. Returns the ids of exactly the products
        whose top-k list changed, plus the products added by this call.
        """
        ids_arr, vecs = self.plan_upsert(ids, vectors)
        return self.apply_upsert(ids_arr, vecs)

    def apply_upsert(self, ids: np.ndarray, vecs: np.ndarray) -> set[int]:
        """Apply the output of ``plan_upsert`` (distinct ids, validated float32 vectors)."""
        if ids.size == 0:
            return set()
        n_old = self._n
        old_nbr_ids = self._nbr_ids[:n_old].copy()
        old_nbr_d = self._nbr_dist[:n_old].copy()
        idx, new_ids = self._place(ids, vecs)
        full = self._rows_to_recompute(idx, ids[~np.isin(ids, new_ids)], old_nbr_ids)
        others = np.flatnonzero(~full[:n_old])
        merged = self._merge_upserted(ids, idx, others, old_nbr_ids[others], old_nbr_d[others])
        full_rows = np.flatnonzero(full)
        self._recompute_rows(full_rows)
        touched = np.union1d(full_rows[full_rows < n_old], merged)
        diff = (self._nbr_ids[touched] != old_nbr_ids[touched]).any(axis=1) | (
            self._nbr_dist[touched] != old_nbr_d[touched]
        ).any(axis=1)
        return set(self._ids[touched[diff]].tolist()) | set(new_ids.tolist())

    def _place(self, ids: np.ndarray, vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Store the upserted vectors (new ones in new rows) and their distance rows/columns.

        Returns (row of every upserted id, the ids that are new).
        """
        m, n_old = ids.size, self._n
        idx = np.fromiter((self._index.get(i, -1) for i in ids.tolist()), np.int64, m)
        is_new = idx < 0
        new_ids = ids[is_new]
        n = n_old + new_ids.size
        self._reserve(n)
        new_rows = np.arange(n_old, n)
        idx[is_new] = new_rows
        self._ids[new_rows] = new_ids
        for i, row in zip(new_ids.tolist(), new_rows.tolist(), strict=True):
            self._index[i] = row
        self._vecs[idx] = vecs
        self._work[idx], self._sq[idx] = self._prepare_work(vecs)
        self._n = n
        self._nbr_ids[new_rows] = _NO_ID
        self._nbr_dist[new_rows] = np.inf
        self._write_rows(idx)
        return idx, new_ids

    def _write_rows(self, idx: np.ndarray) -> None:
        """Distances of rows ``idx`` to every row, in row blocks.

        Each block's square part is made symmetric; a later block overwrites the pairs it
        shares with an earlier one on both sides (its row and its column), so the matrix stays
        exactly symmetric.
        """
        n = self._n
        step = self._rows_block(n)
        for s in range(0, idx.size, step):
            rows = idx[s : s + step]
            blk = self._pair_distances(self._work[rows], self._sq[rows], self._work[:n],
                                       self._sq[:n])
            square = blk[:, rows]
            _symmetrise_square(square)
            blk[:, rows] = square
            self._d[rows, :n] = blk
            self._d[:n, rows] = blk.T

    def _rows_to_recompute(self, idx: np.ndarray, updated: np.ndarray,
                           old_nbr_ids: np.ndarray) -> np.ndarray:
        """Mask of rows whose list is recomputed from scratch: the upserted ones, and those
        whose list held an updated product (its distance changed, possibly for the worse);
        every row when the batch is large."""
        full = np.zeros(self._n, bool)
        full[idx] = True
        n_old = old_nbr_ids.shape[0]
        if idx.size > _MERGE_MAX:
            full[:] = True
        elif updated.size and n_old:
            full[:n_old] |= np.isin(old_nbr_ids, updated).any(axis=1)
        return full

    def _merge_upserted(self, ids: np.ndarray, idx: np.ndarray, others: np.ndarray,
                        o_ids: np.ndarray, o_d: np.ndarray) -> np.ndarray:
        """Rows ``others`` can only gain upserted products: merge those that beat the k-th.

        ``o_ids``/``o_d`` are the rows' lists before the upsert. Returns the merged rows.
        """
        if others.size == 0:
            return others
        kth_id = np.where(o_ids[:, -1] < 0, _INT64_MAX, o_ids[:, -1])
        cand = self._d[idx][:, others]
        beats = (cand < o_d[:, -1]) | ((cand == o_d[:, -1]) & (ids[:, None] < kth_id))
        hit = beats.any(axis=0)
        merged = others[hit]
        if merged.size:
            c_ids = np.concatenate(
                [o_ids[hit], np.broadcast_to(ids, (merged.size, ids.size))], axis=1)
            c_d = np.concatenate([o_d[hit], cand[:, hit].T], axis=1)
            key = np.where(c_ids < 0, _INT64_MAX, c_ids)
            order = np.lexsort((key, c_d), axis=1)[:, : self.k]
            self._nbr_ids[merged] = np.take_along_axis(c_ids, order, axis=1)
            self._nbr_dist[merged] = np.take_along_axis(c_d, order, axis=1)
        return merged

    def remove(self, ids: Iterable[int] | np.ndarray) -> set[int]:
        """Remove products; unknown ids are ignored. Returns the products whose list changed."""
        return self.apply_remove(self.plan_remove(ids))

    def apply_remove(self, present: np.ndarray) -> set[int]:
        """Apply the output of ``plan_remove`` (distinct ids that are present)."""
        if present.size == 0:
            return set()
        for pid in present.tolist():
            self._swap_remove(self._index.pop(pid))
        n = self._n
        holders = np.flatnonzero(np.isin(self._nbr_ids[:n], present).any(axis=1))
        self._recompute_rows(holders)
        return set(self._ids[holders].tolist())

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

    # ------------------------------------------------------------------ reads

    def __len__(self) -> int:
        return self._n

    def __contains__(self, product_id: object) -> bool:
        if not is_int(product_id):
            return False
        return int(product_id) in self._index

    def __repr__(self) -> str:
        return (
            f"DistanceMatrix(n={self._n}, dim={self.dim}, metric={self.metric!r}, k={self.k}, "
            f"max_items={self.max_items}, capacity={self._cap}, version={self.version})"
        )

    @property
    def ids(self) -> np.ndarray:
        """Product ids in row order (a copy, int64)."""
        return self._ids[: self._n].copy()

    @property
    def vectors(self) -> np.ndarray:
        """Read-only view of the raw float32 vectors (N x dim), in row order."""
        v = self._vecs[: self._n]
        v.flags.writeable = False
        return v

    @property
    def distances(self) -> np.ndarray:
        """Read-only view of the N x N float32 distance matrix, in row order."""
        d = self._d[: self._n, : self._n]
        d.flags.writeable = False
        return d

    def index_of(self, product_id: int) -> int:
        """Row of ``product_id``; UnknownProductError (a KeyError) if absent."""
        if is_int(product_id):
            row = self._index.get(int(product_id))
            if row is not None:
                return row
        raise UnknownProductError(f"product {product_id!r} is not in the matrix")

    def vector(self, product_id: int) -> np.ndarray:
        """The stored float32 vector of ``product_id`` (a copy)."""
        return self._vecs[self.index_of(product_id)].copy()

    def neighbours(self, product_id: int, k: int | None = None) -> list[tuple[int, float]]:
        """Top-k (id, distance) of a product, itself excluded, sorted by (distance, id)."""
        i = self.index_of(product_id)
        k = self.k if k is None else self._check_k(k)
        if k <= self.k:
            nid, nd = self._nbr_ids[i, :k], self._nbr_dist[i, :k]
        else:
            n = self._n
            block = self._d[i : i + 1, :n].copy()
            block[0, i] = np.inf
            nid, nd = (a[0] for a in _topk_block(block, self._ids[:n], min(k, n - 1)))
        keep = nid >= 0
        return list(zip(nid[keep].tolist(), nd[keep].tolist(), strict=True))

    def query(
        self, vector: Any, k: int = 10, exclude: Iterable[int] = ()
    ) -> list[tuple[int, float]]:
        """Top-k (id, distance) for any vector, same metric, sorted by (distance, id)."""
        k = self._check_k(k)
        v = self._as_vectors(vector, 1)
        n = self._n
        if n == 0 or k == 0:
            return []
        work, sq = self._prepare_work(v)
        d = self._pair_distances(work, sq, self._work[:n], self._sq[:n])[0]
        ids = self._ids[:n]
        excluded = as_ids(list(exclude), what="exclude")
        if excluded.size:
            cols = np.flatnonzero(~np.isin(ids, excluded))
            d, ids = d[cols], ids[cols]
        nid, nd = _topk_block(d[None, :], ids, min(k, ids.size))
        return list(zip(nid[0].tolist(), nd[0].tolist(), strict=True))

    def holders(self, ids: Iterable[int] | np.ndarray) -> set[int]:
        """Products whose top-k list holds any of ``ids`` (no copy of the lists)."""
        wanted, n = as_ids(list(ids)), self._n
        if wanted.size == 0 or n == 0:
            return set()
        return set(self._ids[:n][np.isin(self._nbr_ids[:n], wanted).any(axis=1)].tolist())

    def top_k_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids (N,), neighbour ids (N x k, -1 padded), neighbour distances (N x k, inf padded))."""
        n = self._n
        return self._ids[:n].copy(), self._nbr_ids[:n].copy(), self._nbr_dist[:n].copy()

    @staticmethod
    def _check_k(k: int) -> int:
        return check_int(k, "k")
