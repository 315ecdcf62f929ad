"""Near-duplicates in a list: ``first_distinct`` against a plain loop over pairs, with chains of
near-copies, the same image key and rows kept first (pins)."""

from __future__ import annotations

import numpy as np
import pytest

from similarity.index.dedup import first_distinct


def _pairwise(vectors: np.ndarray, keys: list[str], fixed: int, room: int,
              threshold: float) -> list[int]:
    def same(a: int, b: int) -> bool:
        if keys[a] and keys[a] == keys[b]:
            return True
        u, v = vectors[a].astype(np.float64), vectors[b].astype(np.float64)
        return 1.0 - float(u @ v) / float(np.linalg.norm(u) * np.linalg.norm(v)) <= threshold

    kept = list(range(fixed))
    for row in range(fixed, len(vectors)):
        if len(kept) - fixed == room:
            break
        if not any(same(row, k) for k in kept):
            kept.append(row)
    return kept


@pytest.mark.parametrize("seed", range(20))
def test_first_distinct_keeps_each_row_unless_a_copy_of_one_kept(seed):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(6, 32))
    # Rows are copies of a few pictures, some moved a little (a chain: a copy of a copy).
    moved = rng.choice([0.0, 0.05, 0.3], size=(25, 1)) * rng.normal(size=(25, 32))
    rows = base[rng.integers(0, 6, 25)] + moved
    keys = [str(rng.choice(["", "", "", "a", "b"])) for _ in range(25)]
    fixed, room = int(rng.integers(0, 3)), int(rng.integers(1, 10))
    got = first_distinct(rows, keys, fixed=fixed, room=room, threshold=0.01)
    assert got == _pairwise(rows, keys, fixed, room, 0.01)
    assert got[:fixed] == list(range(fixed))  # the pinned rows stay, copies or not


def test_a_copy_of_a_copy_not_itself_near_the_first_is_kept():
    a = np.array([1.0, 0.0])
    b = np.array([1.0, 0.12])  # ~0.007 from a
    c = np.array([1.0, 0.24])  # ~0.007 from b, ~0.028 from a
    assert first_distinct(np.stack([a, b, c]), ["", "", ""], fixed=0, room=3, threshold=0.01) == [0, 2]
    assert first_distinct(np.stack([a, c]), ["x", "x"], fixed=0, room=3, threshold=0.01) == [0]
    assert first_distinct(np.stack([a, b]), ["", ""], fixed=1, room=0, threshold=0.01) == [0]
