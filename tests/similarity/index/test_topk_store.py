"""MatrixStore with the top-k layout: mmap'ed vectors, list-carrying deltas, atomicity,
fencing, the dense -> top-k switch, and the distributed rebuild's blocks."""

import os
from pathlib import Path

import numpy as np
import pytest

from similarity.errors import MatrixError
from similarity.index.block_knn import input_size, knn_block, merge_blocks
from similarity.index.dense import DistanceMatrix
from similarity.index.store import MatrixMeta, MatrixStore
from similarity.index.topk import TopKIndex
from tests.similarity.index.test_store import run_crashing_writer
from tests.similarity.index.test_topk import RandomOps, check_exact, diff_lists, lists_of

DIM = 8
META = MatrixMeta(weights_sha256="ab" * 32, policy="center-crop-224", metric="euclidean")


def make_store(path, **kw) -> MatrixStore:
    kw.setdefault("layout", "topk")
    return MatrixStore(path, meta=kw.pop("meta", META), k=kw.pop("k", 4), dim=DIM, **kw)


def vecs(rng, n, dim=DIM):
    return rng.normal(size=(n, dim)).astype(np.float32)


def files(path):
    return sorted(p.name for p in Path(path).iterdir())


def temps(path):
    return [n for n in files(path) if n.endswith(".tmp")]


# ---------------------------------------------------------------- round trips


def test_base_vectors_are_a_read_only_memory_map_and_deltas_replay(tmp_path):
    rng = np.random.default_rng(1)
    st = make_store(tmp_path)
    index = st.rebuild(np.arange(40), vecs(rng, 40))
    assert isinstance(index, TopKIndex)
    reader = make_store(tmp_path).load()
    assert isinstance(reader.vectors, np.memmap) and not reader.vectors.flags.writeable
    assert lists_of(reader) == lists_of(index)
    changed = st.upsert(index, [100, 3], vecs(rng, 2))
    changed |= st.remove(index, [5, 7])
    assert any(n.endswith(".vectors.npy") for n in files(tmp_path))
    # The reader replays the two deltas: lists come from the log, the base stays mapped.
    assert make_store(tmp_path).refresh(reader) == changed
    assert lists_of(reader) == lists_of(index) and reader.version == index.version
    assert isinstance(reader._rows.base, np.memmap)
    fresh = make_store(tmp_path).load()
    assert lists_of(fresh) == lists_of(index)
    model = dict(zip(index.ids.tolist(), index.vectors, strict=True))
    check_exact(fresh, model, "euclidean", 4)


def test_every_file_loads_without_pickle(tmp_path):
    rng = np.random.default_rng(2)
    st = make_store(tmp_path, max_deltas=3)
    index = st.load()
    for i in range(8):
        st.upsert(index, [i], vecs(rng, 1))
    st.remove(index, [2])
    for name in files(tmp_path):
        path = tmp_path / name
        if name.endswith(".npz"):
            with np.load(path, allow_pickle=False) as z:
                for key in z.files:
                    assert z[key].dtype.kind in "iufU", (name, key)
        elif name.endswith(".npy"):
            assert np.load(path, allow_pickle=False, mmap_mode="r").dtype == np.float32


def test_compaction_drops_dead_rows_and_old_files(tmp_path):
    rng = np.random.default_rng(3)
    st = make_store(tmp_path, max_deltas=4)
    index = st.rebuild(np.arange(10), vecs(rng, 10))
    for i in range(6):
        st.upsert(index, [i], vecs(rng, 1))  # updates: dead rows
    loaded = make_store(tmp_path).load()
    assert lists_of(loaded) == lists_of(index)
    st.compact(index)
    compacted = make_store(tmp_path).load()
    assert compacted.dead_rows == 0 and lists_of(compacted) == lists_of(index)
    gen = compacted.version[0]
    assert [n for n in files(tmp_path) if not n.startswith(f"base-{gen:08d}")] == []


def test_store_ops_match_bruteforce_and_a_fresh_load(tmp_path):
    ops = RandomOps(5, "grid", "euclidean", DIM)
    st = make_store(tmp_path, max_deltas=7)
    index = st.load()
    before: dict = {}
    for _ in range(60):
        op, batch, vs = ops.next()
        changed = (st.remove(index, batch) if op == "remove"
                   else st.upsert(index, batch, np.stack(vs)))
        added = ops.apply_model(op, batch, vs)
        after = check_exact(index, ops.model, "euclidean", 4)
        assert changed == diff_lists(before, after) | added
        before = after
    assert lists_of(make_store(tmp_path).load()) == before


# ---------------------------------------------------------------- atomicity and fencing


def test_refused_fence_publishes_nothing_and_the_index_reloads(tmp_path):
    rng = np.random.default_rng(6)
    st = make_store(tmp_path)
    index = st.rebuild([1, 2, 3], vecs(rng, 3))
    before = files(tmp_path)

    def expired():
        raise MatrixError("lock lost")

    st.fence = expired
    with pytest.raises(MatrixError, match="lock lost"):
        st.upsert(index, [4], vecs(rng, 1))
    assert files(tmp_path) == before and temps(tmp_path) == []
    assert index.version == (-1, -1)  # applied in memory, not logged: reload on next use
    st.fence = None
    st.upsert(index, [5], vecs(rng, 1))
    assert 4 not in index and sorted(make_store(tmp_path).load().ids.tolist()) == [1, 2, 3, 5]


def test_failed_base_publish_leaves_an_orphan_vectors_file_but_a_loadable_state(
        tmp_path, monkeypatch):
    rng = np.random.default_rng(7)
    st = make_store(tmp_path)
    index = st.rebuild([1, 2, 3], vecs(rng, 3))
    st.upsert(index, [4], vecs(rng, 1))
    real_link = os.link

    def link(src, dst, *a, **kw):
        if Path(dst).name.endswith(".npz") and Path(dst).name.startswith("base-"):
            raise OSError(5, "Input/output error")
        return real_link(src, dst, *a, **kw)

    monkeypatch.setattr(os, "link", link)
    with pytest.raises(MatrixError, match="Input/output error"):
        st.compact(index)
    monkeypatch.undo()
    assert lists_of(make_store(tmp_path).load()) == lists_of(index)
    other = make_store(tmp_path)
    om = other.load()
    other.upsert(om, [5], vecs(rng, 1))  # finishes the compaction; orphans are cleaned later
    assert sorted(make_store(tmp_path).load().ids.tolist()) == [1, 2, 3, 4, 5]
    other.compact(om)
    assert len([n for n in files(tmp_path) if n.endswith(".vectors.npy")]) == 1


def test_writer_killed_before_publishing_leaves_the_state_unchanged(tmp_path):
    rng = np.random.default_rng(8)
    st = make_store(tmp_path)
    index = st.rebuild([1, 2, 3], vecs(rng, 3))
    run_crashing_writer(tmp_path, ', layout="topk"')
    assert len(temps(tmp_path)) == 1
    loaded = make_store(tmp_path).load()
    assert 99 not in loaded and lists_of(loaded) == lists_of(index)
    st.upsert(index, [4], vecs(rng, 1))
    assert temps(tmp_path) == []


# ---------------------------------------------------------------- the switch


def test_a_catalog_grown_across_the_bound_switches_layout_without_losing_a_list(tmp_path):
    """One random sequence: dense below the bound, converted in the writer when it is
    crossed, top-k above it; every list equals brute force at every step, and a reader that
    loaded the dense matrix reads the same lists after the switch."""
    bound = 25
    ops = RandomOps(9, "normal", "euclidean", DIM, max_n=60)
    st = make_store(tmp_path, layout="dense", k=5)
    index = st.load()
    reader_store = make_store(tmp_path, layout="dense", k=5)
    reader = reader_store.load()
    before: dict = {}
    switched_at = None
    for step in range(160):
        op, batch, vs = ops.next()
        changed = (st.remove(index, batch) if op == "remove"
                   else st.upsert(index, batch, np.stack(vs)))
        added = ops.apply_model(op, batch, vs)
        if isinstance(index, DistanceMatrix) and len(index) > bound:
            lists = lists_of(index)
            index = st.convert(index, "topk")
            assert isinstance(index, TopKIndex) and lists_of(index) == lists
            switched_at = step
        after = check_exact(index, ops.model, "euclidean", 5)
        assert changed == diff_lists(before, after) | added
        before = after
    assert switched_at is not None and isinstance(index, TopKIndex)
    fresh = reader_store.load()
    assert isinstance(fresh, TopKIndex) and lists_of(fresh) == before
    reader_store.refresh(reader)  # the old reader object follows (state replaced in place)
    assert lists_of(reader) == before


# ---------------------------------------------------------------- distributed rebuild


@pytest.mark.parametrize("engine", ["numpy", "faiss"])
def test_knn_blocks_merged_equal_bruteforce_and_publish(tmp_path, engine):
    rng = np.random.default_rng(10)
    base = vecs(rng, 300, 16)
    all_vecs = np.vstack([base, base[:20], np.round(base[20:200])])  # duplicates and ties
    ids = rng.permutation(10_000)[: all_vecs.shape[0]]
    st = MatrixStore(tmp_path, meta=META, k=6, dim=16, layout="topk", engine=engine)
    inp = st.rebuild_input(ids, all_vecs)
    n = input_size(inp)
    blocks = [knn_block(inp, s, s + 77, k=6, metric="euclidean", engine=engine)
              for s in range(0, n, 77)]
    assert np.array_equal(blocks[1][1], knn_block(inp, 77, 154, k=6, metric="euclidean")[1])
    dense = DistanceMatrix.build(ids, all_vecs, k=6, dim=16)
    index = st.publish_rebuild(inp, blocks)
    assert lists_of(index) == lists_of(dense)
    with pytest.raises(MatrixError, match="miss"):
        merge_blocks(ids, blocks[1:], 6)
    with pytest.raises(MatrixError, match="overlap"):
        merge_blocks(ids, blocks + blocks[:1], 6)
    loaded = MatrixStore(tmp_path, meta=META, k=6, dim=16).load()
    assert isinstance(loaded, TopKIndex) and lists_of(loaded) == lists_of(dense)
    # The input's vectors became the base's by a hard link, not a copy.
    base_npy = next(p for p in tmp_path.iterdir() if p.name.endswith(".vectors.npy"))
    assert base_npy.stat().st_ino == (inp / "vectors.npy").stat().st_ino


def test_shortlists_stay_exact_on_larger_real_scale_data():
    """2,000 products of dimension 64 (shortlists much smaller than N), with clusters of
    near duplicates: the top-k layout equals the dense matrix bit for bit."""
    rng = np.random.default_rng(11)
    centres = rng.normal(size=(100, 64)).astype(np.float32)
    v = np.repeat(centres, 20, axis=0) + 1e-3 * rng.normal(size=(2000, 64)).astype(np.float32)
    ids = np.arange(2000)
    dense = DistanceMatrix.build(ids, v, k=10, dim=64)
    topk = TopKIndex.build(ids, v, k=10, dim=64)
    assert lists_of(topk) == lists_of(dense)
    new = v[:5] + np.float32(1e-4)
    assert dense.upsert([5000, 1, 2, 3, 5001], new) == topk.upsert([5000, 1, 2, 3, 5001], new)
    assert dense.remove([0, 20, 40]) == topk.remove([0, 20, 40])
    assert lists_of(topk) == lists_of(dense)
