"""Lists inside the category: one index per category, persisted, in both layouts and across
the dense bound, against the brute force that applies the category rule."""

import numpy as np
import pytest

from similarity.errors import StaleMatrixError
from similarity.index import partition_search, topk_tuning
from similarity.index.partition_search import scanned_whole
from similarity.index.partition_store import PartitionedStore
from similarity.index.partitions import (
    NO_CATEGORY,
    PartitionedIndex,
    merge_nearest,
    partition_category,
    partition_name,
    partitions_present,
)
from similarity.index.rules import ListRules
from similarity.index.store import MatrixMeta, MatrixStore
from tests.rules_reference import brute

DIM, K = 6, 5
META = MatrixMeta(weights_sha256="ab" * 32, policy="center-crop-224", metric="euclidean")
CATEGORIES = ["Dress", "Coat", "Sneaker", NO_CATEGORY]


def make_store(path, layout: str) -> PartitionedStore:
    max_items = 12 if layout == "auto" else 1000
    return PartitionedStore(path, meta=META, k=K, dim=DIM, max_items=max_items, layout=layout)


def grid(rng) -> np.ndarray:
    return rng.integers(-2, 3, DIM).astype(np.float32)  # coarse: many ties


def expected(vectors: dict, category_of: dict) -> dict:
    return {pid: brute(vectors, set(vectors), vec, pid, ListRules(), META.metric, K,
                       category_of=category_of) for pid, vec in vectors.items()}


def lists_of(index: PartitionedIndex) -> dict:
    return {pid: index.neighbours(pid) for pid in index.ids.tolist()}


def random_step(rng, store, index, vectors, category_of, next_id):
    """One random create, photo change, category change or delete; returns the next id."""
    op = rng.choice(["create", "create", "photo", "category", "delete"])
    held = sorted(vectors)
    if op == "create" or not held:
        count = int(rng.integers(1, 4))
        ids = list(range(next_id, next_id + count))
        cats = [str(rng.choice(CATEGORIES)) for _ in ids]
        vecs = np.stack([grid(rng) for _ in ids])
        store.upsert(index, ids, vecs, cats)
        vectors.update(zip(ids, vecs, strict=True))
        category_of.update(zip(ids, cats, strict=True))
        return next_id + count
    pid = int(rng.choice(held))
    if op == "delete":
        store.remove(index, [pid])
        del vectors[pid], category_of[pid]
    else:
        vec = grid(rng) if op == "photo" else vectors[pid]
        cat = str(rng.choice(CATEGORIES)) if op == "category" else category_of[pid]
        store.upsert(index, [pid], vec[None], [cat])
        vectors[pid], category_of[pid] = vec, cat
    return next_id


@pytest.mark.parametrize("layout", ["dense", "topk", "auto"])
@pytest.mark.parametrize("seed", [0, 1])
def test_random_sequences_keep_every_list_inside_its_category(tmp_path, layout, seed):
    """Creates, photo changes, category changes and deletes ("auto": partitions cross the dense
    bound of 12); after every step every list equals the brute force inside the category, and
    a fresh load and a refreshed reader agree."""
    rng = np.random.default_rng(seed)
    store = make_store(tmp_path, layout)
    index = store.load()
    reader = make_store(tmp_path, layout).load()
    vectors: dict = {}
    category_of: dict = {}
    next_id = 1
    for _ in range(90):
        next_id = random_step(rng, store, index, vectors, category_of, next_id)
        assert lists_of(index) == expected(vectors, category_of)
    assert {index.category_of(pid) for pid in vectors} <= set(CATEGORIES)
    assert all(index.category_of(pid) == category_of[pid] for pid in vectors)
    make_store(tmp_path, layout).refresh(reader)
    assert lists_of(reader) == lists_of(index) == lists_of(make_store(tmp_path, layout).load())
    if layout == "auto":
        layouts = {part.layout for part in index.parts.values()}
        assert "topk" in layouts, "the sequence should take some partition past 12"


@pytest.mark.parametrize("layout", ["dense", "topk"])
def test_search_merges_the_partitions_exactly_and_searches_one_category(tmp_path, layout):
    rng = np.random.default_rng(3)
    ids = list(range(1, 41))
    vecs = np.stack([grid(rng) for _ in ids])
    cats = [CATEGORIES[i % len(CATEGORIES)] for i in range(len(ids))]
    index = make_store(tmp_path, layout).rebuild(ids, vecs, cats)
    vectors = dict(zip(ids, vecs, strict=True))
    category_of = dict(zip(ids, cats, strict=True))
    for _ in range(10):
        query = grid(rng)
        # Query as a product (id 0) of no catalog: every product is a candidate.
        everyone = brute(vectors, set(ids), query, 0, ListRules(exclude=frozenset({5})),
                         META.metric, 7)
        assert index.query(query, k=7, exclude=[5]) == everyone
        coats = brute(vectors, set(ids), query, 0, ListRules(), META.metric, 7,
                      category_of={**category_of, 0: "Coat"})
        assert index.query_within("Coat", query, k=7) == coats
    assert index.query_within("Hat", grid(rng), k=3) == []


def test_ties_merge_by_id():
    assert merge_nearest([[(4, 1.0), (9, 2.0)], [(2, 1.0), (3, 2.0)]], 3) == [
        (2, 1.0), (4, 1.0), (3, 2.0)]


def test_a_rebuild_drops_categories_no_longer_present_and_any_catalog_wide_store(tmp_path):
    rng = np.random.default_rng(4)
    plain = MatrixStore(tmp_path, meta=META, k=K, dim=DIM)
    plain.rebuild([1, 2, 3], np.stack([grid(rng) for _ in range(3)]))
    store = make_store(tmp_path, "dense")
    with pytest.raises(StaleMatrixError):
        store.load()
    store.rebuild([1, 2, 3], np.stack([grid(rng) for _ in range(3)]), ["Coat", "Coat", "Hat"])
    assert partitions_present(tmp_path) and plain.load().ids.size == 0
    index = store.rebuild([1, 2], np.stack([grid(rng) for _ in range(2)]), ["Coat", "Coat"])
    assert store.categories_on_disk() == ["Coat"] == list(index.parts)
    assert store.load().neighbours(1) == index.neighbours(1)


def test_partition_names_round_trip_any_category():
    for category in ["Dress", "", "T-shirt/top", "Ünïcode ✓", "none"]:
        name = partition_name(category)
        assert "/" not in name and partition_category(name) == category


@pytest.mark.parametrize(("dense_share", "extra"), [(1.0, 32), (1.0, 0), (0.25, 32)])
def test_search_across_stays_exact_as_partitions_change_between_searches(tmp_path, monkeypatch,
                                                                         dense_share, extra):
    """Small top-k partitions searched as one, pruned by a shared basis (``dense_share`` 1:
    never falling back to the full ranking; ``extra`` 0: every shortlist overflows and all
    candidates are settled) on coarse vectors full of ties: after every change (adds, a move,
    a removal, a reader's reload after a rebuild) the search equals the brute force over all
    products, ties by id."""
    monkeypatch.setattr(partition_search, "PRUNE_MIN_ROWS", 8)
    monkeypatch.setattr(partition_search, "SHORTLIST_EXTRA", extra)
    monkeypatch.setattr(topk_tuning, "DENSE_SHARE", dense_share)
    rng = np.random.default_rng(5)
    ids = list(range(1, 61))
    vecs = np.stack([grid(rng) for _ in ids])
    cats = [CATEGORIES[i % len(CATEGORIES)] for i in range(len(ids))]
    store = make_store(tmp_path, "topk")
    index = store.rebuild(ids, vecs, cats)
    reader = make_store(tmp_path, "topk").load()
    vectors = dict(zip(ids, vecs, strict=True))

    def check(searched: PartitionedIndex) -> None:
        for _ in range(4):
            query = grid(rng)
            everyone = brute(vectors, set(vectors), query, 0, ListRules(exclude=frozenset({7})),
                             META.metric, 9)
            assert searched.query(query, k=9, exclude=[7]) == everyone

    check(index)
    check(reader)
    store.upsert(index, [61, 62], np.stack([grid(rng), grid(rng)]), ["Coat", "Dress"])
    vectors.update({61: index.vector(61), 62: index.vector(62)})
    check(index)
    store.upsert(index, [3], vectors[3][None], ["Sneaker"])  # leaves its partition
    store.remove(index, [10, 11])
    del vectors[10], vectors[11]
    check(index)
    make_store(tmp_path, "topk").refresh(reader)
    check(reader)
    vectors = {pid: grid(rng) for pid in range(100, 140)}
    store.rebuild(list(vectors), np.stack(list(vectors.values())), ["Coat", "Hat"] * 20)
    make_store(tmp_path, "topk").refresh(reader)
    check(reader)
    assert all(scanned_whole(part) for part in reader.parts.values())
    assert index.scan_bounds.basis is not None and reader.scan_bounds.basis is not None
