"""Product distances over several photos, checked against loops over the photo pairs."""

from __future__ import annotations

import numpy as np
import pytest

from similarity.index.product_distance import (
    PhotoGroups,
    chamfer,
    first_photo,
    mean_pair,
    mean_pair_from_centroids,
    mean_vectors,
    min_pair,
    product_vectors,
    spreads,
)


def _sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def _split(v: np.ndarray, g: PhotoGroups) -> list[np.ndarray]:
    return [v[s : s + c] for s, c in zip(g.starts, g.counts, strict=True)]


@pytest.fixture
def photos() -> tuple[np.ndarray, PhotoGroups, np.ndarray, PhotoGroups]:
    rng = np.random.default_rng(3)
    rows, cols = PhotoGroups.from_counts([1, 3, 2]), PhotoGroups.from_counts([2, 1, 3, 1])
    return rng.normal(size=(rows.n_photos, 5)), rows, rng.normal(size=(cols.n_photos, 5)), cols


def test_groups_from_counts() -> None:
    g = PhotoGroups.from_counts([2, 1, 3])
    assert g.starts.tolist() == [0, 2, 3] and g.n_photos == 6 and len(g) == 3
    assert PhotoGroups.single(2).counts.tolist() == [1, 1]
    with pytest.raises(ValueError, match="at least one photo"):
        PhotoGroups.from_counts([1, 0])


def test_reductions_match_pair_loops(photos) -> None:
    a, rows, b, cols = photos
    d = _sq(a, b)
    pairs = [[_sq(x, y) for y in _split(b, cols)] for x in _split(a, rows)]
    expected = {
        min_pair: [[p.min() for p in row] for row in pairs],
        mean_pair: [[p.mean() for p in row] for row in pairs],
        chamfer: [[(p.min(1).mean() + p.min(0).mean()) / 2 for p in row] for row in pairs],
        first_photo: [[p[0, 0] for p in row] for row in pairs],
    }
    for reduce, want in expected.items():
        np.testing.assert_allclose(reduce(d, rows, cols), np.array(want), err_msg=reduce.__name__)


def test_chamfer_of_one_photo_queries_halves_min_and_mean(photos) -> None:
    _, _, b, cols = photos
    d, one = _sq(np.random.default_rng(4).normal(size=(3, 5)), b), PhotoGroups.single(3)
    np.testing.assert_allclose(chamfer(d, one, cols), (min_pair(d, one, cols) + mean_pair(d, one, cols)) / 2)


def test_shape_mismatch_is_refused(photos) -> None:
    a, rows, b, cols = photos
    with pytest.raises(ValueError, match="distances"):
        min_pair(_sq(a, b)[:, 1:], rows, cols)


def test_mean_vectors_are_normalised_means(photos) -> None:
    a, rows, _, _ = photos
    m = mean_vectors(a, rows)
    for got, own in zip(m, _split(a, rows), strict=True):
        want = own.mean(0)
        np.testing.assert_allclose(got, want / np.linalg.norm(want))


def test_mean_pair_from_one_centroid_and_spread_per_product(photos) -> None:
    a, rows, b, cols = photos
    ca = np.add.reduceat(a, rows.starts, axis=0) / rows.counts[:, None]
    cb = np.add.reduceat(b, cols.starts, axis=0) / cols.counts[:, None]
    got = mean_pair_from_centroids(ca, spreads(a, rows), cb, spreads(b, cols))
    np.testing.assert_allclose(got, mean_pair(_sq(a, b), rows, cols))


def test_product_vectors_are_the_mean_direction_at_the_mean_length(photos) -> None:
    a, rows, _, _ = photos
    got = product_vectors(a, rows)
    assert got.shape == (len(rows), a.shape[1]) and got.dtype == np.float64
    for vec, own in zip(got, _split(a, rows), strict=True):
        mean = own.mean(0)
        want = mean / np.linalg.norm(mean) * np.linalg.norm(own, axis=1).mean()
        np.testing.assert_allclose(vec, want, rtol=1e-12)


def test_a_one_photo_product_keeps_its_vector_bit_for_bit() -> None:
    rng = np.random.default_rng(5)
    v = rng.normal(size=(6, 1280)).astype(np.float32) * np.float32(3.7)
    groups = PhotoGroups.from_counts([1, 3, 1, 1])
    got = product_vectors(v, groups)
    for row, start in zip((0, 2, 3), (0, 4, 5), strict=True):
        assert got[row].astype(np.float32).tobytes() == v[start].tobytes()
    assert got[0].tobytes() == v[0].astype(np.float64).tobytes()


def test_unit_vectors_give_the_normalised_mean(photos) -> None:
    a, rows, _, _ = photos
    unit = a / np.linalg.norm(a, axis=1, keepdims=True)
    got = product_vectors(unit, rows)
    np.testing.assert_allclose(got, mean_vectors(unit, rows), rtol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-12)


def test_photos_that_cancel_out_give_a_zero_vector() -> None:
    v = np.array([[1.0, 2.0], [-1.0, -2.0]])
    assert product_vectors(v, PhotoGroups.from_counts([2])).tolist() == [[0.0, 0.0]]
