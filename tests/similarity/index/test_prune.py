"""Pruned scans of the top-k layout (similarity.index.prune) against brute force, exactly.

The bound is checked against the true distance; then indexes whose scans are pruned must
give the brute-force lists (ids and float32 distances, ties by id) on data where the bound
prunes well, on data where it cannot prune at all, on exact ties and duplicates, and on rows
added after the basis was fitted, from far outside the data it was fitted on.
"""

import numpy as np
import pytest

import similarity.index.topk_tuning as tuning_mod
from similarity.index.block_knn import knn_block
from similarity.index.exact import approx_s, exact_s, raw_sq, threshold, work_vectors
from similarity.index.prune import fit_basis, limit, list_limits, low_coords, slack
from similarity.index.store import MatrixMeta, MatrixStore
from similarity.index.topk import TopKIndex
from similarity.index.topk_search import seed_threshold
from tests.similarity.index.test_topk import (
    RandomOps,
    check_exact,
    check_random_ops,
    diff_lists,
    lists_of,
    ref_lists,
)


def clustered(rng, n, dim, centres=12, spread=0.2):
    c = 3 * rng.normal(size=(centres, dim))
    return (c[rng.integers(0, centres, n)] + spread * rng.normal(size=(n, dim))).astype(
        np.float32)


def pruned(ids, vecs, *, metric="euclidean", k=5, dims=6) -> TopKIndex:
    index = TopKIndex.build(ids, vecs, dim=vecs.shape[1], metric=metric, k=k)
    index.enable_pruning(dims)
    assert index.basis is not None and index.basis.dims == dims + 1
    return index


def candidate_share(index: TopKIndex, queries: np.ndarray, k: int) -> float:
    """Share of the rows a pruned search must check exactly."""
    q_sq = raw_sq(queries)
    b = index._lower_bounds(queries, q_sq)
    t = seed_threshold(work_vectors(queries, q_sq, index.metric), b.lb, k, index._work)
    return float((b.lb <= limit(t, b.d, b.e)[:, None]).mean())


# ---------------------------------------------------------------- the bound


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("shift", [0.0, 1e3])
def test_scanned_bound_minus_its_slack_never_exceeds_the_distance(metric, shift):
    """For every pair: the bound from float32 coordinates and a float32 scan, once its
    slack is taken off, is <= the canonical distance; also for vectors far from the rows
    the basis was fitted on (shifted by 1e3, scaled by 50)."""
    rng = np.random.default_rng(4)
    fit_rows = clustered(rng, 300, 40)
    v = np.concatenate([fit_rows, (50 * rng.normal(size=(100, 40)) + shift).astype(np.float32)])
    work = work_vectors(v, raw_sq(v), metric)
    basis = fit_basis(work_vectors(fit_rows, raw_sq(fit_rows), metric), 5)
    z = low_coords(basis, work)
    z_sq = raw_sq(z)
    lb = approx_s(z, z_sq, z, z_sq, "euclidean").astype(np.float64)
    d, e = slack(z_sq, float(z_sq.max()), basis.dims)
    a, b = np.triu_indices(v.shape[0], 1)
    s = exact_s(work[a], work[b])
    root_bound = np.sqrt(np.maximum(lb[a, b] - e[a], 0)) - d[a]
    assert (root_bound <= np.sqrt(s)).all()
    # The exact-arithmetic bound (float64 coordinates) holds too, and is not vacuous.
    z64 = np.hstack([(work - basis.mean) @ basis.axes.T, z[:, -1:].astype(np.float64)])
    bound64 = np.einsum("ij,ij->i", z64[a] - z64[b], z64[a] - z64[b])
    assert (bound64 <= s * (1 + 1e-6)).all()
    assert np.median(bound64 / np.maximum(s, 1e-30)) > 0.3


def test_limit_keeps_every_row_at_the_threshold():
    """A row whose bound equals its true s at the threshold stays a candidate."""
    t = np.array([0.0, 1e-12, 1.0, 123.456, np.inf])
    d, e = slack(np.ones(5), 1.0, 8)
    assert (limit(t, d, e) >= t.astype(np.float32)).all()
    assert np.isinf(limit(t, d, e)[-1])
    assert (limit(threshold(t, np.zeros(5)), d, e) >= t).all()


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_float32_list_limits_cover_the_float64_ones(metric):
    rng = np.random.default_rng(15)
    kth = np.concatenate([[0.0, np.inf, 1e-30, 1e-8], rng.uniform(0, 50, 10_000),
                          rng.lognormal(0, 4, 10_000)]).astype(np.float32)
    s_k = kth.astype(np.float64) ** 2 if metric == "euclidean" else 2 * kth.astype(np.float64)
    for d, e in ((1e-30, 1e-30), (3e-6, 2e-4), (0.5, 7.0)):
        ref = limit(threshold(s_k, np.zeros(1)), np.array(d), np.array(e))
        got = list_limits(kth, metric, d, e)
        assert got.dtype == np.float32 and (got >= ref).all()
        assert (got[np.isfinite(ref)] <= ref[np.isfinite(ref)] * 1.001 + 1e-20).all()


# ---------------------------------------------------------------- exact lists


@pytest.mark.parametrize(
    ("metric", "kind", "seed"),
    [("euclidean", "grid", 31), ("euclidean", "normal", 32), ("cosine", "normal", 33),
     ("cosine", "grid", 34)],
)
def test_pruned_changed_sets_and_lists_equal_bruteforce(metric, kind, seed, monkeypatch):
    """The layouts' property test with scans pruned from the first operation on (a basis
    fitted on a few seed rows, every later row a tail row): grid vectors give many exact
    ties and duplicates. Pruned passes never fall back to a full scan here."""
    monkeypatch.setattr(tuning_mod, "DENSE_SHARE", 1.0)
    dim, k = (4 if kind == "grid" else 12), 5
    ops = RandomOps(seed, kind, metric, dim, max_n=45)
    seed_ids = list(range(2000, 2012))
    seed_vecs = [ops.vec() for _ in seed_ids]
    ops.apply_model("upsert", seed_ids, seed_vecs)
    check_random_ops(pruned(seed_ids, np.stack(seed_vecs), metric=metric, k=k, dims=2), ops,
                     metric, k)


@pytest.mark.parametrize(("metric", "seed_block"), [("euclidean", 32), ("cosine", 32),
                                                    ("euclidean", 2)])
def test_pruned_build_add_remove_update_on_clustered_data(metric, seed_block, monkeypatch):
    """600 clustered rows (the bound prunes most of them), updates, removals and 150 rows
    from a shifted, wider distribution added after the basis was fitted; several passes of
    queries per batch. Seed block 2: seeds from block minima (large N's path)."""
    monkeypatch.setattr(tuning_mod, "BOUND_BYTES", 4 * 600 * 7)
    monkeypatch.setattr(tuning_mod, "SEED_BLOCK", seed_block)
    monkeypatch.setattr(tuning_mod, "DENSE_SHARE", 1.0)
    rng = np.random.default_rng(8)
    v = clustered(rng, 750, 24)
    v[600:] = 4 * v[600:] + 10
    ids = np.arange(750) * 3 + 1
    index = pruned(ids[:600], v[:600], metric=metric, k=6, dims=8)
    assert candidate_share(index, v[:20], 6) < 0.3
    model = dict(zip(ids[:600].tolist(), v[:600], strict=True))
    before = check_exact(index, model, metric, 6)
    for batch in ([ids[600:700]], [ids[700:], ids[:30]]):
        new_ids = np.concatenate(batch)
        new_v = np.concatenate([v[600:700]] if len(batch) == 1 else
                               [v[700:], v[:30][::-1] + np.float32(0.01)])
        changed = index.upsert(new_ids, new_v)
        added = {int(i) for i in new_ids if int(i) not in model}
        model.update(zip(new_ids.tolist(), new_v, strict=True))
        after = check_exact(index, model, metric, 6)
        assert changed == diff_lists(before, after) | added
        before = after
    gone = ids[rng.choice(750, 60, replace=False)]
    changed = index.remove(gone)
    for i in gone.tolist():
        model.pop(i)
    assert changed == diff_lists(before, check_exact(index, model, metric, 6))


def test_isotropic_noise_prunes_nothing_and_stays_exact():
    """Gaussian noise in 64 dimensions: the 4 leading axes carry no structure, nearly every
    row is a candidate, the pruned pass falls back to the full scan."""
    rng = np.random.default_rng(9)
    v = rng.normal(size=(400, 64)).astype(np.float32)
    index = pruned(np.arange(300), v[:300], k=5, dims=4)
    assert candidate_share(index, v[300:320], 5) > 0.5
    model = dict(zip(range(300), v[:300], strict=True))
    index.upsert(np.arange(300, 400), v[300:])
    model.update(zip(range(300, 400), v[300:], strict=True))
    index.remove([0, 1, 350])
    for i in (0, 1, 350):
        model.pop(i)
    check_exact(index, model, "euclidean", 5)


def test_duplicates_and_ties_by_id_with_pruning(monkeypatch):
    """Each of 40 vectors stored 6 times: every list is the other copies (distance 0, by
    id) then the nearest other vector's copies, tied by id."""
    monkeypatch.setattr(tuning_mod, "DENSE_SHARE", 1.0)
    rng = np.random.default_rng(10)
    base = rng.integers(0, 4, size=(40, 16)).astype(np.float32)
    v = np.repeat(base, 6, axis=0)
    ids = rng.permutation(240) + 7
    index = pruned(ids, v, k=8, dims=3)
    model = dict(zip(ids.tolist(), v, strict=True))
    before = check_exact(index, model, "euclidean", 8)
    changed = index.upsert([1000, 1001], base[:2])
    model.update({1000: base[0], 1001: base[1]})
    after = check_exact(index, model, "euclidean", 8)
    assert changed == diff_lists(before, after) | {1000, 1001}
    q = base[5] + np.float32(0.5)
    ref = ref_lists({**model, -1: q}, "euclidean", 12)[-1]
    assert index.query(q, k=12) == ref
    assert index.query(q, k=12, exclude=[i for i, _ in ref[:3]]) == [
        x for x in ref_lists({**model, -1: q}, "euclidean", 15)[-1] if x not in ref[:3]][:12]
    pid = int(ids[0])
    wide = ref_lists(model, "euclidean", 20)[pid]
    assert index.neighbours(pid, 20) == wide


def test_too_few_rows_and_empty_after_removals():
    rng = np.random.default_rng(12)
    v = clustered(rng, 8, 6)
    index = pruned(np.arange(8), v, k=10, dims=2)
    model = dict(zip(range(8), v, strict=True))
    check_exact(index, model, "euclidean", 10)
    index.remove(list(range(7)))
    assert index.neighbours(7) == [] and index.query(v[0], k=3) == [(7, index.query(
        v[0], k=1)[0][1])]
    index.remove([7])
    assert len(index) == 0 and index.query(v[0]) == []
    index.upsert([50, 51], v[:2])
    check_exact(index, {50: v[0], 51: v[1]}, "euclidean", 10)


# ---------------------------------------------------------------- persistence


META = MatrixMeta(weights_sha256="cd" * 32, policy="center-crop-224", metric="euclidean")


def test_store_maps_the_low_coordinates_and_refits_on_compaction(tmp_path):
    rng = np.random.default_rng(13)
    v = clustered(rng, 500, 16)
    st = MatrixStore(tmp_path, meta=META, k=5, dim=16, layout="topk")
    index = st.publish_generation(pruned(np.arange(400), v[:400], dims=6))
    assert isinstance(index, TopKIndex) and index.basis is not None
    reader = st.load()
    assert isinstance(reader, TopKIndex) and reader.basis is not None
    assert isinstance(reader._low.base, np.memmap) and not reader._low.base.flags.writeable
    np.testing.assert_array_equal(reader.basis.axes, index.basis.axes)
    changed = st.upsert(index, np.arange(400, 500), v[400:]) | st.remove(index, [3, 4])
    assert st.refresh(reader) == changed and lists_of(reader) == lists_of(index)
    model = dict(zip(index.ids.tolist(), index.vectors, strict=True))
    assert reader.query(v[0] + 1, k=7) == index.query(v[0] + 1, k=7)
    old_axes = index.basis.axes.copy()
    st.compact(index)
    assert not np.array_equal(index.basis.axes, old_axes)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert sum(n.endswith(".low.npy") for n in names) == 1
    fresh = st.load()
    assert fresh.basis is not None and fresh._low.base.shape == (498, 7)
    check_exact(fresh, model, "euclidean", 5)
    st.upsert(fresh, [900], v[:1] + np.float32(0.1))
    model[900] = v[0] + np.float32(0.1)
    check_exact(fresh, model, "euclidean", 5)


def test_small_builds_stay_unpruned_and_large_ones_prune(monkeypatch):
    rng = np.random.default_rng(14)
    v = clustered(rng, 300, 8)
    assert TopKIndex.build(np.arange(300), v, dim=8).basis is None
    monkeypatch.setattr(tuning_mod, "PRUNE_MIN_ROWS", 200)
    index = TopKIndex.build(np.arange(300), v, dim=8)
    assert index.basis is not None
    check_exact(index, dict(zip(range(300), v, strict=True)), "euclidean", 10)


def test_a_distributed_rebuild_publishes_a_pruned_base(tmp_path, monkeypatch):
    """Blocks computed unpruned from the rebuild input; the writer fits the basis when it
    publishes them, and the published base prunes (its lists still exact)."""
    monkeypatch.setattr(tuning_mod, "PRUNE_MIN_ROWS", 100)
    rng = np.random.default_rng(16)
    v = clustered(rng, 300, 16)
    st = MatrixStore(tmp_path, meta=META, k=5, dim=16, layout="topk")
    inp = st.rebuild_input(np.arange(300), v)
    blocks = [knn_block(inp, s, s + 128, k=5, metric="euclidean") for s in (0, 128, 256)]
    index = st.publish_rebuild(inp, blocks)
    assert index.basis is not None
    fresh = st.load()
    assert isinstance(fresh, TopKIndex) and fresh.basis is not None
    model = dict(zip(range(300), v, strict=True))
    check_exact(fresh, model, "euclidean", 5)
    st.upsert(fresh, [1000], v[:1] * 2)
    model[1000] = v[0] * 2
    check_exact(fresh, model, "euclidean", 5)
