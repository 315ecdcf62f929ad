"""The shop-photo experiment's spaces: the fitters (raw, the LDA blend, the robust blend fitted
with shopper-style views), a configuration to measure, the colour descriptor blended in, one
policy's inputs of a data set, and the measurement of a configuration on the held-out sets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bench.common import sq_distances
from bench.experiments.shop_embeddings import Photos
from bench.experiments.shop_pictures import PhotoSet, ShopData
from similarity.embedding.colour import blend_colour
from similarity.embedding.projection import fit_blend, fit_robust_blend
from similarity.evaluation.fashion_mnist import CLASS_NAMES
from similarity.evaluation.metrics import QualityReport, evaluate, label_precision, rank, refind_recall

K = 10

Transform = Callable[[np.ndarray], np.ndarray]


def _raw_fit(x: np.ndarray, y: np.ndarray, aug: np.ndarray, aug_y: np.ndarray, aug_of: np.ndarray
             ) -> Transform:
    return lambda v: np.asarray(v, dtype=np.float64)


Fitter = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], Transform]


def _blend_fitter(robust: bool, pca_dim: int, shrinkage: float, weight: float,
                  invariant_dim: int | None = None, invariant_shrinkage: float = 0.5) -> Fitter:
    """``fit(x, y, views, views_y, views_of)``: views_of[i] is the row of x that view i shows."""
    def fit(x: np.ndarray, y: np.ndarray, aug: np.ndarray, aug_y: np.ndarray, aug_of: np.ndarray
            ) -> Transform:
        dim = min(pca_dim, (x.shape[0] + (aug.shape[0] if robust else 0)) - len(np.unique(y)) - 1)
        if robust:
            return fit_robust_blend(x, y, aug, aug_y, weight=weight, pca_dim=dim, shrinkage=shrinkage,
                                    augmented_of=aug_of,
                                    invariant_dim=None if invariant_dim is None
                                    else min(invariant_dim, x.shape[0] + aug.shape[0] - 1),
                                    invariant_shrinkage=invariant_shrinkage)
        return fit_blend(x, y, weight=weight, pca_dim=dim, shrinkage=shrinkage)

    return fit


@dataclass
class Config:
    name: str
    policy: str
    space: str  # "raw", "lda-blend" or "robust lda-blend"
    params: dict = field(default_factory=dict)
    colour: bool = False  # is the colour weight chosen (else 0)
    auto_colour: bool = False  # chosen as the catalog chooses it (LOOKALIKE_COLOUR_WEIGHT=auto)
    cv: dict = field(default_factory=dict)

    @property
    def fitter(self) -> Fitter:
        if self.space == "raw":
            return _raw_fit
        p = self.params
        return _blend_fitter(self.space.startswith("robust"), p["pca_dim"], p["shrinkage"], p["weight"],
                             p.get("invariant_dim"), p.get("invariant_shrinkage", 0.5))


def in_space(z: np.ndarray, colours: np.ndarray, weight: float) -> np.ndarray:
    """Projected vectors as compared: with the colour descriptor blended in when ``weight`` > 0."""
    return np.asarray(z, dtype=np.float64) if weight == 0 else blend_colour(z, colours, weight)


def format_params(p: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in p.items())


@dataclass
class Inputs:
    """One policy's vectors (and the policy-independent colour descriptors) of a data set."""

    catalog: np.ndarray
    queries: np.ndarray
    reshots: np.ndarray
    views: np.ndarray  # (V, N, 1280)
    catalog_colour: np.ndarray
    queries_colour: np.ndarray
    reshots_colour: np.ndarray
    views_colour: np.ndarray  # (1, N, D): view 0's only (the catalog-CV queries), or (0, N, D)


def load_inputs(photos: Photos, data: ShopData, policy: str, *, views: int,
                cv_colours: bool = True) -> Inputs:
    """``views``: how many of the views to embed (view 0 is the catalog-CV queries); colour
    descriptors of view 0 only, and only with ``cv_colours`` (nothing else reads them)."""
    def vec(s: PhotoSet) -> np.ndarray:
        return photos.vectors(s, policy) if len(s) else np.empty((0, 1280), np.float32)

    def col(s: PhotoSet) -> np.ndarray:
        return photos.colours(s) if len(s) else np.empty((0, 196), np.float32)

    used = data.views[:views]
    return Inputs(vec(data.catalog), vec(data.queries), vec(data.reshots),
                  np.stack([vec(v) for v in used]) if used else np.empty((0, len(data.catalog), 1280)),
                  col(data.catalog), col(data.queries), col(data.reshots),
                  np.stack([col(data.views[0])]) if data.views and cv_colours
                  else np.empty((0, len(data.catalog), 196)))



def _per_category(report: QualityReport, yq: np.ndarray, colour: np.ndarray, both: np.ndarray
                  ) -> dict[str, dict]:
    per: dict[str, dict] = {}
    for cls in np.unique(yq).tolist():
        s = report.per_category[cls]
        sel = yq == cls
        per[CLASS_NAMES[int(cls)]] = {"precision_at_10": s.precision, "map_at_10": s.map,
                                      "colour_at_10": float(colour[sel].mean()),
                                      "category_colour_at_10": float(both[sel].mean())}
    return per


def _refind(row: dict, per: dict[str, dict], reshots: PhotoSet, ranked: np.ndarray) -> None:
    """Re-shot recall@1 and @10 of their catalog original, overall and per category."""
    src = reshots.source
    row |= {"recall_at_1": refind_recall(ranked, src, 1), "recall_at_10": refind_recall(ranked, src, 10),
            "n_reshots": len(src)}
    for cls in np.unique(reshots.labels):
        sel = reshots.labels == cls
        per[CLASS_NAMES[int(cls)]]["recall_at_1"] = refind_recall(ranked[sel], src[sel], 1)


def fit_space(config: Config, data: ShopData, inp: Inputs, train: np.ndarray | None = None) -> Transform:
    """The configuration's projection fitted on the catalog garments ``train`` (all by default)
    and their views."""
    train = np.arange(len(data.catalog)) if train is None else train
    y = data.catalog.labels[train]
    aug = inp.views[:, train].reshape(-1, inp.catalog.shape[1])
    n_views = inp.views.shape[0]
    return config.fitter(inp.catalog[train], y, aug, np.tile(y, n_views), np.tile(np.arange(y.size), n_views))


def _fitted(config: Config, data: ShopData, inp: Inputs) -> tuple[Callable[[np.ndarray], np.ndarray], float]:
    """The configuration's transform fitted on the whole catalog (+ views), and its colour weight."""
    return fit_space(config, data, inp), float(config.params.get("colour_weight", 0.0))


def measure_product_pages(config: Config, data: ShopData, inp: Inputs, *, within: bool) -> dict:
    """Product-page lists: each catalog garment's 10 nearest other catalog garments, across the
    catalog or (``within``) inside its category, scored by category P@10 and colour@10; and each
    re-shot's nearest catalog garment, searched across the catalog or inside its garment's
    category (re-shot recall@1)."""
    transform, w = _fitted(config, data, inp)
    y, dyes = data.catalog.labels, data.catalog.dyes
    g = in_space(transform(inp.catalog), inp.catalog_colour, w)
    d = sq_distances(g, g)
    if within:
        d[y[:, None] != y[None, :]] = np.inf
    ranked = rank(d, K, exclude_self=True)
    row = {"lists": "inside the category" if within else "across the catalog",
           "precision_at_10": float(label_precision(y, y[ranked], K).mean()),
           "colour_at_10": float(label_precision(dyes, dyes[ranked], K).mean()), "n": int(y.size)}
    if len(data.reshots):
        r = sq_distances(in_space(transform(inp.reshots), inp.reshots_colour, w), g)
        if within:
            r[data.reshots.labels[:, None] != y[None, :]] = np.inf
        row["recall_at_1"] = refind_recall(rank(r, K), data.reshots.source, 1)
    return row


def measure(config: Config, data: ShopData, inp: Inputs) -> tuple[dict, np.ndarray]:
    """Fit on the whole catalog (+ views), score queries and re-shots. Returns (row, ranked queries)."""
    y, dyes = data.catalog.labels, data.catalog.dyes
    transform, w = _fitted(config, data, inp)
    g = in_space(transform(inp.catalog), inp.catalog_colour, w)
    q = in_space(transform(inp.queries), inp.queries_colour, w)
    ranked = rank(sq_distances(q, g), K)
    yq, dq = data.queries.labels, data.queries.dyes
    report = evaluate(yq, y[ranked], catalog_labels=y, k=K)
    colour = label_precision(dq, dyes[ranked], K)
    both = label_precision(yq * 100 + dq, y[ranked] * 100 + dyes[ranked], K)
    row: dict = {"configuration": config.name, "preprocessing": config.policy, "space": config.space,
                 "params": config.params, "catalog_cv": config.cv,
                 "precision_at_10": report.precision, "map_at_10": report.map,
                 "colour_at_10": float(colour.mean()),
                 "category_colour_at_10": float(both.mean()), "n_queries": report.n}
    per = _per_category(report, yq, colour, both)
    if len(data.reshots):
        reshots = in_space(transform(inp.reshots), inp.reshots_colour, w)
        _refind(row, per, data.reshots, rank(sq_distances(reshots, g), K))
    row["per_category"] = per
    return row, ranked
