"""Quality metrics, learned projections and near-duplicate collapsing, on hand-made data."""

from __future__ import annotations

import numpy as np
import pytest

from similarity.embedding.projection import (
    BlendProjection,
    LinearProjection,
    cross_validated_precision,
    fit_blend,
    fit_class_whitening,
    fit_lda,
    fit_pca_whitening,
    l2_normalise,
    select_by_cross_validation,
    stratified_folds,
)
from similarity.evaluation.metrics import (
    average_precision_at_k,
    evaluate,
    precision_at_k,
    rank,
    relevance,
)
from similarity.index.dedup import collapse, duplicate_groups

# ------------------------------------------------------------------------------ single lists


def test_rel_irrel_rel_with_two_relevant_available():
    rel = [True, False, True]
    assert precision_at_k(rel, 3) == pytest.approx(2 / 3)
    assert average_precision_at_k(rel, 3, n_relevant=2) == pytest.approx((1 / 1 + 2 / 3) / 2)


def test_average_precision_divides_by_min_k_and_relevant_available():
    # More relevant items exist than places: the divisor is k.
    assert average_precision_at_k([True, True, False], 3, n_relevant=5) == pytest.approx(2 / 3)
    # All relevant items on top: 1, whatever else follows.
    assert average_precision_at_k([True, True, False, False], 4, n_relevant=2) == 1.0
    # The only relevant item at rank 3.
    assert average_precision_at_k([False, False, True], 3, n_relevant=1) == pytest.approx(1 / 3)
    # A relevant item below the cut-off does not count.
    assert average_precision_at_k([False, False, True], 2, n_relevant=1) == 0.0
    # Relevant items that exist but were not listed still count in the divisor.
    assert average_precision_at_k([True, False, False], 3, n_relevant=3) == pytest.approx(1 / 3)


def test_precision_counts_missing_places_as_wrong_and_respects_available():
    assert precision_at_k([True, True], 10) == pytest.approx(0.2)
    assert precision_at_k([True, True, False], 10, available=3) == pytest.approx(2 / 3)
    assert precision_at_k([True] * 12, 10) == 1.0
    with pytest.raises(ValueError, match="undefined"):
        average_precision_at_k([True], 10, n_relevant=0)


def test_relevance_compares_with_the_query_category():
    rels = relevance(["a", "b"], [["a", "b", "a"], ["a", None]])
    assert [r.tolist() for r in rels] == [[True, False, True], [False, False]]


# ------------------------------------------------------------------------------ aggregation


def test_evaluate_per_category_and_overall():
    # catalog: 3 x "a", 2 x "b", 1 x "c"; queries from outside the catalog.
    catalog = ["a", "a", "a", "b", "b", "c"]
    queries = ["a", "a", "b", "d"]  # "d" has nothing relevant: not scored
    lists = [
        ["a", "b", "a"],  # P@3 2/3, AP (1 + 2/3) / 3
        ["b", "b", "c"],  # 0, 0
        ["b", "a", "b"],  # P@3 2/3, AP (1 + 2/3) / 2
        ["a", "a", "a"],
    ]
    report = evaluate(queries, lists, catalog_labels=catalog, k=3)
    ap_a1 = (1 + 2 / 3) / 3
    ap_b = (1 + 2 / 3) / 2
    assert report.n == 3
    assert report.precision == pytest.approx((2 / 3 + 0 + 2 / 3) / 3)
    assert report.map == pytest.approx((ap_a1 + 0 + ap_b) / 3)
    assert list(report.per_category) == ["a", "b"]
    assert report.per_category["a"].n == 2
    assert report.per_category["a"].precision == pytest.approx(1 / 3)
    assert report.per_category["a"].map == pytest.approx(ap_a1 / 2)
    assert report.per_category["b"].precision == pytest.approx(2 / 3)
    assert report.per_category["b"].map == pytest.approx(ap_b)
    assert report.worst()[0] == "a" and report.best()[0] == "b"
    as_dict = report.as_dict(names={"a": "Tops"}, digits=4)
    assert set(as_dict) == {"precision_at_3", "map_at_3", "per_category", "n"}
    tops = {"precision_at_3": 0.3333, "map_at_3": round(ap_a1 / 2, 4), "n": 2}
    assert as_dict["per_category"]["Tops"] == tops
    assert set(as_dict["per_category"]) == {"Tops", "b"}


def test_evaluate_queries_in_catalog_subtracts_themselves():
    # Two products of "a", one of "b": each "a" has one relevant item, "b" none (not scored),
    # and only two places can be filled.
    catalog = ["a", "a", "b"]
    report = evaluate(["a", "a", "b"], [["a", "b"], ["b", "a"], ["a", "a"]], catalog_labels=catalog,
                      k=10, queries_in_catalog=True)
    assert report.n == 2
    assert report.precision == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert report.map == pytest.approx((1.0 + 0.5) / 2)
    assert list(report.per_category) == ["a"]


def test_evaluate_nothing_to_score():
    report = evaluate(["x"], [["y"]], catalog_labels=["y"], k=10)
    assert report.n == 0 and report.precision is None and report.map is None
    assert report.as_dict() == {"precision_at_10": None, "map_at_10": None, "per_category": {}, "n": 0}


def test_numeric_categories_sort_numerically():
    report = evaluate([10, 2, 2, 10], [[10], [2], [2], [10]], catalog_labels=[2, 2, 10, 10], k=1)
    assert list(report.per_category) == [2, 10]


# ------------------------------------------------------------------------------ ranking


def test_rank_breaks_ties_by_catalog_position():
    d = np.array([[1.0, 0.5, 0.5, 2.0, 0.5]])
    assert rank(d, 3).tolist() == [[1, 2, 4]]
    assert rank(d, 10).tolist() == [[1, 2, 4, 0, 3]]
    # Same answer however often it is asked.
    assert all(rank(d, 2).tolist() == [[1, 2]] for _ in range(5))


def test_rank_excluding_self():
    d = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 3.0], [1.0, 3.0, 0.0]])
    assert rank(d, 5, exclude_self=True).tolist() == [[1, 2], [0, 2], [0, 1]]
    with pytest.raises(ValueError):
        rank(np.zeros((2, 3)), 1, exclude_self=True)


# ------------------------------------------------------------------------------ projections


def _classes_hidden_in_noise(per_class: int = 150, seed: int = 0):
    """4 classes at the corners of a tetrahedron in 3 low-variance directions of a 40-d space
    whose other 37 directions carry large noise: raw euclidean neighbours are mostly noise."""
    classes, dim = 4, 40
    means = np.zeros((classes, dim))
    means[:, :3] = [[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), per_class)
    noise = rng.standard_normal((y.size, dim)) * np.r_[np.full(3, 0.3), np.full(dim - 3, 3.0)]
    x = means[y] + noise + 20.0  # offset: keeps cosine and euclidean different too
    return x, y


def _precision(transform, x_cat, y_cat, x_q, y_q, k=10):
    zc, zq = transform(x_cat), transform(x_q)
    d = ((zq[:, None, :] - zc[None, :, :]) ** 2).sum(-1)
    return float((y_cat[rank(d, k)] == y_q[:, None]).mean())


def test_lda_separates_classes_that_raw_distance_does_not():
    x, y = _classes_hidden_in_noise()
    xq, yq = _classes_hidden_in_noise(per_class=20, seed=1)
    proj = fit_lda(x, y, pca_dim=39, shrinkage=0.05, input_l2=False, output_l2=False)
    assert isinstance(proj, LinearProjection)
    assert proj.input_dim == 40 and proj.output_dim == 3  # classes - 1
    assert proj.transform(xq).shape == (80, 3) and proj.transform(xq[0]).shape == (3,)
    raw = _precision(lambda v: v, x, y, xq, yq)
    learned = _precision(proj, x, y, xq, yq)
    assert raw < 0.6
    assert learned > 0.9


def test_class_whitening_keeps_dims_and_separates():
    x, y = _classes_hidden_in_noise()
    xq, yq = _classes_hidden_in_noise(per_class=20, seed=1)
    proj = fit_class_whitening(x, y, dim=40, shrinkage=0.0, input_l2=False, output_l2=False)
    assert proj.output_dim == 40
    assert _precision(proj, x, y, xq, yq) > _precision(lambda v: v, x, y, xq, yq) + 0.2
    # Within-class covariance of the output is the identity (no shrinkage, full dimension).
    z = proj.transform(x)
    within = np.vstack([z[y == c] - z[y == c].mean(0) for c in range(4)])
    cov = within.T @ within / (len(z) - 4)
    assert np.allclose(cov, np.eye(40), atol=1e-6)
    # Full shrinkage is plain PCA: an isotropic rescaling of the centred data (distances only scale).
    iso = fit_class_whitening(x, y, dim=40, shrinkage=1.0, input_l2=False, output_l2=False)
    d_iso = np.linalg.norm(iso.transform(x[:5]) - iso.transform(x[5:10]), axis=1)
    d_raw = np.linalg.norm(x[:5] - x[5:10], axis=1)
    assert np.allclose(d_iso / d_raw, (d_iso / d_raw)[0])


def test_pca_whitening_dims_and_unit_variance():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 20)) * np.linspace(10, 0.1, 20) + 5
    proj = fit_pca_whitening(x, dim=5, power=0.5, input_l2=False, output_l2=False)
    z = proj.transform(x)
    assert z.shape == (300, 5)
    assert np.allclose(z.mean(0), 0, atol=1e-9)
    assert np.allclose(np.cov(z, rowvar=False), np.eye(5), atol=1e-6)
    normed = fit_pca_whitening(x, dim=5)
    assert np.allclose(np.linalg.norm(normed.transform(x), axis=1), 1.0)
    with pytest.raises(ValueError, match="dim"):
        fit_pca_whitening(x, dim=21)


def test_projection_round_trip_and_key():
    x, y = _classes_hidden_in_noise()
    proj = fit_lda(x, y, pca_dim=39, shrinkage=0.1)
    again = LinearProjection.from_dict(proj.to_dict())
    assert again.key == proj.key and again.kind == "lda" and again.params["pca_dim"] == 39
    assert np.array_equal(again.transform(x), proj.transform(x))
    other = fit_lda(x, y, pca_dim=39, shrinkage=0.2)
    assert other.key != proj.key
    tampered = {**proj.to_dict(), "matrix": proj.matrix * 2}
    with pytest.raises(ValueError, match="key"):
        LinearProjection.from_dict(tampered)


def test_blend_is_lda_beside_cosine():
    x, y = _classes_hidden_in_noise()
    xq, yq = _classes_hidden_in_noise(per_class=20, seed=1)
    blend = fit_blend(x, y, weight=4.0, pca_dim=39, shrinkage=0.05)
    assert isinstance(blend, BlendProjection)
    z = blend.transform(xq)
    assert z.shape == (80, 3 + 40) and blend.output_dim == 43
    assert np.allclose(np.linalg.norm(z, axis=1), 1.0)
    # The second block is the cosine space itself, scaled.
    assert np.allclose(z[:, 3:] * np.sqrt(1 + 16), l2_normalise(xq))
    assert _precision(blend, x, y, xq, yq) > 0.85
    # weight 0 is plain cosine
    plain = fit_blend(x, y, weight=0.0, pca_dim=39, shrinkage=0.05)
    assert np.allclose(plain.transform(xq)[:, 3:], l2_normalise(xq))
    again = BlendProjection.from_dict(blend.to_dict())
    assert again.key == blend.key and np.allclose(again.transform(xq), z)


def test_stratified_folds_cover_everything_evenly():
    y = np.repeat([0, 1, 2], [8, 12, 4])
    folds = stratified_folds(y, 4, seed=1)
    assert sorted(np.concatenate(folds).tolist()) == list(range(24))
    for fold in folds:
        assert np.bincount(y[fold], minlength=3).tolist() == [2, 3, 1]
    assert [f.tolist() for f in stratified_folds(y, 4, seed=1)] == [f.tolist() for f in folds]


def test_selection_by_cross_validation_uses_only_the_data_given():
    x, y = _classes_hidden_in_noise()

    def make(shrinkage):
        return lambda a, b: fit_lda(a, b, pca_dim=39, shrinkage=shrinkage, input_l2=False, output_l2=False)

    best, score, tried = select_by_cross_validation(x, y, make, {"shrinkage": [0.0, 0.5, 1.0]}, folds=3)
    assert [p for p, _ in tried] == [{"shrinkage": 0.0}, {"shrinkage": 0.5}, {"shrinkage": 1.0}]
    assert score == max(s for _, s in tried) and best in [p for p, s in tried if s == score]
    assert score > 0.9
    raw = cross_validated_precision(x, y, lambda a, b: (lambda v: v), folds=3)
    assert raw < score


# ------------------------------------------------------------------------------ near-duplicates


def test_duplicate_groups_and_collapse():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((4, 16))
    vectors = np.vstack([base, base[1] * 3.0, base[2] + 1e-4 * rng.standard_normal(16)])
    # rows 4 (same direction as 1) and 5 (a hair away from 2) are copies
    groups = duplicate_groups(vectors, threshold=1e-3)
    assert groups.tolist() == [0, 1, 2, 3, 1, 2]
    assert duplicate_groups(vectors, threshold=1e-10).tolist() == [0, 1, 2, 3, 1, 5]
    ranked = np.array([[4, 1, 0, 5, 2, 3], [2, 5, 3, -1, -1, -1]])
    assert collapse(ranked, groups, 3).tolist() == [[4, 0, 5], [2, 3, -1]]
    assert collapse(ranked, np.arange(6), 3).tolist() == [[4, 1, 0], [2, 5, 3]]
