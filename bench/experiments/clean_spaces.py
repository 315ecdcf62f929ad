"""The clean quality experiment's distance spaces: how raw vectors become the vectors compared
by euclidean distance (as they are, cosine, PCA-whitened, LDA, LDA blended with cosine), each
with its hyper-parameters chosen by cross-validation inside the catalog."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bench.experiments.clean_inputs import K
from similarity.embedding.projection import (
    cross_validated_precision,
    fit_blend,
    fit_lda,
    fit_pca_whitening,
    l2_normalise,
    select_by_cross_validation,
)

# Catalog-CV precisions closer than this count as tied (about one standard error with 2,000
# catalog queries); the tie-break is the visual order kept inside a category.
CV_TIE = 0.005

Transform = Callable[[np.ndarray], np.ndarray]
Fitter = Callable[[np.ndarray, np.ndarray], Transform]


def raw_fitter(x: np.ndarray, y: np.ndarray) -> Transform:
    """The vectors as they are (float64), compared by euclidean distance."""
    return lambda v: np.asarray(v, dtype=np.float64)


def cosine_fitter(x: np.ndarray, y: np.ndarray) -> Transform:
    """Unit vectors: euclidean distance then ranks as cosine."""
    return l2_normalise


@dataclass
class Space:
    """A named way to compare vectors; ``choose`` picks hyper-parameters on the catalog only."""

    name: str
    fitter: Fitter
    params: dict = field(default_factory=dict)
    cv: float | None = None

    def fit(self, x: np.ndarray, y: np.ndarray) -> Transform:
        return self.fitter(x, y)


def _pca_grid(n_train: int) -> dict:
    dims = [d for d in (64, 128, 256) if d < n_train - 1] or [n_train // 2]
    return {"dim": dims, "power": [0.5, 0.25]}


def _lda_grid(n_train: int, classes: int) -> dict:
    dims = [d for d in (256, 512, 1024) if d <= n_train - classes] or [max(classes, n_train // 2)]
    return {"pca_dim": dims, "shrinkage": [0.02, 0.05, 0.15]}


def choose_pca_whitening(x: np.ndarray, y: np.ndarray, folds: int) -> Space:
    n_train = len(y) * (folds - 1) // folds

    def make(dim: int, power: float) -> Fitter:
        return lambda a, b: fit_pca_whitening(a, dim=dim, power=power)

    best, score, _ = select_by_cross_validation(x, y, make, _pca_grid(n_train), k=K, folds=folds)
    return Space("cosine, PCA-whitened", make(**best), best, score)


def choose_lda(x: np.ndarray, y: np.ndarray, folds: int) -> Space:
    n_train = len(y) * (folds - 1) // folds

    def make(pca_dim: int, shrinkage: float) -> Fitter:
        return lambda a, b: fit_lda(a, b, pca_dim=pca_dim, shrinkage=shrinkage)

    grid = _lda_grid(n_train, len(np.unique(y)))
    best, score, _ = select_by_cross_validation(x, y, make, grid, k=K, folds=folds)
    return Space("cosine, LDA", make(**best), best, score)


def choose_blend(x: np.ndarray, y: np.ndarray, folds: int, lda: Space) -> Space:
    """LDA (its parameters as chosen) blended with the cosine space. The weight: the smallest
    (most visual order kept) whose catalog CV is within CV_TIE of the best weight's."""

    def make(weight: float) -> Fitter:
        return lambda a, b: fit_blend(a, b, weight=weight, **lda.params)

    _, top, tried = select_by_cross_validation(x, y, make, {"weight": [1.0, 2.0, 4.0]}, k=K, folds=folds)
    params, score = next((p, s) for p, s in tried if s >= top - CV_TIE)  # grid in increasing weight
    return Space("LDA + cosine blend", make(**params), {**lda.params, **params}, score)


def plain_space(name: str, fitter: Fitter, x: np.ndarray, y: np.ndarray, folds: int) -> Space:
    """A space with nothing to choose, with its catalog CV precision."""
    return Space(name, fitter, {}, cross_validated_precision(x, y, fitter, k=K, folds=folds))

