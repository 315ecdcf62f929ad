"""An exact lower bound on distances from a few dimensions, to prune full scans.

With an orthonormal basis P (d' x d, fitted by PCA) and a centre mu, a working vector w has
low coordinates z(w) = (P(w - mu), r) with r = ||(w - mu) - PᵀP(w - mu)||, the residual norm.
For any two vectors (Pythagoras, then the reverse triangle inequality on the residuals)

    ||a - b||² = ||P(a - b)||² + ||residual(a) - residual(b)||² >= ||z(a) - z(b)||²,

so a row whose bound already exceeds a threshold on s (the squared working distance of
``similarity.index.exact``) cannot be within it. The bound is scanned in float32 BLAS over N x
(d' + 1) instead of N x d; ``limit`` widens a threshold by the worst-case rounding of the
stored float32 coordinates and of the float32 scan, so the pruning never drops a row that
the exact canonical comparison would keep.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from similarity.index.exact import U32, rank_error

#: Low dimensions of a fitted basis (the bound then has DIMS + 1 coordinates).
DIMS = 64
#: Rows sampled to fit a basis.
FIT_SAMPLE = 8192
_BLOCK = 16_384


@dataclass(frozen=True)
class Basis:
    """``mean`` float64 (d,), ``axes`` float64 (d', d) with orthonormal rows."""

    mean: np.ndarray
    axes: np.ndarray

    @property
    def dims(self) -> int:
        """Columns of the low coordinates: d' + 1 (the residual norm last)."""
        return int(self.axes.shape[0]) + 1


def fit_basis(sample: np.ndarray, dims: int = DIMS) -> Basis:
    """PCA of float64 working rows: the ``dims`` leading axes, orthonormalised by QR."""
    mean = sample.mean(axis=0)
    centred = (sample - mean).astype(np.float32)  # the axes' accuracy only affects pruning
    dims = max(1, min(dims, sample.shape[1] - 1, sample.shape[0]))
    q, _ = np.linalg.qr(_leading_axes((centred.T @ centred).astype(np.float64), dims))
    return Basis(mean, np.ascontiguousarray(q.T))


def _leading_axes(cov: np.ndarray, dims: int, rounds: int = 6) -> np.ndarray:
    """Approximately the ``dims`` leading eigenvectors of ``cov`` (d x dims) by subspace
    iteration: far cheaper than a full eigendecomposition of d x d."""
    width = min(cov.shape[0], dims + 16)
    q, _ = np.linalg.qr(cov @ np.random.default_rng(0).standard_normal((cov.shape[0], width)))
    for _ in range(rounds):
        q, _ = np.linalg.qr(cov @ q)
    _, vecs = np.linalg.eigh(q.T @ cov @ q)
    return q @ vecs[:, ::-1][:, :dims]


def low_coords(basis: Basis, work: np.ndarray) -> np.ndarray:
    """float32 (n, d' + 1) low coordinates of float64 working rows (residual explicit, not
    a difference of squared norms, which would cancel)."""
    out = np.empty((work.shape[0], basis.dims), np.float32)
    for s in range(0, work.shape[0], _BLOCK):
        c = work[s : s + _BLOCK] - basis.mean
        y = c @ basis.axes.T
        c -= y @ basis.axes
        out[s : s + _BLOCK, :-1] = y
        out[s : s + _BLOCK, -1] = np.sqrt(np.einsum("ij,ij->i", c, c))
    return out


def coord_blocks(basis: Basis, work_blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """``low_coords`` of each block of working rows."""
    for w in work_blocks:
        yield low_coords(basis, w)


def slack(z_sq: np.ndarray, z_sq_max: float, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query, (d, e): the float32 storage of both sides' coordinates moves the bound's
    root by at most d (u32 of each norm, doubled for the float64 steps), and the float32
    scan moves the squared bound by at most e (``rank_error`` over ``dims`` columns)."""
    d = 4 * U32 * (np.sqrt(z_sq) + np.sqrt(z_sq_max)) + 1e-30
    return d, rank_error(z_sq, z_sq_max, dims, "euclidean")


def limit(t_s: np.ndarray, d: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Largest scanned bound of a row whose s may still be <= ``t_s`` (float64 in; float32
    out, rounded up so the comparison against float32 bounds keeps every such row)."""
    lim = (np.sqrt(t_s) + d) ** 2 + e
    return (lim * (1 + 4 * U32)).astype(np.float32)


# 1 + 64 u32: covers the relative rounding of the few float32 steps of ``list_limits``.
_UP = np.float32(1 + 2.0**-18)


def list_limits(kth_d: np.ndarray, metric: str, d: float, e: float) -> np.ndarray:
    """``limit(threshold(s_k, 0), d, e)`` for every row's k-th distance ``kth_d`` (float32,
    +inf for short lists), computed in float32 in place: an add compares one vector's bounds
    with all N rows' limits, so this is on its critical path. Every step rounds to nearest
    on nonnegative values, so each loses at most u32 relative; the ``_UP`` factors (64 u32
    each) more than make up for them and for ``threshold``'s 8 u32."""
    if metric == "euclidean":
        root = kth_d * _UP  # sqrt(s_k (1 + 8 u32)) <= kth_d (1 + 4 u32)
    else:
        root = np.sqrt(kth_d * np.float32(2 + 2.0**-16))  # s_k = 2 kth_d
        root *= _UP
    root += np.float32(d) * _UP + np.float32(1e-15)  # threshold's 1e-30 on s; no underflow
    root *= root
    root += np.float32(e) * _UP
    root *= _UP
    return root
