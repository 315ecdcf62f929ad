"""Search by photo with and without the predicted category, on the shop-photo benchmark.

    python -m bench.experiments.shop_category_prediction [--quick] [--seed N] [--json out.json]

The data and the configuration are bench/experiments/shop_quality.py's ``--product`` mode:
the catalog's own code path (its preprocessing, its robust lda-blend projection fitted on the
catalog plus views re-shot from the catalog photos, its colour weight). No database.

The vote (its size and its minimum share, similarity/index/category_vote.py) is chosen as the
catalog's full rebuild chooses it (catalog/search_vote.py): by 4-fold cross-validation
inside the catalog, each held-out product's shopper-style views (with the product's own
colour descriptor: the catalog has no other) querying the other folds' products, in a
projection refitted without the fold (similarity/evaluation/category_vote_cv.py). Nothing is
chosen on the held-out queries.

Then, on the held-out shopper-style queries and the re-shots (each ranked against the whole
catalog in the space fitted on the whole catalog): category P@10, colour@10, category and
colour@10 and re-shot recall@1 **without** the prediction (the whole catalog ranked) and
**with** it (when the vote is confident, only products of the predicted category); the
vote's accuracy on every query, its coverage (the share of queries it is confident on) and
its accuracy there; category hit@10 is the share of queries with at least one product of
their category among the 10 (what a wrong prediction costs). For reference only (nothing is
chosen on them), the held-out category P@10 of every vote of the grid.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import cast

import numpy as np

from bench.common import data_dir, sq_distances
from bench.experiments.shop_catalog_cv import choose_as_catalog
from bench.experiments.shop_cli import shop_main
from bench.experiments.shop_configurations import product_configuration
from bench.experiments.shop_embeddings import Photos
from bench.experiments.shop_pictures import ShopData, Sizes, make_shop_data, product_views
from bench.experiments.shop_spaces import Config, Inputs, in_space, load_inputs
from similarity.evaluation.category_vote_cv import VoteChoice, choose_category_vote, vote_scores
from similarity.evaluation.fashion_mnist import CLASS_NAMES
from similarity.evaluation.metrics import label_precision, rank
from similarity.index.category_vote import CategoryVote

K = 10
Log = Callable[[str], None]


def _fitted(config: Config, inp: Inputs, y: np.ndarray, rows: np.ndarray
            ) -> Callable[[np.ndarray], np.ndarray]:
    """The configuration's shape transform fitted on catalog ``rows`` and their views."""
    n_views = inp.views.shape[0]
    aug = inp.views[:, rows].reshape(-1, inp.catalog.shape[1])
    return config.fitter(inp.catalog[rows], y[rows], aug, np.tile(y[rows], n_views),
                         np.tile(np.arange(rows.size), n_views))


def choose_vote(config: Config, data: ShopData, inp: Inputs) -> VoteChoice:
    """The vote as the catalog's rebuild chooses it: views query, the product's colour beside
    them, the projection refitted per fold."""
    y = data.catalog.labels
    weight = float(config.params.get("colour_weight", 0.0))
    n_views, n = inp.views.shape[0], y.size
    query_of = np.tile(np.arange(n), n_views)
    flat = inp.views.reshape(-1, inp.catalog.shape[1])

    def fold_space(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        transform = _fitted(config, inp, y, train)
        return (in_space(transform(inp.catalog), inp.catalog_colour, weight),
                in_space(transform(flat), inp.catalog_colour[query_of], weight))

    return choose_category_vote(y.tolist(), query_of, fold_space)


def _filtered(d: np.ndarray, y: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Top K of every row, only among products of its predicted category (-1: all products)."""
    limited = np.where((predicted[:, None] < 0) | (y[None, :] == predicted[:, None]), d, np.inf)
    return rank(limited, K)


def _predictions(vote: CategoryVote | None, y: np.ndarray, ranked: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(category predicted when confident, else -1; the vote's winner on every query)."""
    if vote is None:
        return np.full(ranked.shape[0], -1), np.full(ranked.shape[0], -1)
    results = [vote.predict(row) for row in y[ranked].tolist()]
    winner = np.array([-1 if r.category is None else cast(int, r.category) for r in results])
    confident = np.array([r.confident for r in results])
    return np.where(confident, winner, -1), winner


def _scores(data: ShopData, top: np.ndarray, reshots_top: np.ndarray) -> dict[str, float]:
    y, dyes = data.catalog.labels, data.catalog.dyes
    yq, dq = data.queries.labels, data.queries.dyes
    return {"precision_at_10": float(label_precision(yq, y[top], K).mean()),
            "hit_at_10": float((y[top] == yq[:, None]).any(axis=1).mean()),
            "colour_at_10": float(label_precision(dq, dyes[top], K).mean()),
            "category_colour_at_10": float(label_precision(yq * 100 + dq, y[top] * 100 + dyes[top],
                                                           K).mean()),
            "recall_at_1": float((reshots_top[:, 0] == data.reshots.source).mean())}


def measure(config: Config, data: ShopData, inp: Inputs, choice: VoteChoice) -> dict:
    """Held-out figures without and with the prediction (see the module)."""
    y = data.catalog.labels
    weight = float(config.params.get("colour_weight", 0.0))
    fit_started = time.perf_counter()
    transform = _fitted(config, inp, y, np.arange(y.size))
    fit_seconds = time.perf_counter() - fit_started
    g = in_space(transform(inp.catalog), inp.catalog_colour, weight)
    d = sq_distances(in_space(transform(inp.queries), inp.queries_colour, weight), g)
    d_re = sq_distances(in_space(transform(inp.reshots), inp.reshots_colour, weight), g)
    deep = max(K, *(size for size, _ in choice.scores))
    ranked, ranked_re = rank(d, deep), rank(d_re, deep)
    predicted, winner = _predictions(choice.vote, y, ranked)
    predicted_re, _ = _predictions(choice.vote, y, ranked_re)
    yq = data.queries.labels
    sure = predicted >= 0
    baseline, grid = vote_scores(yq.astype(object), y[ranked].astype(object),
                                 sorted({s for s, _ in choice.scores}), sorted({t for _, t in choice.scores}))
    per_category = {CLASS_NAMES[int(c)]: {"accuracy": float((winner[yq == c] == c).mean()),
                                          "coverage": float(sure[yq == c].mean())}
                    for c in np.unique(yq).tolist()}
    return {"without": _scores(data, ranked[:, :K], ranked_re[:, :K]),
            "with": _scores(data, _filtered(d, y, predicted), _filtered(d_re, y, predicted_re)),
            "accuracy": float((winner == yq).mean()), "coverage": float(sure.mean()),
            "accuracy_where_confident": float((predicted[sure] == yq[sure]).mean()) if sure.any() else None,
            "reshots_coverage": float((predicted_re >= 0).mean()),
            "held_out_grid": {f"{s}/{t:g}": p for (s, t), (p, _, _) in grid.items()},
            "held_out_baseline": baseline, "per_category": per_category, "fit_seconds": fit_seconds}


def run(sizes: Sizes, *, seed: int = 0, log: Log | None = None) -> dict:
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    started = time.perf_counter()
    photos = Photos(Path(os.environ.get("LOOKALIKE_SHOP_CACHE", data_dir() / "cache-shop")), log)
    data = product_views(make_shop_data(sizes, seed), seed)
    config = product_configuration()
    inp = load_inputs(photos, data, config.policy, views=len(data.views))
    if config.auto_colour:  # LOOKALIKE_COLOUR_WEIGHT=auto: chosen as the catalog chooses it
        choose_as_catalog(config, data, inp, log)
    log(f"catalog {len(data.catalog)}, queries {len(data.queries)}, re-shots {len(data.reshots)}, "
        f"views {len(data.views)}; {config.name}; [{time.perf_counter() - started:.0f} s]")
    choice = choose_vote(config, data, inp)
    log(f"  {choice.summary()}")
    result = measure(config, data, inp, choice)
    log(f"  the choice took {choice.seconds:.1f} s, {choice.seconds / result['fit_seconds']:.1f}x the "
        f"projection's one fit on the whole catalog ({result['fit_seconds']:.1f} s)")
    result |= {"vote": None if choice.vote is None else asdict(choice.vote),
               "catalog_cv": {"baseline": choice.baseline, "queries": choice.queries,
                              "grid": {f"{s}/{t:g}": v for (s, t), v in choice.scores.items()}},
               "sizes": asdict(sizes), "seed": seed, "params": config.params,
               "choice_seconds": choice.seconds,
               "seconds": time.perf_counter() - started}
    return result


def _f(v: object) -> str:
    return "—" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def table(result: dict) -> str:
    vote = result["vote"]
    chosen = "none" if vote is None else f"{vote['size']} nearest, share >= {vote['min_share']:g}"
    lines = [f"Vote chosen by catalog CV: {chosen}.", "",
             "| search by photo | category P@10 | category hit@10 | colour@10 | category and colour@10 "
             "| re-shot recall@1 |",
             "|---|---|---|---|---|---|"]
    for name in ("without", "with"):
        s = result[name]
        lines.append(f"| {name} the predicted category | {_f(s['precision_at_10'])} | {_f(s['hit_at_10'])} "
                     f"| {_f(s['colour_at_10'])} "
                     f"| {_f(s['category_colour_at_10'])} | {_f(s['recall_at_1'])} |")
    lines += ["", f"Prediction: accuracy {_f(result['accuracy'])} on every query, coverage "
                  f"{_f(result['coverage'])} (re-shots {_f(result['reshots_coverage'])}), accuracy where "
                  f"confident {_f(result['accuracy_where_confident'])}.", "",
              "| category | vote accuracy | coverage |", "|---|---|---|"]
    lines += [f"| {name} | {_f(s['accuracy'])} | {_f(s['coverage'])} |"
              for name, s in result["per_category"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return shop_main(__doc__, run, table, argv)


if __name__ == "__main__":
    sys.exit(main())
