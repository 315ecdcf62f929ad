"""``VectorRows``: a top-k index's float32 rows, a read-only base and an in-memory tail."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from similarity.index import topk_tuning as tuning


def grown(arr: np.ndarray, cap: int, fill: Any) -> np.ndarray:
    """``arr`` in a new array of ``cap`` rows, the rows past it set to ``fill``."""
    out = np.full((cap, *arr.shape[1:]), fill, arr.dtype)
    out[: arr.shape[0]] = arr
    return out


class VectorRows:
    """float32 vector rows: a read-only base (often a memory map) and an in-memory tail."""

    def __init__(self, base: np.ndarray) -> None:
        self.base = base
        self.tail = np.empty((0, base.shape[1]), np.float32)
        self.n_tail = 0

    def __len__(self) -> int:
        return self.base.shape[0] + self.n_tail

    def append(self, vecs: np.ndarray) -> None:
        need = self.n_tail + vecs.shape[0]
        if need > self.tail.shape[0]:
            self.tail = grown(self.tail[: self.n_tail],
                              max(need, tuning.MIN_GROWTH, int(1.5 * self.tail.shape[0])), 0)
        self.tail[self.n_tail : need] = vecs
        self.n_tail = need

    def take(self, rows: np.ndarray) -> np.ndarray:
        nb = self.base.shape[0]
        out = np.empty((rows.size, self.base.shape[1]), np.float32)
        in_base = rows < nb
        out[in_base] = self.base[np.sort(rows[in_base])][np.argsort(np.argsort(rows[in_base]))]
        out[~in_base] = self.tail[rows[~in_base] - nb]
        return out

    def blocks(self, size: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, rows) in blocks of at most ``size`` rows, base then tail."""
        nb = self.base.shape[0]
        for s in range(0, nb, size):
            yield s, self.base[s : s + size]
        for s in range(0, self.n_tail, size):
            yield nb + s, self.tail[s : min(self.n_tail, s + size)]
