"""DistanceMatrix against an independent brute-force reference (scipy cdist, sorted lists)."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from similarity.errors import MatrixError, MatrixFullError
from similarity.index.dense import DistanceMatrix, UnknownProductError

# ---------------------------------------------------------------- reference


def ref_distances(vecs: np.ndarray, metric: str) -> np.ndarray:
    v = np.asarray(vecs, dtype=np.float64)
    d = cdist(v, v, metric=metric)
    # cdist's own rounding noise around identical vectors (cosine gives ~1e-16): call it 0.
    d[np.abs(d) < 1e-9] = 0.0
    return d


def ref_lists(model: dict, metric: str, k: int) -> dict:
    """{id: [(neighbour id, float32 distance), ...]} sorted by (distance, id), self excluded."""
    ids = sorted(model)
    if not ids:
        return {}
    d = ref_distances(np.stack([model[i] for i in ids]), metric).astype(np.float32)
    out = {}
    for a, i in enumerate(ids):
        cands = sorted((float(d[a, b]), j) for b, j in enumerate(ids) if j != i)
        out[i] = [(j, dist) for dist, j in cands[:k]]
    return out


def ids_only(pairs):
    return [i for i, _ in pairs]


def check_state(m: DistanceMatrix, model: dict, metric: str, k: int) -> None:
    ids = m.ids
    assert ids.dtype == np.int64
    assert sorted(ids.tolist()) == sorted(model)
    assert len(m) == len(model)
    if not model:
        return
    vecs = np.stack([model[i] for i in ids.tolist()]).astype(np.float32)
    assert np.array_equal(m.vectors, vecs)
    d = m.distances
    assert d.dtype == np.float32
    np.testing.assert_allclose(d, ref_distances(vecs, metric), atol=1e-4, rtol=0)
    assert np.array_equal(d, d.T)
    assert (np.diagonal(d) == 0).all()
    ref = ref_lists(model, metric, k)
    t_ids, t_nbr, t_dist = m.top_k_table()
    for row, i in enumerate(t_ids.tolist()):
        got = m.neighbours(i)
        assert ids_only(got) == ids_only(ref[i]), f"product {i}"
        np.testing.assert_allclose([x for _, x in got], [x for _, x in ref[i]], atol=1e-4)
        assert len(set(ids_only(got))) == len(got)
        assert i not in ids_only(got)
        assert len(got) == min(k, len(model) - 1)
        assert t_nbr[row, : len(got)].tolist() == ids_only(got)
        assert (t_nbr[row, len(got) :] == -1).all()
        assert np.isinf(t_dist[row, len(got) :]).all()


def diff_lists(before: dict, after: dict) -> set:
    return {i for i, lst in after.items() if before.get(i) != lst}


# ---------------------------------------------------------------- build and basics


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_build_matches_bruteforce(metric):
    rng = np.random.default_rng(1)
    ids = rng.permutation(1000)[:60] * 7
    vecs = rng.normal(size=(60, 16)).astype(np.float32)
    m = DistanceMatrix.build(ids, vecs, metric=metric, k=10, dim=16)
    check_state(m, dict(zip(ids.tolist(), vecs, strict=True)), metric, 10)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_incremental_adds_equal_full_build(metric):
    rng = np.random.default_rng(2)
    vecs = rng.normal(size=(40, 16)).astype(np.float32)
    ids = np.arange(100, 140)
    built = DistanceMatrix.build(ids, vecs, metric=metric, dim=16)
    inc = DistanceMatrix(dim=16, metric=metric)
    for i in range(0, 40, 3):
        inc.upsert(ids[i : i + 3], vecs[i : i + 3])
    assert np.array_equal(inc.ids, built.ids)
    np.testing.assert_allclose(inc.distances, built.distances, atol=1e-6)
    for i in ids.tolist():
        assert ids_only(inc.neighbours(i)) == ids_only(built.neighbours(i))


def test_cosine_stores_raw_vectors():
    v = np.array([[3.0, 4.0], [0.0, 2.0], [-1.0, 0.0]], np.float32)
    m = DistanceMatrix.build([1, 2, 3], v, metric="cosine", dim=2)
    assert np.array_equal(m.vector(1), v[0])
    assert m.distances[0, 1] == pytest.approx(1 - 0.8)  # cos = 8 / 10
    assert m.distances[1, 2] == pytest.approx(1.0)


def test_build_blocks_cover_every_pair(monkeypatch):
    """Row blocks much smaller than N must still give a complete, symmetric matrix."""
    import similarity.index.dense_storage as mm

    monkeypatch.setattr(mm, "BLOCK_BYTES", 8 * 50 * 7)  # 7 rows per block at N=50
    rng = np.random.default_rng(3)
    vecs = rng.normal(size=(50, 8)).astype(np.float32)
    m = DistanceMatrix.build(np.arange(50), vecs, dim=8)
    check_state(m, dict(enumerate(vecs)), "euclidean", 10)


# ---------------------------------------------------------------- ties


def test_equidistant_ties_keep_smaller_ids_at_the_boundary():
    dim = 8
    # Product 1000 at the origin, eight unit vectors all at distance exactly 1 from it.
    unit_ids = [50, 7, 30, 2, 99, 11, 64, 3]
    vecs = np.vstack([np.zeros(dim), np.eye(dim)]).astype(np.float32)
    ids = [1000, *unit_ids]
    m = DistanceMatrix.build(ids, vecs, k=3, dim=dim)
    assert m.neighbours(1000) == [(2, 1.0), (3, 1.0), (7, 1.0)]
    # Every unit vector: the origin (1) first, then the two smallest other ids (sqrt 2).
    for i in unit_ids:
        others = sorted(j for j in unit_ids if j != i)[:2]
        assert ids_only(m.neighbours(i)) == [1000, *others]
    check_state(m, dict(zip(ids, vecs, strict=True)), "euclidean", 3)


def test_tie_with_kth_changes_list_only_for_smaller_id():
    dim = 8
    m = DistanceMatrix(dim=dim, k=3)
    m.upsert([1000], np.zeros((1, dim), np.float32))
    eye = np.eye(dim, dtype=np.float32)
    m.upsert([20, 30, 40], eye[:3])
    assert ids_only(m.neighbours(1000)) == [20, 30, 40]
    # A newcomer at exactly the k-th distance with a larger id does not enter the list ...
    changed = m.upsert([50], eye[3:4])
    assert 1000 not in changed
    assert ids_only(m.neighbours(1000)) == [20, 30, 40]
    # ... with a smaller id it does, and pushes out the largest id.
    changed = m.upsert([35], eye[4:5])
    assert 1000 in changed
    assert ids_only(m.neighbours(1000)) == [20, 30, 35]


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_duplicate_vectors_are_at_distance_zero_and_ordered_by_id(metric):
    rng = np.random.default_rng(4)
    base = rng.normal(size=(6, 32)).astype(np.float32)
    vecs = np.vstack([base, base[2], base[2], base[2], 2 * base[4]])  # ids 6, 7, 8 copy 2
    ids = [60, 10, 40, 30, 20, 50, 95, 5, 70, 33]
    m = DistanceMatrix.build(ids, vecs, metric=metric, k=4, dim=32)
    got = m.neighbours(40)
    assert got[:3] == [(5, 0.0), (70, 0.0), (95, 0.0)]
    if metric == "cosine":
        assert m.neighbours(33)[0] == (20, 0.0)  # 2x a vector: same direction
    check_state(m, dict(zip(ids, vecs, strict=True)), metric, 4)


def test_fewer_than_k_neighbours_when_small():
    m = DistanceMatrix(dim=3, k=10)
    m.upsert([5], [[1, 2, 3]])
    assert m.neighbours(5) == []
    m.upsert([1, 2, 3, 4], np.arange(12, dtype=np.float32).reshape(4, 3))
    assert len(m.neighbours(5)) == 4
    _ids, nbr, dist = m.top_k_table()
    assert nbr.shape == (5, 10)
    assert (nbr[:, 4:] == -1).all()
    assert np.isinf(dist[:, 4:]).all()


def test_neighbours_k_argument():
    rng = np.random.default_rng(5)
    vecs = rng.normal(size=(30, 8)).astype(np.float32)
    m = DistanceMatrix.build(np.arange(30), vecs, k=5, dim=8)
    ref = ref_lists(dict(enumerate(vecs)), "euclidean", 20)
    assert ids_only(m.neighbours(3, k=2)) == ids_only(ref[3])[:2]
    assert ids_only(m.neighbours(3, k=20)) == ids_only(ref[3])
    assert len(m.neighbours(3, k=100)) == 29
    assert m.neighbours(3, k=0) == []


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_query_matches_bruteforce(metric):
    rng = np.random.default_rng(6)
    vecs = rng.normal(size=(40, 8)).astype(np.float32)
    ids = np.arange(40) * 3
    m = DistanceMatrix.build(ids, vecs, metric=metric, dim=8)
    q = rng.normal(size=8).astype(np.float32)
    ref = cdist(q[None].astype(np.float64), vecs.astype(np.float64), metric=metric)[0]
    order = sorted(range(40), key=lambda a: (np.float32(ref[a]), ids[a]))
    got = m.query(q, k=7)
    assert ids_only(got) == [int(ids[a]) for a in order[:7]]
    np.testing.assert_allclose([d for _, d in got], ref[order[:7]], atol=1e-5)
    excluded = m.query(q, k=7, exclude=ids_only(got)[:2])
    assert ids_only(excluded) == [int(ids[a]) for a in order[2:9]]
    # A stored product's own vector finds itself first at distance 0.
    assert m.query(vecs[5], k=1) == [(15, 0.0)]
    assert len(m.query(q, k=100)) == 40
    assert DistanceMatrix(dim=8).query(q) == []


def test_query_ties_by_id():
    m = DistanceMatrix.build([9, 4, 6, 1], np.eye(4, dtype=np.float32), dim=4)
    assert m.query(np.zeros(4, np.float32), k=3) == [(1, 1.0), (4, 1.0), (6, 1.0)]


# ---------------------------------------------------------------- the key test


@pytest.mark.parametrize(
    ("metric", "kind", "seed"),
    [("euclidean", "grid", 11), ("euclidean", "normal", 12), ("cosine", "normal", 13),
     ("euclidean", "grid", 14)],
)
def test_changed_sets_equal_bruteforce_diff(metric, kind, seed):
    """200 random add/update/remove operations on ~30 products, k=10.

    After each operation, the returned set must equal the brute-force difference between the
    top-k lists before and after (plus the products added), and the whole state must equal
    the brute-force reference. "grid" vectors are small integers in 4-D: many exact ties and
    duplicates; "normal" ones include duplicated and scaled copies.
    """
    rng = np.random.default_rng(seed)
    dim, k = (4 if kind == "grid" else 12), 10
    m = DistanceMatrix(dim=dim, metric=metric, k=k, max_items=100)
    model: dict[int, np.ndarray] = {}
    used: list[int] = []

    def vec():
        if kind == "grid":
            return rng.integers(0, 3, dim).astype(np.float32)
        if model and rng.random() < 0.2:
            v = model[int(rng.choice(list(model)))]
            return v * 2 if metric == "cosine" and rng.random() < 0.5 else v.copy()
        return rng.normal(size=dim).astype(np.float32)

    def fresh_id():
        if used and rng.random() < 0.2:  # re-add an id removed earlier
            gone = [i for i in used if i not in model]
            if gone:
                return int(rng.choice(gone))
        while True:
            i = int(rng.integers(0, 10_000))
            if i not in model and i not in used:
                used.append(i)
                return i

    kinds = {"add": 0, "update": 0, "mixed": 0, "remove": 0, "noop": 0}
    for _step in range(200):
        before = ref_lists(model, metric, k)
        r = rng.random()
        added: set[int] = set()
        if not model or (r < 0.35 and len(model) < 35):
            op = "add"
            batch = []
            for _ in range(int(rng.integers(1, 4))):
                i = fresh_id()
                if i not in batch:
                    batch.append(i)
            vs = [vec() for _ in batch]
            added = set(batch)
        elif r < 0.6:
            op = "update"
            batch = [int(x) for x in rng.choice(list(model), size=min(2, len(model)),
                                                 replace=False)]
            vs = [vec() for _ in batch]
            if rng.random() < 0.3:  # same id twice in one call: the last one wins
                batch.append(batch[0])
                vs.append(vec())
        elif r < 0.7:
            op = "noop"
            batch = [int(rng.choice(list(model)))]
            vs = [model[batch[0]].copy()]
        elif r < 0.8:
            op = "mixed"
            batch = [int(rng.choice(list(model))), fresh_id()]
            vs = [vec(), vec()]
            added = {batch[1]}
        else:
            op = "remove"
            batch = [int(x) for x in rng.choice(list(model), size=min(len(model),
                                                                       int(rng.integers(1, 3))),
                                                 replace=False)]
            if rng.random() < 0.3:
                batch.append(123_456)  # unknown: ignored
        kinds[op] += 1
        if op == "remove":
            changed = m.remove(batch)
            for i in batch:
                model.pop(i, None)
        else:
            changed = m.upsert(batch, np.stack(vs))
            for i, v in zip(batch, vs, strict=True):
                model[i] = v.astype(np.float32)
        after = ref_lists(model, metric, k)
        expected = diff_lists(before, after) | added
        assert changed == expected, f"step {_step} {op} {batch}"
        if op == "noop":
            assert changed == set()
        check_state(m, model, metric, k)
    assert min(kinds.values()) > 5, kinds


@pytest.mark.parametrize("block_rows", [None, 7])
def test_large_batches_match_bruteforce(monkeypatch, block_rows):
    """Batches above the merge limit recompute every list; row blocks smaller than the batch
    must still leave an exactly symmetric matrix."""
    import similarity.index.dense_storage as mm

    if block_rows:
        monkeypatch.setattr(mm, "BLOCK_BYTES", 8 * 200 * block_rows)
    rng = np.random.default_rng(21)
    grid = rng.integers(0, 3, size=(400, 4)).astype(np.float32)  # many exact ties
    m = DistanceMatrix(dim=4, k=10)
    model = {}
    for lo, hi in ((0, 100), (100, 200)):  # two batches of 100 new products
        before = ref_lists(model, "euclidean", 10)
        ids = list(range(lo * 3, hi * 3, 3))
        changed = m.upsert(ids, grid[lo:hi])
        model.update(zip(ids, grid[lo:hi], strict=True))
        assert changed == diff_lists(before, ref_lists(model, "euclidean", 10)) | set(ids)
    # A batch of 90: 70 updates and 20 new products.
    before = ref_lists(model, "euclidean", 10)
    ids = [int(i) for i in rng.choice(list(model), 70, replace=False)] + list(range(1, 60, 3))
    changed = m.upsert(ids, grid[200:290])
    model.update(zip(ids, grid[200:290], strict=True))
    assert changed == diff_lists(before, ref_lists(model, "euclidean", 10)) | set(range(1, 60, 3))
    check_state(m, model, "euclidean", 10)


def test_built_and_restored_matrices_keep_headroom():
    rng = np.random.default_rng(22)
    m = DistanceMatrix.build(np.arange(1000), rng.normal(size=(1000, 4)), dim=4)
    assert m.capacity == 1064  # 5 % but at least 64 spare rows
    cap = m.capacity
    m.upsert(np.arange(1000, 1064), rng.normal(size=(64, 4)))
    assert m.capacity == cap  # no copy of the matrix for these adds
    m.upsert([5000], rng.normal(size=(1, 4)))
    assert m.capacity == int(cap * 1.25)
    full = DistanceMatrix.build(np.arange(10), rng.normal(size=(10, 4)), dim=4, max_items=10)
    assert full.capacity == 10  # never beyond max_items
    assert DistanceMatrix.build([1], np.ones((1, 4)), dim=4, headroom=0).capacity == 65


def test_from_arrays_reads_a_stream():
    import io

    rng = np.random.default_rng(23)
    m = DistanceMatrix.build(np.arange(30), rng.normal(size=(30, 4)), dim=4, k=3)
    raw = io.BytesIO(np.ascontiguousarray(m.distances, dtype="<f4").tobytes())
    ids, nbr, dist = m.top_k_table()
    again = DistanceMatrix.from_arrays(ids, m.vectors, raw, nbr, dist, dim=4, k=3)
    assert np.array_equal(again.distances, m.distances)
    assert again.capacity > 30
    short = io.BytesIO(raw.getvalue()[:-4])
    with pytest.raises(MatrixError, match="truncated"):
        DistanceMatrix.from_arrays(ids, m.vectors, short, nbr, dist, dim=4, k=3)


# ---------------------------------------------------------------- changes


def test_duplicate_ids_in_one_call_last_wins():
    m = DistanceMatrix(dim=2)
    m.upsert([1, 2, 1], [[0, 0], [5, 5], [3, 4]])
    assert len(m) == 2
    assert m.vector(1).tolist() == [3.0, 4.0]
    assert m.neighbours(2) == [(1, pytest.approx(np.hypot(2, 1)))]


def test_identical_upsert_is_a_noop():
    m = DistanceMatrix.build([1, 2, 3], np.eye(3, dtype=np.float32), dim=3)
    before = m.top_k_table()
    assert m.upsert([2], np.eye(3, dtype=np.float32)[1:2]) == set()
    for a, b in zip(before, m.top_k_table(), strict=True):
        assert np.array_equal(a, b)


def test_new_products_are_always_in_the_changed_set():
    m = DistanceMatrix(dim=2)
    assert m.upsert([7], [[1, 1]]) == {7}  # alone: its list is empty, but it is new


def test_remove_returns_holders_and_is_idempotent():
    rng = np.random.default_rng(7)
    vecs = rng.normal(size=(20, 4)).astype(np.float32)
    m = DistanceMatrix.build(np.arange(20), vecs, k=3, dim=4)
    holders = {i for i in range(20) if 5 in ids_only(m.neighbours(i))}
    assert m.remove([5]) == holders
    assert m.remove([5]) == set()
    assert m.remove([]) == set()
    assert 5 not in m
    model = {i: vecs[i] for i in range(20) if i != 5}
    check_state(m, model, "euclidean", 3)
    assert m.remove(list(range(20))) == set()
    assert len(m) == 0


def test_capacity_grows_geometrically():
    m = DistanceMatrix(dim=4, max_items=5000)
    rng = np.random.default_rng(8)
    caps = set()
    for i in range(1500):
        m.upsert([i], rng.normal(size=(1, 4)))
        caps.add(m.capacity)
    assert len(caps) <= 20  # each growth copies the matrix once; not once per add
    assert m.capacity >= 1500
    m.remove(list(range(0, 1500, 2)))
    assert len(m) == 750
    sub = DistanceMatrix.build(m.ids, m.vectors, dim=4)
    np.testing.assert_allclose(m.distances, sub.distances, atol=1e-5)


def test_views_are_read_only_and_ids_a_copy():
    m = DistanceMatrix.build([1, 2], np.eye(2, dtype=np.float32), dim=2)
    with pytest.raises(ValueError, match="read-only"):
        m.distances[0, 1] = 5
    with pytest.raises(ValueError, match="read-only"):
        m.vectors[0, 0] = 5
    ids = m.ids
    ids[0] = 99
    assert m.ids.tolist() == [1, 2]
    assert 1 in m and 99 not in m and "1" not in m
    assert m.index_of(2) == 1


def test_from_arrays_round_trip():
    rng = np.random.default_rng(9)
    m = DistanceMatrix.build(np.arange(12), rng.normal(size=(12, 4)), dim=4, k=3)
    ids, nbr, dist = m.top_k_table()
    again = DistanceMatrix.from_arrays(ids, m.vectors.copy(), m.distances.copy(), nbr, dist,
                                       dim=4, k=3)
    assert np.array_equal(again.distances, m.distances)
    assert again.neighbours(4) == m.neighbours(4)
    other_k = DistanceMatrix.from_arrays(ids, m.vectors.copy(), m.distances.copy(), nbr, dist,
                                         dim=4, k=5)
    assert ids_only(other_k.neighbours(4))[:3] == ids_only(m.neighbours(4))
    assert len(other_k.neighbours(4)) == 5


# ---------------------------------------------------------------- errors


def test_size_limit_error_message():
    m = DistanceMatrix.build(np.arange(5), np.eye(5, dtype=np.float32), dim=5, max_items=5)
    with pytest.raises(MatrixFullError) as e:
        m.upsert([10], np.ones((1, 5)))
    msg = str(e.value)
    assert "holding 5" in msg and "max_items=5" in msg and "6 products" in msg
    assert "KB" in msg or "MB" in msg or "B " in msg
    assert isinstance(e.value, MatrixError)
    # Updating an existing product at the limit is fine.
    m.upsert([3], np.ones((1, 5)))
    with pytest.raises(MatrixFullError, match="max_items=5"):
        DistanceMatrix.build(np.arange(6), np.ones((6, 5)), dim=5, max_items=5)
    big = DistanceMatrix(max_items=20_000)
    with pytest.raises(MatrixFullError, match=r"1\.\d GB"):
        big.plan_upsert(np.arange(20_001), np.zeros((20_001, 1280), np.float32))


@pytest.mark.parametrize(
    ("ids", "vectors", "match"),
    [
        ([1], np.ones((1, 3)), r"shape \(1, 4\)"),
        ([1, 2], np.ones((1, 4)), r"shape \(2, 4\)"),
        ([1], [[1, 2, np.nan, 4]], "NaN or inf"),
        ([1], [[1, 2, np.inf, 4]], "NaN or inf"),
        ([1], [[1, 2, 1e300, 4]], "NaN or inf"),
        ([1], [["a", "b", "c", "d"]], "real numbers"),
        ([-1], np.ones((1, 4)), "non-negative"),
        ([1.5], np.ones((1, 4)), "integers"),
        ([2**63], np.ones((1, 4)), "int64"),
        ([2**70], np.ones((1, 4)), "int64"),
        ("12", np.ones((1, 4)), "string"),
        ([[1]], np.ones((1, 4)), "1-D"),
    ],
)
def test_bad_input_is_a_matrix_error_and_changes_nothing(ids, vectors, match):
    m = DistanceMatrix.build([1, 2], np.eye(2, 4, dtype=np.float32), dim=4)
    before = m.distances.copy()
    with pytest.raises(MatrixError, match=match):
        m.upsert(ids, vectors)
    assert np.array_equal(m.distances, before)
    assert m.ids.tolist() == [1, 2]


def test_cosine_refuses_zero_vectors():
    m = DistanceMatrix(dim=3, metric="cosine")
    with pytest.raises(MatrixError, match="all-zero"):
        m.upsert([1], np.zeros((1, 3)))


def test_remove_refuses_negative_ids():
    m = DistanceMatrix(dim=2)
    with pytest.raises(MatrixError, match="non-negative"):
        m.remove([-3])


def test_unknown_id_is_a_key_error():
    m = DistanceMatrix(dim=2)
    for call in (lambda: m.neighbours(4), lambda: m.vector(4), lambda: m.index_of(4)):
        with pytest.raises(UnknownProductError) as e:
            call()
        assert isinstance(e.value, KeyError) and isinstance(e.value, MatrixError)
        assert "4" in str(e.value)


def test_constructor_validation():
    with pytest.raises(MatrixError, match="metric"):
        DistanceMatrix(metric="manhattan")
    with pytest.raises(MatrixError, match="k must"):
        DistanceMatrix(k=0)
    with pytest.raises(MatrixError, match="dim"):
        DistanceMatrix(dim=0)
