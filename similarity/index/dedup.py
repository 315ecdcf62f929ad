"""Near-duplicate collapsing: the same picture uploaded twice should take one place in a list.

Pure numpy, no Django. Two catalog items are near-duplicates when the cosine distance of
their raw embeddings is at most ``threshold`` (re-encoding a JPEG, resizing it or
uploading the same file again moves a MobileNetV2 embedding far less than any two distinct
garments are apart; see bench/experiments/clean_duplicates.py for the measured distributions). Near-duplicate
pairs are joined into groups (connected components); a group is named by its first item.

:func:`collapse` walks a ranked candidate list and keeps only the first item of every group,
so the best-ranked copy stays and later copies make room for other items. :func:`first_distinct`
is what written lists use: a candidate is left out when it is a near-duplicate of an item
already kept (the pairwise test, so a list depends only on its own candidates' order).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["collapse", "duplicate_groups", "first_distinct"]

_BLOCK = 1024


def duplicate_groups(vectors: np.ndarray, threshold: float) -> np.ndarray:
    """Group id of every row: the smallest row index of its near-duplicate component.

    ``threshold`` is a cosine distance (1 - cosine similarity) on the raw vectors; a row
    with no near-duplicate is its own group.
    """
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"vectors must be 2-D, got shape {v.shape}")
    if threshold < 0:
        raise ValueError(f"threshold must be non-negative, got {threshold}")
    n = v.shape[0]
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    parent = np.arange(n)

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:  # path compression
            parent[i], i = root, parent[i]
        return int(root)

    for start in range(0, n, _BLOCK):
        sims = v[start : start + _BLOCK] @ v.T
        rows, cols = np.nonzero(1.0 - sims <= threshold)
        for r, c in zip((rows + start).tolist(), cols.tolist(), strict=True):
            if c > r:
                a, b = find(r), find(c)
                if a != b:
                    parent[max(a, b)] = min(a, b)  # the smallest index stays the root
    return np.array([find(i) for i in range(n)], dtype=np.int64)


def collapse(ranked: np.ndarray, groups: np.ndarray, k: int) -> np.ndarray:
    """First ``k`` items of each ranked row, skipping items whose group is already listed.

    ``ranked`` is (Q, M) catalog indices best first (M > k leaves room for skipped copies;
    negative entries are ignored); returns (Q, k) int64, padded with -1 if a row runs out.
    """
    ranked = np.asarray(ranked)
    groups = np.asarray(groups)
    out = np.full((ranked.shape[0], k), -1, dtype=np.int64)
    for q, row in enumerate(ranked.tolist()):
        seen: set[int] = set()
        filled = 0
        for item in row:
            if filled == k:
                break
            if item < 0:
                continue
            g = int(groups[item])
            if g in seen:
                continue
            seen.add(g)
            out[q, filled] = item
            filled += 1
    return out


def first_distinct(vectors: np.ndarray, keys: Sequence[str], *, fixed: int, room: int,
                   threshold: float) -> list[int]:
    """Rows kept, in order: the first ``fixed`` rows always (a list's pinned products), then, in
    rank order, each further row that is no near-duplicate of a row kept so far, until ``room``
    further rows are kept.

    Near-duplicates: cosine distance of the raw ``vectors`` at most ``threshold``, or the same
    non-empty ``keys`` (the same image bytes).
    """
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2 or len(keys) != v.shape[0]:
        raise ValueError(f"vectors must be 2-D with one key a row, got {v.shape}, {len(keys)} keys")
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    near = (1.0 - v @ v.T) <= threshold
    kept = list(range(min(fixed, v.shape[0])))
    taken = 0
    for row in range(len(kept), v.shape[0]):
        if taken == room:
            break
        if any(near[row, i] or (keys[row] and keys[row] == keys[i]) for i in kept):
            continue
        kept.append(row)
        taken += 1
    return kept
