"""MatrixStore: .npz round trips, replay, staleness, atomicity, fencing and compaction."""

import fcntl
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import cdist

import similarity.index.store_format as store_mod
from similarity.errors import MatrixError, MatrixFullError, StaleMatrixError
from similarity.index.dense import DistanceMatrix
from similarity.index.store import ConcurrentWriterError, MatrixMeta, MatrixStore

REPO = Path(__file__).resolve().parents[3]
DIM = 8
META = MatrixMeta(weights_sha256="ab" * 32, policy="center-crop-224", metric="euclidean")


def make_store(path, meta=META, **kw) -> MatrixStore:
    return MatrixStore(path, meta=meta, k=kw.pop("k", 4), dim=kw.pop("dim", DIM), **kw)


def vecs(rng, n):
    return rng.normal(size=(n, DIM)).astype(np.float32)


def assert_same(a: DistanceMatrix, b: DistanceMatrix) -> None:
    """Same products, vectors, distances and lists (compared per id, row order aside)."""
    assert sorted(a.ids.tolist()) == sorted(b.ids.tolist())
    oa, ob = np.argsort(a.ids), np.argsort(b.ids)
    assert np.array_equal(a.vectors[oa], b.vectors[ob])
    assert np.array_equal(a.distances[np.ix_(oa, oa)], b.distances[np.ix_(ob, ob)])
    for i in a.ids.tolist():
        assert a.neighbours(i) == b.neighbours(i)


def files(path, pattern="*"):
    return sorted(p.name for p in Path(path).glob(pattern))


def temps(path):
    return [n for n in files(path, ".*") if n.endswith(".tmp")]


def run_crashing_writer(path, store_kwargs: str = "") -> None:
    """Another process upserts product 99 and is SIGKILLed once its temp file is written
    and fsynced, right where it would publish it."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        import numpy as np
        sys.path.insert(0, {str(REPO)!r})
        from similarity.index.store import MatrixMeta, MatrixStore
        st = MatrixStore({str(path)!r}, meta=MatrixMeta(*{tuple(vars(META).values())!r}),
                         k=4, dim={DIM}{store_kwargs})
        m = st.load()
        def crash(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        os.link = crash
        st.upsert(m, [99], np.ones((1, {DIM}), np.float32))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == -9, proc.stderr


# ---------------------------------------------------------------- round trips


def test_empty_directory_loads_an_empty_matrix(tmp_path):
    m = make_store(tmp_path / "new").load()
    assert len(m) == 0 and m.version == (0, 0) and m.metric == "euclidean"


def test_round_trip_through_base_and_deltas(tmp_path):
    rng = np.random.default_rng(1)
    st = make_store(tmp_path)
    m = st.rebuild(np.arange(0, 40, 2), vecs(rng, 20))
    assert st.upsert(m, [101, 103], vecs(rng, 2))
    st.upsert(m, [4], vecs(rng, 1))
    st.remove(m, [6, 8])
    assert files(tmp_path) == ["base-00000001.npz"] + [
        f"delta-00000001-{s:08d}.npz" for s in (1, 2, 3)
    ]
    loaded = make_store(tmp_path).load()
    assert loaded.version == m.version == (1, 3)
    assert np.array_equal(loaded.ids, m.ids)  # same ops in the same order: same row order
    assert np.array_equal(loaded.distances, m.distances)
    for x, y in zip(loaded.top_k_table(), m.top_k_table(), strict=True):
        assert np.array_equal(x, y)


def test_replay_equals_in_memory_state_and_bruteforce(tmp_path):
    rng = np.random.default_rng(2)
    st = make_store(tmp_path)
    m = st.load()
    for _ in range(40):
        r = rng.random()
        if r < 0.5 or len(m) < 3:
            ids = rng.integers(0, 60, size=int(rng.integers(1, 4)))
            st.upsert(m, ids, vecs(rng, ids.size))
        else:
            st.remove(m, rng.choice(m.ids, size=2, replace=False))
    loaded = make_store(tmp_path).load()
    assert_same(loaded, m)
    ref = cdist(loaded.vectors.astype(np.float64), loaded.vectors.astype(np.float64))
    np.testing.assert_allclose(loaded.distances, ref, atol=1e-4)


def test_every_file_loads_without_pickle_and_has_plain_dtypes(tmp_path):
    rng = np.random.default_rng(3)
    st = make_store(tmp_path)
    m = st.rebuild([5, 6, 7], vecs(rng, 3))
    st.upsert(m, [8], vecs(rng, 1))
    st.remove(m, [5])
    seen = set()
    for p in Path(tmp_path).glob("*.npz"):
        with np.load(p, allow_pickle=False) as z:
            for key in z.files:
                arr = z[key]
                assert arr.dtype != object, (p.name, key)
                seen.add((p.name[:4], key, arr.dtype.kind))
    assert ("base", "ids", "i") in seen and ("base", "distances", "f") in seen
    assert ("base", "weights_sha256", "U") in seen and ("delt", "op", "U") in seen
    with np.load(tmp_path / "base-00000001.npz", allow_pickle=False) as z:
        assert z["ids"].dtype == np.int64 and z["vectors"].dtype == np.float32
        assert z["distances"].dtype == np.float32 and z["distances"].shape == (3, 3)
        assert z["nbr_ids"].shape == (3, 4) and str(z["metric"]) == "euclidean"
        assert int(z["format"]) == store_mod.FORMAT_VERSION


# ---------------------------------------------------------------- staleness


@pytest.mark.parametrize(
    ("field", "other"),
    [
        ("weights", MatrixMeta("cd" * 32, META.policy, META.metric)),
        ("policy", MatrixMeta(META.weights_sha256, "letterbox-224", META.metric)),
        ("metric", MatrixMeta(META.weights_sha256, META.policy, "cosine")),
    ],
)
def test_stale_meta_is_detected(tmp_path, field, other):
    rng = np.random.default_rng(4)
    make_store(tmp_path).rebuild([1, 2, 3], vecs(rng, 3))
    with pytest.raises(StaleMatrixError) as e:
        make_store(tmp_path, meta=other).load()
    msg = str(e.value)
    assert f"{field}: stored" in msg and "expected" in msg
    assert msg.count(": stored") == 1  # only the field that differs
    inspected = make_store(tmp_path, meta=other).load(allow_stale=True)
    assert len(inspected) == 3 and inspected.metric == "euclidean"
    # A stale matrix cannot be written through a store that expects something else.
    if field == "metric":
        with pytest.raises(StaleMatrixError):
            make_store(tmp_path, meta=other).upsert(inspected, [9], vecs(rng, 1))


def test_stale_format_and_dim_are_detected(tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    monkeypatch.setattr(store_mod, "FORMAT_VERSION", 2)
    make_store(tmp_path).rebuild([1, 2], vecs(rng, 2))
    monkeypatch.setattr(store_mod, "FORMAT_VERSION", 1)
    with pytest.raises(StaleMatrixError, match="format: stored 2, expected 1"):
        make_store(tmp_path).load()
    with pytest.raises(StaleMatrixError, match="dim: stored 8, expected 16"):
        make_store(tmp_path, dim=16).load()


# ---------------------------------------------------------------- atomicity


def test_failed_delta_publish_leaves_old_state_and_no_temp(tmp_path, monkeypatch):
    rng = np.random.default_rng(6)
    st = make_store(tmp_path)
    m = st.rebuild([1, 2, 3], vecs(rng, 3))
    before = files(tmp_path)

    def broken_link(src, dst, *a, **kw):
        assert Path(src).stat().st_size > 0  # the temp file was fully written
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "link", broken_link)
    with pytest.raises(MatrixError, match="No space left"):
        st.upsert(m, [4], vecs(rng, 1))
    monkeypatch.undo()
    assert 4 not in m and m.version == (1, 0)  # write-ahead: not applied in memory
    assert files(tmp_path) == before and temps(tmp_path) == []
    assert 4 not in make_store(tmp_path).load()
    st.upsert(m, [4], vecs(rng, 1))  # and the store still works
    assert 4 in make_store(tmp_path).load()


def test_failed_base_publish_keeps_a_loadable_state(tmp_path, monkeypatch):
    rng = np.random.default_rng(7)
    st = make_store(tmp_path)
    m = st.rebuild([1, 2, 3], vecs(rng, 3))
    st.upsert(m, [4], vecs(rng, 1))
    real_link = os.link

    def link(src, dst, *a, **kw):
        if Path(dst).name.startswith("base-"):
            raise OSError(5, "Input/output error")
        return real_link(src, dst, *a, **kw)

    monkeypatch.setattr(os, "link", link)
    with pytest.raises(MatrixError, match="Input/output error"):
        st.compact(m)
    monkeypatch.undo()
    # The generation is sealed but there is no new base: the old state loads ...
    assert "delta-00000001-00000002.npz" in files(tmp_path)
    assert temps(tmp_path) == []
    assert_same(make_store(tmp_path).load(), m)
    # ... and the next writer (another process) finishes the compaction, then writes.
    other = make_store(tmp_path)
    om = other.load()
    other.upsert(om, [5], vecs(rng, 1))
    assert files(tmp_path) == ["base-00000002.npz", "delta-00000002-00000001.npz"]
    st.upsert(m, [6], vecs(rng, 1))  # the first writer reloads the new generation
    assert sorted(make_store(tmp_path).load().ids.tolist()) == [1, 2, 3, 4, 5, 6]


def test_crash_mid_write_leaves_a_temp_file_that_the_next_write_removes(tmp_path):
    rng = np.random.default_rng(8)
    st = make_store(tmp_path)
    m = st.rebuild([1, 2, 3], vecs(rng, 3))
    run_crashing_writer(tmp_path)
    left = temps(tmp_path)
    assert len(left) == 1
    assert (tmp_path / left[0]).stat().st_size > 0
    loaded = make_store(tmp_path).load()
    assert 99 not in loaded and len(loaded) == 3
    st.upsert(m, [4], vecs(rng, 1))
    assert temps(tmp_path) == []


def test_unpublished_garbage_is_invisible_and_cleaned(tmp_path):
    rng = np.random.default_rng(9)
    st = make_store(tmp_path)
    m = st.rebuild([1, 2, 3], vecs(rng, 3))
    st.upsert(m, [4], vecs(rng, 1))
    real = (tmp_path / "delta-00000001-00000001.npz").read_bytes()
    # A half-written next delta under a temp name, and junk that only looks like a delta.
    (tmp_path / ".w-crashed.tmp").write_bytes(real[: len(real) // 2])
    (tmp_path / "delta-00000001-00000002.npz.tmp").write_bytes(b"garbage")
    (tmp_path / "delta-1-3.npz").write_bytes(b"garbage")
    loaded = make_store(tmp_path).load()
    assert loaded.version == (1, 1)
    assert_same(loaded, m)
    assert st.cleanup_temp() == 1
    assert ".w-crashed.tmp" not in files(tmp_path, ".*")


def test_cleanup_leaves_temp_files_of_live_writers(tmp_path):
    st = make_store(tmp_path)
    live = tmp_path / ".w-live.tmp"
    live.write_bytes(b"being written")
    with live.open("rb") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # as a writer in another process holds it
        assert st.cleanup_temp() == 0
        assert live.exists()
    assert st.cleanup_temp() == 1
    assert not live.exists()


def test_published_corrupt_file_is_a_matrix_error(tmp_path):
    rng = np.random.default_rng(10)
    st = make_store(tmp_path)
    m = st.rebuild([1, 2, 3], vecs(rng, 3))
    st.upsert(m, [4], vecs(rng, 1))
    path = tmp_path / "delta-00000001-00000001.npz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(MatrixError, match=r"delta-00000001-00000001\.npz"):
        make_store(tmp_path).load()


# ---------------------------------------------------------------- fencing


def test_sequential_writers_in_two_processes_see_each_other(tmp_path):
    rng = np.random.default_rng(11)
    a_store, b_store = make_store(tmp_path), make_store(tmp_path)
    a_store.rebuild(np.arange(10), vecs(rng, 10))
    a, b = a_store.load(), b_store.load()
    va, vb = vecs(rng, 1), vecs(rng, 1)
    a_store.upsert(a, [100], va)
    changed = b_store.upsert(b, [200], vb)  # refreshes first: applies A's delta, then writes
    assert 200 in changed
    assert 100 in b and 200 in b and b.version == (1, 2)
    a_store.refresh(a)
    assert_same(a, b)
    assert_same(make_store(tmp_path).load(), b)


def test_writer_racing_past_refresh_gets_concurrent_writer_error(tmp_path, monkeypatch):
    rng = np.random.default_rng(12)
    a_store, b_store = make_store(tmp_path), make_store(tmp_path)
    a_store.rebuild(np.arange(10), vecs(rng, 10))
    a, b = a_store.load(), b_store.load()
    real_refresh = b_store.refresh

    def refresh_then_a_writes(matrix):
        out = real_refresh(matrix)
        a_store.upsert(a, [100], vecs(rng, 1))  # lands between B's refresh and B's write
        return out

    monkeypatch.setattr(b_store, "refresh", refresh_then_a_writes)
    with pytest.raises(ConcurrentWriterError, match="concurrent writer") as e:
        b_store.upsert(b, [200], vecs(rng, 1))
    assert isinstance(e.value, MatrixError)
    assert 200 not in b and 100 not in b and b.version == (1, 0)
    monkeypatch.undo()
    b_store.upsert(b, [200], vecs(rng, 1))  # retry: refresh applies A's delta first
    final = make_store(tmp_path).load()
    assert {100, 200} <= set(final.ids.tolist())
    assert_same(final, b)


def test_stale_writer_cannot_overwrite_a_delta_linked_at_its_next_seq(tmp_path, monkeypatch):
    rng = np.random.default_rng(13)
    st = make_store(tmp_path)
    m = st.rebuild(np.arange(5), vecs(rng, 5))
    # Another writer's delta appears at seq 1 by a plain link of a finished file.
    src = tmp_path / "elsewhere.npz"
    with src.open("wb") as f:
        np.savez(f, **store_mod.delta_arrays(1, 1, "upsert", np.array([77]), vecs(rng, 1)))
    os.link(src, tmp_path / "delta-00000001-00000001.npz")
    src.unlink()
    monkeypatch.setattr(st, "refresh", lambda matrix: set())  # a writer that skips refresh
    with pytest.raises(ConcurrentWriterError, match=r"delta-00000001-00000001\.npz"):
        st.upsert(m, [88], vecs(rng, 1))
    monkeypatch.undo()
    with np.load(tmp_path / "delta-00000001-00000001.npz", allow_pickle=False) as z:
        assert z["ids"].tolist() == [77]  # untouched
    st.upsert(m, [88], vecs(rng, 1))
    assert 77 in m and 88 in m


def test_compaction_racing_a_writer_loses_nothing(tmp_path, monkeypatch):
    rng = np.random.default_rng(14)
    a_store, b_store = make_store(tmp_path), make_store(tmp_path)
    a_store.rebuild(np.arange(10), vecs(rng, 10))
    a, b = a_store.load(), b_store.load()
    a_store.upsert(a, [100], vecs(rng, 1))
    real_refresh = b_store.refresh

    def refresh_then_a_compacts(matrix):
        out = real_refresh(matrix)
        a_store.compact(a)  # seals generation 1, publishes base 2, deletes generation 1
        return out

    monkeypatch.setattr(b_store, "refresh", refresh_then_a_compacts)
    with pytest.raises(ConcurrentWriterError):
        b_store.upsert(b, [200], vecs(rng, 1))
    monkeypatch.undo()
    assert files(tmp_path) == ["base-00000002.npz"]  # B's late delta was withdrawn
    b_store.upsert(b, [200], vecs(rng, 1))
    assert b.version == (2, 1)
    final = make_store(tmp_path).load()
    assert {100, 200} <= set(final.ids.tolist())
    assert_same(final, b)


def test_matrix_not_from_the_store_is_refused(tmp_path):
    rng = np.random.default_rng(15)
    st = make_store(tmp_path)
    m = DistanceMatrix.build([1, 2], vecs(rng, 2), k=4, dim=DIM)
    with pytest.raises(MatrixError, match="not loaded from"):
        st.upsert(m, [3], vecs(rng, 1))
    empty = DistanceMatrix(k=4, dim=DIM)
    st.upsert(empty, [3], vecs(rng, 1))  # an empty one is simply brought up to date
    assert 3 in st.load()


# ---------------------------------------------------------------- compaction and rebuild


def test_compaction_keeps_state(tmp_path):
    rng = np.random.default_rng(16)
    st = make_store(tmp_path)
    m = st.rebuild(np.arange(20), vecs(rng, 20))
    for i in range(5):
        st.upsert(m, [100 + i], vecs(rng, 1))
    st.remove(m, [3])
    before = st.load()
    st.compact(m)
    assert files(tmp_path) == ["base-00000002.npz"]
    assert m.version == (2, 0)
    after = make_store(tmp_path).load()
    assert_same(after, before)
    assert_same(after, m)


def test_max_deltas_triggers_compaction(tmp_path):
    rng = np.random.default_rng(17)
    st = make_store(tmp_path, max_deltas=3)
    m = st.rebuild(np.arange(5), vecs(rng, 5))
    gens = set()
    for i in range(10):
        st.upsert(m, [100 + i], vecs(rng, 1))
        assert len(files(tmp_path, "delta-*")) <= 3
        assert len(files(tmp_path, "base-*")) == 1
        gens.add(m.version[0])
    assert len(gens) >= 3
    assert_same(make_store(tmp_path).load(), m)


def test_rebuild_starts_a_fresh_generation_and_writers_follow(tmp_path):
    rng = np.random.default_rng(18)
    st = make_store(tmp_path)
    old = st.rebuild(np.arange(5), vecs(rng, 5))
    st.upsert(old, [50], vecs(rng, 1))
    new = make_store(tmp_path).rebuild(np.arange(10, 15), vecs(rng, 5))
    assert new.version == (2, 0)
    assert files(tmp_path) == ["base-00000002.npz"]
    st.upsert(old, [60], vecs(rng, 1))  # generation changed: reload, then write
    assert sorted(old.ids.tolist()) == [10, 11, 12, 13, 14, 60]
    assert sorted(make_store(tmp_path).load().ids.tolist()) == [10, 11, 12, 13, 14, 60]


def test_noop_writes_write_nothing(tmp_path):
    rng = np.random.default_rng(19)
    st = make_store(tmp_path)
    v = vecs(rng, 3)
    m = st.rebuild([1, 2, 3], v)
    before = files(tmp_path)
    assert st.upsert(m, [2], v[1:2]) == set()
    assert st.remove(m, [42]) == set()
    assert files(tmp_path) == before


def test_bad_input_writes_nothing(tmp_path):
    st = make_store(tmp_path, max_items=1)
    m = st.rebuild([1], np.ones((1, DIM)))
    before = files(tmp_path)
    with pytest.raises(MatrixError, match="NaN"):
        st.upsert(m, [2], np.full((1, DIM), np.nan))
    with pytest.raises(MatrixFullError, match="max_items=1"):
        st.upsert(m, [2], np.ones((1, DIM)))
    assert files(tmp_path) == before


def test_changed_sets_through_the_store_match_the_matrix(tmp_path):
    rng = np.random.default_rng(20)
    v = vecs(rng, 15)
    st = make_store(tmp_path)
    m = st.rebuild(np.arange(15), v)
    twin = DistanceMatrix.build(np.arange(15), v, k=4, dim=DIM)
    for i in range(10):
        nv = vecs(rng, 1)
        assert st.upsert(m, [i * 3], nv) == twin.upsert([i * 3], nv)
    assert st.remove(m, [0, 1]) == twin.remove([0, 1])


# ---------------------------------------------------------------- info and lock


def test_info(tmp_path):
    rng = np.random.default_rng(21)
    st = make_store(tmp_path)
    m = st.rebuild(np.arange(6), vecs(rng, 6))
    st.upsert(m, [10, 11], vecs(rng, 2))
    st.remove(m, [0])
    info = MatrixStore.info(tmp_path)
    assert info["n"] == 7 and info["n_base"] == 6
    assert info["generation"] == 1 and info["deltas"] == 2 and info["seq"] == 2
    assert info["dim"] == DIM and info["k"] == 4 and info["metric"] == "euclidean"
    assert info["policy"] == META.policy and info["weights_sha256"] == META.weights_sha256
    assert info["format"] == 1
    assert info["bytes"] == sum(p.stat().st_size for p in tmp_path.glob("*.npz"))
    empty = MatrixStore.info(make_store(tmp_path / "none").directory)
    assert empty["n"] == 0 and empty["generation"] == 0 and empty["metric"] is None


def test_lock_serialises_stores_on_one_host(tmp_path):
    a, b = make_store(tmp_path), make_store(tmp_path)
    with a.lock(), pytest.raises(MatrixError, match="could not lock"), b.lock(timeout=0.05):
        pass
    with b.lock(timeout=0.05):
        pass


def test_stored_layout_reads_the_newest_base_only(tmp_path):
    rng = np.random.default_rng(0)
    dense = make_store(tmp_path)
    assert dense.stored_layout() is None  # nothing stored yet
    matrix = dense.rebuild([1, 2, 3], vecs(rng, 3))
    assert dense.stored_layout() == "dense"
    dense.convert(matrix, "topk")
    assert dense.stored_layout() == "topk"
    assert make_store(tmp_path, layout="dense").stored_layout() == "topk"  # what is on disk
