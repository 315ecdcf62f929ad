"""The shop-photo experiment's choices, made by cross-validation inside the catalog only: each
fold's garments, as one shopper-style view each, query the other folds' catalog shots; the
LDA parameters, the garment-invariant half and the blend weight are chosen for category and
re-find, the colour weight for category-and-colour."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bench.common import sq_distances
from bench.experiments.shop_pictures import ShopData
from bench.experiments.shop_spaces import Config, Inputs, K, fit_space, format_params, in_space
from similarity.embedding.projection import stratified_folds
from similarity.evaluation.colour_cv import choose_colour_weight
from similarity.evaluation.metrics import label_precision, rank

FOLDS = 4
CV_TIE = 0.005
LDA_GRID = {"pca_dim": (1024,), "shrinkage": (0.05, 0.15)}
INVARIANT_GRID = ((256, 0.5), (512, 0.5))  # (dimensions, shrinkage) of the garment-invariant half
BLEND_WEIGHTS = (1.0, 2.0)
COLOUR_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)

Log = Callable[[str], None]
Metrics = dict[str, float]


@dataclass(frozen=True)
class Fold:
    train: np.ndarray
    held: np.ndarray
    gallery: np.ndarray  # projected catalog shots of train
    held_shots: np.ndarray  # projected catalog shots of held
    queries: np.ndarray  # projected view 0 of held


def cv_folds(config: Config, data: ShopData, inp: Inputs) -> list[Fold]:
    """Held-out catalog garments query as their shopper-style view 0; any projection is fitted on
    the other folds' catalog shots and views only."""
    y = data.catalog.labels
    out = []
    for held in stratified_folds(y, FOLDS, seed=0):
        train = np.setdiff1d(np.arange(y.size), held)
        transform = fit_space(config, data, inp, train)
        out.append(Fold(train, held, transform(inp.catalog[train]), transform(inp.catalog[held]),
                        transform(inp.views[0][held])))
    return out


def cv_metrics(folds: list[Fold], data: ShopData, inp: Inputs, weight: float) -> dict[str, float]:
    """Catalog CV: category P@10 and category-and-colour@10 of the held-out views against the
    other folds' shots; re-find@1 of the held-out views against all the catalog's shots (their
    own shot included, though neither it nor the view was fitted on)."""
    y, dyes = data.catalog.labels, data.catalog.dyes
    cat, both, refind = [], [], []
    for f in folds:
        g = in_space(f.gallery, inp.catalog_colour[f.train], weight)
        own = in_space(f.held_shots, inp.catalog_colour[f.held], weight)
        q = in_space(f.queries, inp.views_colour[0][f.held], weight)
        d = sq_distances(q, g)
        top = f.train[rank(d, K)]
        cat.append(label_precision(y[f.held], y[top], K))
        both.append(label_precision(y[f.held] * 100 + dyes[f.held], y[top] * 100 + dyes[top], K))
        own_d = ((q - own) ** 2).sum(1)
        refind.append(own_d < d.min(1))
    return {"category": float(np.concatenate(cat).mean()),
            "category_colour": float(np.concatenate(both).mean()),
            "refind": float(np.concatenate(refind).mean())}


def _shape_score(m: dict[str, float]) -> float:
    """What the blend weight and the invariant half are chosen for: category and re-find."""
    return (m["category"] + m["refind"]) / 2



def _choose_projection(config: Config, data: ShopData, inp: Inputs, log: Log) -> None:
    """The LDA parameters by category, then (robust) the invariant half and the blend weight
    by category and re-find (the weight: the smallest within CV_TIE of the best)."""
    def cv(params: dict) -> Metrics:
        config.params = params
        return cv_metrics(cv_folds(config, data, inp), data, inp, 0.0)

    grid = [{"pca_dim": d, "shrinkage": sh, "weight": 1.0}
            for d in LDA_GRID["pca_dim"] for sh in LDA_GRID["shrinkage"]]
    tried = [(cv(p), p) for p in grid]
    best_m, best = max(tried, key=lambda t: t[0]["category"])
    if config.space.startswith("robust"):
        inv = [(best_m, best)] + [(cv(p), p) for p in
                                  ({**best, "invariant_dim": d, "invariant_shrinkage": sh}
                                   for d, sh in INVARIANT_GRID)]
        best_m, best = max(inv, key=lambda t: _shape_score(t[0]))
        tried += inv[1:]
    weights = [(best_m, best)] + [(cv({**best, "weight": w}), {**best, "weight": w})
                                  for w in BLEND_WEIGHTS if w != 1.0]
    top = max(_shape_score(m) for m, _ in weights)
    config.params = next(p for m, p in weights if _shape_score(m) >= top - CV_TIE)
    log(f"    {config.name}: " + "; ".join(
        f"{format_params(p)}: category {m['category']:.3f}, re-find {m['refind']:.3f}"
        for m, p in tried + weights[1:]))


def _choose_colour(config: Config, data: ShopData, inp: Inputs, log: Log) -> None:
    """The colour weight by category-and-colour (ties: the smaller weight); its catalog CV."""
    folds = cv_folds(config, data, inp)
    scores = [(cv_metrics(folds, data, inp, w), w) for w in COLOUR_WEIGHTS]
    chosen = max(scores, key=lambda t: t[0]["category_colour"])
    config.params = {**config.params, "colour_weight": chosen[1]}
    config.cv = chosen[0]
    log(f"    {config.name}: colour weights " + ", ".join(
        f"{w:g} {m['category_colour']:.3f}/{m['category']:.3f}" for m, w in scores))


def choose_as_catalog(config: Config, data: ShopData, inp: Inputs, log: Log) -> None:
    """The colour weight as the catalog's rebuild chooses it (similarity/evaluation/colour_cv.py:
    catalog products query the catalog, shape refitted per fold on the other folds' shots and
    views, category-and-colour-group@10), with no dye label."""
    y = data.catalog.labels

    def fit_shape(train: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        z = fit_space(config, data, inp, train)(inp.catalog)
        return lambda rows: z[rows]

    choice = choose_colour_weight(y.tolist(), inp.catalog_colour, fit_shape)
    config.params = {**config.params, "colour_weight": choice.weight}
    log(f"    {config.name}: {choice.summary()}")


def choose(config: Config, data: ShopData, inp: Inputs, log: Log) -> Config:
    """Fill in ``config.params`` (unless fixed) and the colour weight by catalog CV."""
    if config.space != "raw" and "pca_dim" not in config.params:
        _choose_projection(config, data, inp, log)
    if config.auto_colour and "colour_weight" not in config.params:
        choose_as_catalog(config, data, inp, log)
    if "colour_weight" in config.params:  # fixed (the product's setting), or chosen as the catalog does
        config.cv = cv_metrics(cv_folds(config, data, inp), data, inp, float(config.params["colour_weight"]))
    elif config.colour:
        _choose_colour(config, data, inp, log)
    else:
        config.params = {**config.params, "colour_weight": 0.0}
        config.cv = cv_metrics(cv_folds(config, data, inp), data, inp, 0.0)
    return config
