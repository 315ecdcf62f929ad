"""Both index layouts against brute force, exactly: lists, changed sets, ties, the switch.

The reference computes every pair's canonical distance from difference vectors
(``similarity.index.exact``: float64, then float32) and sorts by (distance, id); it is checked
against scipy's cdist within float32 rounding, then every layout must equal it bit for bit.
"""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

import similarity.index.dense_storage as storage_mod
import similarity.index.topk_tuning as tuning_mod
from similarity.index.dense import DistanceMatrix, UnknownProductError
from similarity.index.exact import final, raw_sq, work_vectors
from similarity.index.layout import LAYOUTS, layout_class, to_topk
from similarity.index.topk import TopKIndex


def make(layout, *, dim, metric="euclidean", k=10):
    cls = layout_class(layout)
    return cls(dim=dim, metric=metric, k=k)


def canonical_all(vecs: np.ndarray, metric: str) -> np.ndarray:
    """Every pair's canonical float32 distance, from difference vectors."""
    work = work_vectors(vecs, raw_sq(vecs), metric)
    diff = work[:, None, :] - work[None, :, :]
    d = final(np.einsum("ijk,ijk->ij", diff, diff), metric)
    scipy = cdist(vecs.astype(np.float64), vecs.astype(np.float64), metric=metric)
    np.testing.assert_allclose(d, scipy, atol=1e-5, rtol=1e-6)
    return d


def ref_lists(model: dict, metric: str, k: int) -> dict:
    """{id: [(neighbour id, float32 distance), ...]} by (distance, id), self excluded."""
    ids = sorted(model)
    if not ids:
        return {}
    d = canonical_all(np.stack([model[i] for i in ids]).astype(np.float32), metric)
    out = {}
    for a, i in enumerate(ids):
        cands = sorted((float(d[a, b]), j) for b, j in enumerate(ids) if j != i)
        out[i] = [(j, dist) for dist, j in cands[:k]]
    return out


def lists_of(index) -> dict:
    ids, nbr, dist = index.top_k_table()
    return {int(i): [(int(j), float(x)) for j, x in zip(n, d, strict=True) if j >= 0]
            for i, n, d in zip(ids, nbr, dist, strict=True)}


def check_exact(index, model: dict, metric: str, k: int) -> dict:
    ref = ref_lists(model, metric, k)
    assert sorted(index.ids.tolist()) == sorted(model)
    assert len(index) == len(model)
    assert lists_of(index) == ref
    for i in list(model)[:3]:
        assert index.neighbours(i) == ref[i]
        assert i in index
    if model:
        got = np.asarray(index.vectors)[np.argsort(index.ids)]
        assert np.array_equal(got, np.stack([model[i] for i in sorted(model)]))
    return ref


def diff_lists(before: dict, after: dict) -> set:
    return {i for i, lst in after.items() if before.get(i) != lst}


class RandomOps:
    """Random add/update/remove/no-op batches over a small id space (grid vectors: ties)."""

    def __init__(self, seed: int, kind: str, metric: str, dim: int, max_n: int = 35):
        self.rng = np.random.default_rng(seed)
        self.kind, self.metric, self.dim, self.max_n = kind, metric, dim, max_n
        self.model: dict[int, np.ndarray] = {}

    def vec(self) -> np.ndarray:
        rng = self.rng
        if self.kind == "grid":
            v = rng.integers(0, 3, self.dim).astype(np.float32)
            return v if self.metric == "euclidean" or v.any() else v + 1
        if self.model and rng.random() < 0.2:
            v = self.model[int(rng.choice(list(self.model)))]
            return v * 2 if self.metric == "cosine" and rng.random() < 0.5 else v.copy()
        return rng.normal(size=self.dim).astype(np.float32)

    def next(self) -> tuple[str, list[int], list[np.ndarray]]:
        rng, model = self.rng, self.model
        r = rng.random()
        if not model or (r < 0.4 and len(model) < self.max_n):
            batch = sorted({int(x) for x in rng.integers(0, 500, int(rng.integers(1, 4)))})
            batch = [i for i in batch if i not in model] or [1000 + len(model)]
            return "upsert", batch, [self.vec() for _ in batch]
        if r < 0.65:
            batch = [int(x) for x in rng.choice(list(model), min(2, len(model)), replace=False)]
            if rng.random() < 0.3:
                batch.append(batch[0])  # the last occurrence wins
            return "upsert", batch, [self.vec() for _ in batch]
        if r < 0.75:
            i = int(rng.choice(list(model)))
            return "upsert", [i], [model[i].copy()]  # no-op
        batch = [int(x) for x in rng.choice(list(model), min(len(model), 2), replace=False)]
        return "remove", [*batch, 123_456], []

    def apply_model(self, op: str, batch: list[int], vs: list[np.ndarray]) -> set[int]:
        added = set()
        if op == "remove":
            for i in batch:
                self.model.pop(i, None)
        else:
            for i, v in zip(batch, vs, strict=True):
                if i not in self.model:
                    added.add(i)
                self.model[i] = v.astype(np.float32)
        return added


def run_op(index, op, batch, vs):
    return index.remove(batch) if op == "remove" else index.upsert(batch, np.stack(vs))


# ---------------------------------------------------------------- the key property


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    ("metric", "kind", "seed"),
    [("euclidean", "grid", 11), ("euclidean", "normal", 12), ("cosine", "normal", 13),
     ("cosine", "grid", 14)],
)
def test_changed_sets_and_lists_equal_bruteforce(layout, metric, kind, seed):
    """150 random operations, k = 5: after each, the returned set equals the brute-force
    difference of the lists (plus the products added) and every list equals brute force
    exactly (ids and float32 distances)."""
    dim, k = (4 if kind == "grid" else 12), 5
    ops = RandomOps(seed, kind, metric, dim)
    check_random_ops(make(layout, dim=dim, metric=metric, k=k), ops, metric, k)


def check_random_ops(index, ops: RandomOps, metric: str, k: int, steps: int = 150) -> None:
    """Apply ``steps`` random operations; after each, the changed set and every list equal
    brute force."""
    before = check_exact(index, ops.model, metric, k) if ops.model else {}
    for step in range(steps):
        op, batch, vs = ops.next()
        changed = run_op(index, op, batch, vs)
        added = ops.apply_model(op, batch, vs)
        after = check_exact(index, ops.model, metric, k)
        assert changed == diff_lists(before, after) | added, f"step {step} {op} {batch}"
        before = after


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_layouts_agree_bit_for_bit_on_the_same_operations(metric):
    ops = RandomOps(21, "normal", metric, 16, max_n=60)
    dense = make("dense", dim=16, metric=metric, k=7)
    topk = make("topk", dim=16, metric=metric, k=7)
    for _ in range(120):
        op, batch, vs = ops.next()
        assert run_op(dense, op, batch, vs) == run_op(topk, op, batch, vs)
        ops.apply_model(op, batch, vs)
        assert lists_of(dense) == lists_of(topk)


def test_small_blocks_and_passes_stay_exact(monkeypatch):
    """Blocks of 256 rows and passes of 3 queries: many blocks per scan and per batch."""
    monkeypatch.setattr(storage_mod, "BLOCK_BYTES", 1)
    monkeypatch.setattr(tuning_mod, "PASS_ROWS", 3)
    rng = np.random.default_rng(3)
    grid = rng.integers(0, 3, size=(700, 4)).astype(np.float32)
    index = TopKIndex.build(np.arange(600) * 2, grid[:600], dim=4, k=6)
    model = dict(zip((np.arange(600) * 2).tolist(), grid[:600], strict=True))
    before = ref_lists(model, "euclidean", 6)
    batch = [1, 3, 5, 7, 9, 10, 20, 30]  # five new, three updated
    changed = index.upsert(batch, grid[600:608])
    model.update(zip(batch, grid[600:608], strict=True))
    after = check_exact(index, model, "euclidean", 6)
    assert changed == diff_lists(before, after) | {1, 3, 5, 7, 9}
    changed = index.remove([4, 6, 8, 1])
    for i in (4, 6, 8, 1):
        model.pop(i)
    assert changed == diff_lists(after, check_exact(index, model, "euclidean", 6))


# ---------------------------------------------------------------- ties and reads


@pytest.mark.parametrize("layout", LAYOUTS)
def test_ties_keep_smaller_ids(layout):
    dim = 8
    eye = np.eye(dim, dtype=np.float32)
    index = make(layout, dim=dim, k=3)
    index.upsert([1000], np.zeros((1, dim), np.float32))
    index.upsert([20, 30, 40], eye[:3])
    assert index.upsert([50], eye[3:4]) == {50}  # at the k-th distance, larger id: no change
    assert [i for i, _ in index.neighbours(1000)] == [20, 30, 40]
    assert 1000 in index.upsert([35], eye[4:5])  # smaller id: enters, pushes out 40
    assert index.neighbours(1000) == [(20, 1.0), (30, 1.0), (35, 1.0)]
    assert index.query(np.zeros(dim, np.float32), k=3, exclude=[1000]) == [
        (20, 1.0), (30, 1.0), (35, 1.0)]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_query_and_wide_neighbours_equal_bruteforce(layout, metric):
    rng = np.random.default_rng(6)
    vecs = rng.normal(size=(80, 8)).astype(np.float32)
    vecs[10] = vecs[11] = vecs[12]  # exact duplicates: distance 0, ordered by id
    ids = np.arange(80) * 3
    index = layout_class(layout).build(ids, vecs, metric=metric, k=4, dim=8)
    model = dict(zip(ids.tolist(), vecs, strict=True))
    check_exact(index, model, metric, 4)
    wide = ref_lists(model, metric, 30)
    assert index.neighbours(33, k=30) == wide[33]
    assert index.neighbours(30)[:2] == [(33, 0.0), (36, 0.0)]
    q = rng.normal(size=8).astype(np.float32)
    d = canonical_all(np.vstack([vecs, q]), metric)[-1, :-1]
    order = sorted(range(80), key=lambda a: (d[a], ids[a]))
    assert index.query(q, k=7) == [(int(ids[a]), float(d[a])) for a in order[:7]]
    top = [int(ids[a]) for a in order[:2]]
    assert index.query(q, k=5, exclude=top) == [(int(ids[a]), float(d[a])) for a in order[2:7]]


def test_topk_reads_and_errors():
    index = TopKIndex(dim=3, k=10)
    assert index.query(np.ones(3)) == [] and len(index) == 0
    index.upsert([5], [[1, 2, 3]])
    assert index.neighbours(5) == [] and 5 in index and True not in index
    with pytest.raises(UnknownProductError):
        index.neighbours(6)
    index.upsert([1, 2, 3, 4], np.arange(12, dtype=np.float32).reshape(4, 3))
    _ids, nbr, dist = index.top_k_table()
    assert nbr.shape == (5, 10) and (nbr[:, 4:] == -1).all() and np.isinf(dist[:, 4:]).all()
    assert index.remove([99]) == set() and index.upsert([5], [[1, 2, 3]]) == set()


# ---------------------------------------------------------------- the switch


def test_dense_to_topk_conversion_keeps_every_list():
    rng = np.random.default_rng(4)
    vecs = rng.normal(size=(50, 8)).astype(np.float32)
    dense = DistanceMatrix.build(np.arange(50), vecs, k=5, dim=8)
    topk = to_topk(dense)
    assert isinstance(topk, TopKIndex) and lists_of(topk) == lists_of(dense)
    assert topk.query(vecs[3], k=4) == dense.query(vecs[3], k=4)
