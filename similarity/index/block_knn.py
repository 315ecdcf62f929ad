"""A full rebuild of the top-k layout split into row blocks that any process can compute.

The index writer writes the rebuild's input once (``write_input``: ids, squared norms and an
uncompressed float32 vectors ``.npy`` in a directory under the store), block workers on any
host that sees that directory each compute ``knn_block(input, start, stop)``: the exact
top-k rows [start, stop) against all vectors (memory-mapped, shared through the page cache),
and the writer merges the blocks (``merge_blocks``) and publishes them under its fence with
``MatrixStore.publish_rebuild``, which hard-links the input's vectors as the new base's.
Blocks are pure functions of the input: a block computed twice gives the same arrays, so a
redelivered task is harmless.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from similarity.atomic import fsync_dir
from similarity.errors import MatrixError
from similarity.index.dense import as_ids, last_wins, validate_vectors
from similarity.index.exact import raw_sq
from similarity.index.topk import TopKIndex

Block = tuple[np.ndarray, np.ndarray, np.ndarray]
_FILES = ("ids.npy", "sq.npy", "vectors.npy")


def _save(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, arr, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def write_input(parent: Path, ids: Sequence[int] | np.ndarray, vectors: Any, *,
                dim: int, metric: str) -> Path:
    """Write a rebuild's input under ``parent``; returns its directory (``rebuild-<hex>``).

    Duplicate ids: the last wins. The files are fsynced before the directory is returned.
    """
    ids_arr = as_ids(ids)
    vecs = validate_vectors(vectors, ids_arr.size, dim, metric)
    keep = last_wins(ids_arr)
    ids_arr, vecs = ids_arr[keep], vecs[keep]
    directory = Path(parent) / f"rebuild-{uuid.uuid4().hex[:12]}"
    directory.mkdir()
    _save(directory / "ids.npy", ids_arr)
    _save(directory / "sq.npy", raw_sq(vecs))
    _save(directory / "vectors.npy", vecs)
    fsync_dir(directory)
    return directory


def open_input(directory: Path, *, k: int, metric: str, engine: str = "numpy") -> TopKIndex:
    """The input as an index without lists (vectors memory-mapped, read-only)."""
    directory = Path(directory)
    missing = [f for f in _FILES if not (directory / f).is_file()]
    if missing:
        raise MatrixError(f"{directory} is not a rebuild input: missing {missing}")
    ids = np.load(directory / "ids.npy", allow_pickle=False)
    sq = np.load(directory / "sq.npy", allow_pickle=False)
    vectors = np.load(directory / "vectors.npy", mmap_mode="r", allow_pickle=False)
    return TopKIndex.from_arrays(ids, vectors, None, None, sq=sq, metric=metric, k=k,
                                 dim=vectors.shape[1], engine=engine)


def input_size(directory: Path) -> int:
    """Number of products in a rebuild input (to plan the blocks)."""
    return int(np.load(Path(directory) / "ids.npy", mmap_mode="r", allow_pickle=False).shape[0])


def knn_block(directory: Path, start: int, stop: int, *, k: int, metric: str,
              engine: str = "numpy") -> Block:
    """(ids, nbr_ids, nbr_dist) of rows [start, stop): exact, each row excluding itself."""
    return open_input(directory, k=k, metric=metric, engine=engine).knn_rows(start, stop)


def merge_blocks(ids: np.ndarray, blocks: Iterable[Block], k: int) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """The full (nbr_ids, nbr_dist) tables in ``ids`` order; every row exactly once."""
    pos = {pid: i for i, pid in enumerate(ids.tolist())}
    nbr_ids = np.full((ids.size, k), -1, np.int64)
    nbr_dist = np.full((ids.size, k), np.inf, np.float32)
    seen = np.zeros(ids.size, bool)
    for b_ids, b_nbr, b_dist in blocks:
        rows = np.fromiter((pos.get(i, -1) for i in b_ids.tolist()), np.int64, b_ids.size)
        if (rows < 0).any() or seen[rows].any() or b_nbr.shape != (b_ids.size, k):
            raise MatrixError("rebuild blocks overlap, do not fit, or name unknown products")
        seen[rows] = True
        nbr_ids[rows], nbr_dist[rows] = b_nbr, b_dist
    if not seen.all():
        raise MatrixError(f"rebuild blocks miss {int((~seen).sum())} product(s)")
    return nbr_ids, nbr_dist


def discard_stale_inputs(directory: Path) -> int:
    """Remove every rebuild input under ``directory`` (a store's, with its partitions): the
    ones a writer that died mid-rebuild left behind. Only for a caller holding the writer
    lock, so that no rebuild is using one. Returns how many were removed."""
    stale = [path for path in Path(directory).rglob("rebuild-*") if path.is_dir()]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return len(stale)


def discard_input(directory: Path) -> None:
    """Remove a rebuild input (the published base keeps its own link to the vectors)."""
    shutil.rmtree(directory, ignore_errors=True)
