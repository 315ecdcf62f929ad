"""What the index layouts accept: checks that turn product ids, vectors and integer parameters
into validated numpy arrays, the metrics, and the error for a product that is not there."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeGuard

import numpy as np

from similarity.errors import MatrixError

METRICS = ("euclidean", "cosine")

INT64_MAX = int(np.iinfo(np.int64).max)
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
            raise MatrixError(f"{what} must fit in int64 (0 .. {INT64_MAX}), got {arr.tolist()}")
        raise MatrixError(f"{what} must be integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and int(arr.max()) > INT64_MAX:
        raise MatrixError(f"{what} must fit in int64 (0 .. {INT64_MAX}), got {int(arr.max())}")
    out = arr.astype(np.int64, copy=True)
    if (out < 0).any():
        bad = out[out < 0][:5].tolist()
        raise MatrixError(f"{what} must be non-negative, got {bad}")
    return out


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
