"""Replaying a generation's deltas, in seq order, into an index loaded from its base.

Dense: each operation goes through the same ``DistanceMatrix`` methods that made it. Top-k:
the delta's row changes, then the lists it logged are written back, so no distance is
computed and the base's vectors are never read again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from similarity.errors import MatrixError
from similarity.index.layout import NeighbourIndex
from similarity.index.store_format import DELTA_KEYS, LIST_KEYS, delta_op, read_npz
from similarity.index.store_listing import Listing
from similarity.index.topk import ListChange, TopKIndex


def replay(matrix: NeighbourIndex, listing: Listing, directory: Path) -> set[int]:
    """Apply the deltas newer than the matrix's seq, in order; union of changed sets."""
    assert matrix.version is not None
    gen, seq = matrix.version
    changed: set[int] = set()
    for s in sorted(x for x in listing.deltas if x > seq):
        if s != seq + 1:
            raise MatrixError(
                f"{directory}: delta seq {seq + 1} of generation {gen} is missing "
                f"(found {s}); the directory was altered"
            )
        changed |= _apply_delta(matrix, listing.deltas[s], gen, s)
        seq = s
    return changed


def _apply_delta(matrix: NeighbourIndex, path: Path, gen: int, seq: int) -> set[int]:
    z = read_npz(path, DELTA_KEYS)
    op = delta_op(z, path, gen, seq)
    try:
        if isinstance(matrix, TopKIndex):
            changed = _replay_topk(matrix, path, op, z)
        else:
            changed = _replay_dense(matrix, op, z)
    except MatrixError as e:
        raise type(e)(f"replaying {path.name}: {e}") from e
    matrix.version = (gen, seq)
    matrix.sealed = op == "seal"
    return changed


def _replay_dense(matrix: NeighbourIndex, op: str, z: dict[str, np.ndarray]) -> set[int]:
    """Redo the operation (the matrix recomputes its distances)."""
    if op == "upsert":
        ids, vecs = matrix.plan_upsert(z["ids"], z["vectors"])
        return matrix.apply_upsert(ids, vecs)
    if op == "remove":
        return matrix.remove(z["ids"])
    if op == "seal":
        return set()
    raise MatrixError(f"unknown op {op!r}")


def _replay_topk(index: TopKIndex, path: Path, op: str, z: dict[str, np.ndarray]) -> set[int]:
    """Row changes, then the logged lists: no distance is computed."""
    if op == "seal":
        return set()
    if op not in ("upsert", "remove"):
        raise MatrixError(f"unknown op {op!r}")
    lists = read_npz(path, LIST_KEYS)
    index.apply_vectors(op, z["ids"], z["vectors"])
    index.apply_lists(ListChange(lists["list_ids"], lists["list_nbr_ids"],
                                 lists["list_nbr_dist"]))
    return set(lists["changed"].tolist())
