"""Block result files of the distributed rebuild: atomic, pickle-free, checked on read."""

from __future__ import annotations

import numpy as np
import pytest

from similarity.errors import MatrixError
from similarity.index.block_files import block_path, load_block, save_block


def _block(n: int = 4, k: int = 3):
    rng = np.random.default_rng(1)
    return (np.arange(10, 10 + n, dtype=np.int64), rng.integers(0, 50, (n, k)).astype(np.int64),
            rng.random((n, k)).astype(np.float32))


def test_a_block_round_trips_without_pickle(tmp_path):
    block = _block()
    path = save_block(tmp_path, 8, 12, block)
    assert path == block_path(tmp_path, 8, 12) and path.name == "block-0000000008-0000000012.npz"
    with np.load(path, allow_pickle=False) as z:
        assert sorted(z.files) == ["ids", "nbr_dist", "nbr_ids"]
    for got, want in zip(load_block(tmp_path, 8, 12), block, strict=True):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype
    assert list(tmp_path.glob(".block-*")) == []  # no temp file left


def test_saving_again_replaces_the_block(tmp_path):
    save_block(tmp_path, 0, 4, _block())
    ids, nbr_ids, nbr_dist = _block()
    save_block(tmp_path, 0, 4, (ids, nbr_ids, nbr_dist * 2))
    np.testing.assert_array_equal(load_block(tmp_path, 0, 4)[2], nbr_dist * 2)


def test_a_missing_or_wrong_block_is_refused_by_name(tmp_path):
    with pytest.raises(MatrixError, match=r"block-0000000000-0000000004\.npz is missing"):
        load_block(tmp_path, 0, 4)
    save_block(tmp_path, 0, 4, _block(n=3))
    with pytest.raises(MatrixError, match="wrong shape"):
        load_block(tmp_path, 0, 4)
    block_path(tmp_path, 4, 8).write_bytes(b"not a zip")
    with pytest.raises(MatrixError, match="unreadable"):
        load_block(tmp_path, 4, 8)
