"""Result files of a distributed rebuild's row blocks (see similarity.index.block_knn).

A block worker writes ``block-<start>-<stop>.npz`` (ids int64, nbr_ids int64, nbr_dist float32)
into the rebuild's input directory atomically (temp file, fsync, rename, fsync the directory),
so the writer either finds a whole block or none; a block computed twice is simply replaced by
the same arrays. Read with ``allow_pickle=False``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from similarity.atomic import atomic_file
from similarity.errors import MatrixError
from similarity.index.block_knn import Block

_KEYS = ("ids", "nbr_ids", "nbr_dist")


def block_path(directory: Path, start: int, stop: int) -> Path:
    return Path(directory) / f"block-{start:010d}-{stop:010d}.npz"


def save_block(directory: Path, start: int, stop: int, block: Block) -> Path:
    path = block_path(directory, start, stop)
    ids, nbr_ids, nbr_dist = block
    with atomic_file(path, prefix=".block-") as handle:
        np.savez(handle, allow_pickle=False, ids=np.asarray(ids, np.int64),
                 nbr_ids=np.asarray(nbr_ids, np.int64), nbr_dist=np.asarray(nbr_dist, np.float32))
    return path


def load_block(directory: Path, start: int, stop: int) -> Block:
    """The block's arrays; ``MatrixError`` naming the file when it is missing or unreadable."""
    path = block_path(directory, start, stop)
    try:
        with np.load(path, allow_pickle=False) as z:
            ids, nbr_ids, nbr_dist = (z[key] for key in _KEYS)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise MatrixError(f"rebuild block {path} is missing or unreadable: {exc}") from exc
    if ids.shape != (stop - start,) or nbr_ids.shape[0] != ids.size or nbr_dist.shape != nbr_ids.shape:
        raise MatrixError(f"rebuild block {path} holds arrays of the wrong shape")
    return ids, nbr_ids, nbr_dist
