"""The interface the catalog uses, which both index layouts implement.

- ``dense`` (``similarity.index.dense.DistanceMatrix``): the N x N float32 distance matrix; every
  list, and any ``neighbours(k)``, is a read of it. Memory 4·N² bytes: for small catalogs.
- ``topk`` (``similarity.index.topk.TopKIndex``): vectors and exact top-k lists only; an add is one
  pass of the new vector against N, a removal recomputes the rows whose list held it.

Both report the canonical distances of ``similarity.index.exact`` ordered by (distance, id), so the
same operations give the very same lists in either layout.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np

from similarity.errors import MatrixError
from similarity.index.dense import DistanceMatrix
from similarity.index.topk import TopKIndex

LAYOUTS = ("dense", "topk")


class NeighbourIndex(Protocol):
    """Product vectors with every product's exact top-k list kept current."""

    layout: str
    dim: int
    metric: str
    k: int
    #: (generation, seq) of the persisted state this object reflects (see similarity.index.store).
    version: tuple[int, int] | None
    sealed: bool

    @property
    def ids(self) -> np.ndarray: ...
    @property
    def vectors(self) -> np.ndarray: ...
    def __len__(self) -> int: ...
    def __contains__(self, product_id: object) -> bool: ...
    def neighbours(self, product_id: int, k: int | None = None) -> list[tuple[int, float]]: ...
    def query(self, vector: Any, k: int = 10,
              exclude: Iterable[int] = ()) -> list[tuple[int, float]]: ...
    def vector(self, product_id: int) -> np.ndarray: ...
    def holders(self, ids: Iterable[int] | np.ndarray) -> set[int]: ...
    def top_k_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...
    def plan_upsert(self, ids: Sequence[int] | np.ndarray,
                    vectors: Any) -> tuple[np.ndarray, np.ndarray]: ...
    def apply_upsert(self, ids: np.ndarray, vecs: np.ndarray) -> set[int]: ...
    def upsert(self, ids: Sequence[int] | np.ndarray, vectors: Any) -> set[int]: ...
    def plan_remove(self, ids: Iterable[int] | np.ndarray) -> np.ndarray: ...
    def apply_remove(self, present: np.ndarray) -> set[int]: ...
    def remove(self, ids: Iterable[int] | np.ndarray) -> set[int]: ...
    def replace_state(self, other: Any) -> None: ...


def layout_class(layout: str) -> type[DistanceMatrix] | type[TopKIndex]:
    """The class of a layout name."""
    if layout == "dense":
        return DistanceMatrix
    if layout == "topk":
        return TopKIndex
    raise MatrixError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def to_topk(matrix: NeighbourIndex, *, engine: str = "numpy") -> TopKIndex:
    """The top-k layout of an index (a dense matrix's lists are taken as they are)."""
    if isinstance(matrix, TopKIndex):
        return matrix
    if not isinstance(matrix, DistanceMatrix):
        raise MatrixError(f"cannot convert {type(matrix).__name__} to the top-k layout")
    return TopKIndex.from_matrix(matrix, engine=engine)


def _conforms(dense: DistanceMatrix, topk: TopKIndex) -> list[NeighbourIndex]:
    """Type-checked only: both layouts satisfy the protocol."""
    return [dense, topk]
