"""The canonical distance, and exact k-nearest rows ranked fast and settled exactly.

Both index layouts (``similarity.index.dense``, ``similarity.index.topk``) report the same distance for a
pair of stored float32 vectors a, b, so their lists can be compared exactly:

    work(x) = float64(x), divided by sqrt(einsum(x, x)) for ``cosine``
    s(a, b) = einsum("ij,ij->i", work(a) - work(b), work(a) - work(b))   (float64)
    distance = float32(sqrt(s))  (euclidean)   or   float32(0.5 * s)  (cosine: 1 - cos)

Fast paths only rank: the dense matrix's float64 norm formula and this module's float32 BLAS
ranking come with a worst-case error bound ``e`` on s (Higham's gamma_d for a dot product of
length d, with room for the norms); a value whose float32 distance the bound cannot decide,
or a candidate within ``2e`` (plus a float32 tie margin) of the k-th, is recomputed
canonically. Ordering is by (float32 distance, id).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

U32 = 2.0**-24
U64 = 2.0**-53
_EXACT_CHUNK = 4096
# Extra candidates kept per row by a blocked ranking, beyond k, before settling exactly.
SHORTLIST_EXTRA = 32


def raw_sq(vecs: np.ndarray) -> np.ndarray:
    """float64 squared norms of float32 rows (what cosine's work vectors divide by)."""
    x = np.asarray(vecs, np.float64)
    return np.einsum("ij,ij->i", x, x)


def work_vectors(vecs: np.ndarray, sq: np.ndarray, metric: str) -> np.ndarray:
    """float64 working copies of float32 rows; ``sq`` their ``raw_sq``."""
    work = np.asarray(vecs).astype(np.float64)
    if metric == "cosine":
        work /= np.sqrt(sq)[:, None]
    return work


def final(s: np.ndarray, metric: str) -> np.ndarray:
    """float32 distances from squared working distances."""
    return (np.sqrt(s) if metric == "euclidean" else 0.5 * s).astype(np.float32)


def exact_s(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared working distances of paired rows (a[i], b[i]), float64, in chunks."""
    out = np.empty(a.shape[0], np.float64)
    for s in range(0, a.shape[0], _EXACT_CHUNK):
        diff = a[s : s + _EXACT_CHUNK] - b[s : s + _EXACT_CHUNK]
        out[s : s + _EXACT_CHUNK] = np.einsum("ij,ij->i", diff, diff)
    return out


def canonical(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Canonical float32 distances of paired working rows."""
    return final(exact_s(a, b), metric)


def settle_dense(g: np.ndarray, a: np.ndarray, a_sq: np.ndarray, b: np.ndarray,
                 b_sq: np.ndarray, metric: str) -> np.ndarray:
    """float32 distances from float64 norm-formula estimates ``g`` of s (len(a) x len(b)).

    Entries whose float32 result is not decided by the error bound are recomputed from the
    difference vectors, so every entry equals the canonical distance.
    """
    e = (4 * (a.shape[1] + 4) * U64) * (a_sq[:, None] + b_sq[None, :])
    lo = final(np.maximum(g - e, 0.0), metric)
    out = final(g + e, metric)
    rows, cols = np.nonzero(lo != out)
    del lo, e
    out[rows, cols] = canonical(a[rows], b[cols], metric)
    return out


def rank_error(q_sq: np.ndarray, x_sq_max: float, dim: int, metric: str) -> np.ndarray:
    """Bound on |approx s - canonical s| of the float32 ranking, per query row."""
    scale = q_sq + x_sq_max if metric == "euclidean" else np.full_like(q_sq, 2.0)
    return 3 * (dim + 2) * U32 * scale + 1e-30


def approx_s(q32: np.ndarray, q_sq: np.ndarray, x32: np.ndarray, x_sq: np.ndarray,
             metric: str) -> np.ndarray:
    """float32-BLAS estimates of s between query rows and stored rows (float32 out)."""
    dot = q32 @ x32.T
    if metric == "euclidean":
        dot *= -2.0
        dot += q_sq.astype(np.float32)[:, None]
        dot += x_sq.astype(np.float32)[None, :]
        return dot
    dot /= np.sqrt(q_sq).astype(np.float32)[:, None]
    dot /= np.sqrt(x_sq).astype(np.float32)[None, :]
    return np.float32(2.0) - np.float32(2.0) * dot


def threshold(kth: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Largest approx s a row's true k-th neighbour (or a float32 tie with it) can have."""
    return (kth + 2 * e) * (1 + 8 * U32) + 1e-30


Take = Callable[[np.ndarray], np.ndarray]


def settle_rows(q_work: np.ndarray, cand_vals: np.ndarray, cand_cols: np.ndarray,
                e: np.ndarray, k: int, col_ids: np.ndarray, take_work: Take,
                metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact top-k per row from approximate candidates (b x m, +inf = no candidate).

    Returns (nbr_ids b x k (-1 padded), nbr_dist b x k (inf padded), complete b bool): a row
    is incomplete when its m-th candidate is within the threshold, so columns not kept might
    belong to its list; the caller recomputes those rows with a full scan.
    """
    b, m = cand_vals.shape
    kk = min(k, m)
    srt = np.sort(cand_vals, axis=1)
    kth = srt[:, kk - 1].astype(np.float64) if kk else np.full(b, np.inf)
    thr = threshold(kth, e)
    complete = ~(np.isfinite(srt[:, -1]) & (srt[:, -1] <= thr)) if m else np.ones(b, bool)
    rows, js = np.nonzero((cand_vals <= thr[:, None]) & np.isfinite(cand_vals))
    out_ids, out_d = settle_pairs(q_work, rows, cand_cols[rows, js], b, k, col_ids, take_work,
                                  metric)
    return out_ids, out_d, complete


def settle_pairs(q_work: np.ndarray, rows: np.ndarray, cols: np.ndarray, b: int, k: int,
                 col_ids: np.ndarray, take_work: Take, metric: str,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k per query among candidate pairs (query ``rows[i]``, column ``cols[i]``):
    canonical distances, ordered by (distance, id); (b x k ids -1 padded, distances inf)."""
    dist = final(pair_s(q_work, rows, cols, take_work), metric)
    ids = col_ids[cols]
    order = np.lexsort((ids, dist, rows))
    rows, ids, dist = rows[order], ids[order], dist[order]
    rank = np.arange(rows.size) - np.searchsorted(rows, rows)
    keep = rank < k
    out_ids = np.full((b, k), -1, np.int64)
    out_d = np.full((b, k), np.inf, np.float32)
    out_ids[rows[keep], rank[keep]] = ids[keep]
    out_d[rows[keep], rank[keep]] = dist[keep]
    return out_ids, out_d


def pair_s(q_work: np.ndarray, rows: np.ndarray, cols: np.ndarray,
           take_work: Take) -> np.ndarray:
    """Squared working distances of query ``rows[i]`` and column ``cols[i]`` (float64),
    gathered in chunks so memory stays bounded."""
    out = np.empty(rows.size, np.float64)
    for s in range(0, rows.size, _EXACT_CHUNK):
        part = slice(s, s + _EXACT_CHUNK)
        out[part] = exact_s(q_work[rows[part]], take_work(cols[part]))
    return out


def top_m(vals: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``m`` smallest values per row and their columns (unordered; +inf padded)."""
    b, n = vals.shape
    if n <= m:
        pad = m - n
        cols = np.broadcast_to(np.arange(n), (b, n))
        return (np.pad(vals, ((0, 0), (0, pad)), constant_values=np.inf),
                np.pad(cols, ((0, 0), (0, pad))))
    cols = np.argpartition(vals, m - 1, axis=1)[:, :m]
    return np.take_along_axis(vals, cols, axis=1), cols


def merge_top_m(best: tuple[np.ndarray, np.ndarray], vals: np.ndarray, offset: int,
                m: int) -> tuple[np.ndarray, np.ndarray]:
    """Fold one column block's approx values into the running (values, columns) top-m."""
    bv, bc = top_m(vals, m)
    allv = np.concatenate([best[0], bv], axis=1)
    allc = np.concatenate([best[1], bc + offset], axis=1)
    pick = np.argpartition(allv, m - 1, axis=1)[:, :m]
    return np.take_along_axis(allv, pick, axis=1), np.take_along_axis(allc, pick, axis=1)
