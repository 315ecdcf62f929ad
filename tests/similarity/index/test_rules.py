"""Lists under a shop's rules, in both layouts, against a brute force that applies the rules.

The brute force ranks every allowed product by its canonical distance (float64 difference
vectors, then float32) and id, then places the pins rank by rank; the index must give the same
list bit for bit, for products inside it and outside it, with ties (grid vectors).
"""

import numpy as np
import pytest

from similarity.errors import MatrixError
from similarity.index.layout import LAYOUTS, layout_class
from similarity.index.rules import ListRules, pair_distances, place_pins, rows_entered, ruled_list
from tests.rules_reference import brute


def random_rules(rng, ids: list, limit: int) -> ListRules:
    chosen = rng.permutation(ids)[: rng.integers(0, 6)].tolist()
    cut = int(rng.integers(0, len(chosen) + 1))
    ranks = rng.permutation(np.arange(1, limit + 3))[: len(chosen) - cut].tolist()
    return ListRules(exclude=frozenset(chosen[:cut]),
                     pins=dict(zip(ranks, chosen[cut:], strict=True)))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ruled_lists_equal_brute_force(layout, metric, seed):
    """60 products on a coarse grid (many ties), a random half in the index; every product's
    list under random rules equals the brute force."""
    rng = np.random.default_rng(seed)
    dim, limit = 6, 10
    vectors = {pid: (rng.integers(-2, 3, dim) + (metric == "cosine") * 0.5).astype(np.float32)
               for pid in range(1, 61)}
    candidates = {pid for pid in vectors if rng.random() < 0.5}
    index = layout_class(layout)(dim=dim, metric=metric, k=limit)
    index.upsert(sorted(candidates), np.stack([vectors[p] for p in sorted(candidates)]))
    for pid in sorted(vectors):
        rules = random_rules(rng, sorted(vectors), limit)
        got = ruled_list(index, vectors[pid], own_id=pid, rules=rules, limit=limit)
        assert got == brute(vectors, candidates, vectors[pid], pid, rules, metric, limit), pid


@pytest.mark.parametrize("layout", LAYOUTS)
def test_no_rules_inside_the_index_is_its_own_list(layout):
    """With no rules, a product inside the index gets exactly its stored list."""
    rng = np.random.default_rng(5)
    index = layout_class(layout)(dim=8, metric="euclidean", k=10)
    ids = list(range(10, 50))
    vecs = rng.integers(-1, 2, (len(ids), 8)).astype(np.float32)
    index.upsert(ids, vecs)
    for pid, vec in zip(ids, vecs, strict=True):
        assert ruled_list(index, vec, own_id=pid, rules=ListRules(), limit=10) == index.neighbours(pid)


def test_pins_fill_in_rank_order_when_the_catalog_is_short():
    nearest = [(1, 0.1), (2, 0.2)]
    pinned = {2: (7, 0.9), 9: (8, 0.5)}
    assert place_pins(nearest, pinned, 10) == [(1, 0.1), (7, 0.9), (2, 0.2), (8, 0.5)]
    assert place_pins([], {}, 10) == []


def test_pins_past_the_limit_do_not_apply():
    index = layout_class("dense")(dim=2, metric="euclidean", k=3)
    index.upsert([1, 2, 3, 4], np.array([[0, 0], [1, 0], [2, 0], [3, 0]], np.float32))
    rules = ListRules(pins={4: 2})
    got = ruled_list(index, np.zeros(2, np.float32), own_id=1, rules=rules, limit=3)
    assert got == [(2, 1.0), (3, 2.0), (4, 3.0)]


def test_pair_distances_are_the_lists_distances():
    rng = np.random.default_rng(2)
    vecs = rng.normal(size=(20, 16)).astype(np.float32)
    for metric in ("euclidean", "cosine"):
        index = layout_class("dense")(dim=16, metric=metric, k=5)
        index.upsert(list(range(20)), vecs)
        stored = dict(index.neighbours(0, k=19))
        dist = pair_distances(vecs[0], vecs[1:], metric)
        assert [float(x) for x in dist] == [stored[i] for i in range(1, 20)]


@pytest.mark.parametrize("bad", [
    {"pins": {0: 5}},
    {"pins": {1: 5, 2: 5}},
    {"pins": {1: 5}, "exclude": frozenset({5})},
])
def test_contradictory_rules_are_refused(bad):
    with pytest.raises(MatrixError):
        ListRules(**bad)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_rows_entered_is_the_brute_force_comparison(metric):
    """A row is entered when a new product ranks before its threshold (distance, then id),
    unless the row skips it; a row with room takes any product."""
    rng = np.random.default_rng(11)
    rows = rng.integers(-1, 2, (40, 6)).astype(np.float32) + 0.5
    new_ids = np.array([7, 3, 12])
    new = rng.integers(-1, 2, (3, 6)).astype(np.float32) + 0.5
    dist = np.stack([pair_distances(r, new, metric) for r in rows])
    thresholds = []
    for i in range(len(rows)):
        pick = int(rng.integers(0, 3))
        thresholds.append(None if i % 9 == 0 else (float(dist[i, pick]), int(rng.integers(0, 15))))
    skips = [{3} if i % 5 == 0 else set() for i in range(len(rows))]
    got = rows_entered(rows, thresholds, new_ids, new, metric, skips)
    for i, t in enumerate(thresholds):
        allowed = [(float(dist[i, j]), int(pid)) for j, pid in enumerate(new_ids) if pid not in skips[i]]
        want = bool(allowed) if t is None else any(c < t for c in allowed)
        assert bool(got[i]) == want, i
    assert got.any() and not got.all()
