"""Choosing the colour descriptor's weight by cross-validation inside a catalog.

A catalog knows its products' categories, not their colours. What it can score:

- **category P@10** of each held-out product's neighbours (similarity.evaluation.kfold:
  the shape space is refitted without the product's fold);
- **category-and-colour-group@10**: the share of those neighbours in the product's category
  *and* its colour group, the groups being found in the catalog's own colour descriptors
  (similarity/evaluation/colour_groups.py: clusters of the descriptors' a*b* distributions,
  as many as separate best, none closer than a colour difference a shopper sees at a
  glance). A catalog of grey garments is one colour group, so there the criterion *is*
  category P@10 and colour can only cost; in a catalog of dyed garments, neighbours of
  the product's colour count.

The weight with the best category-and-colour-group@10 wins; weights within ``CV_TIE`` of it are
tied and the smallest of them is chosen, so noise never buys colour. One shape fit per
fold serves every weight of the grid (the weight only changes the blend).
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from similarity.embedding.colour import blend_colour
from similarity.evaluation.colour_groups import colour_groups
from similarity.evaluation.kfold import Fit, held_out_rank, kfold_spaces
from similarity.evaluation.metrics import label_precision

__all__ = ["COLOUR_WEIGHT_GRID", "CRITERION", "CV_TIE", "ColourChoice", "choose_colour_weight"]

COLOUR_WEIGHT_GRID = (0.0, 0.25, 0.5, 1.0, 2.0)
CV_TIE = 0.005
CRITERION = "category-and-colour-group@10"


@dataclass(frozen=True)
class ColourChoice:
    """The chosen weight, and per weight of the grid (category P@10, category-and-colour-group@10)."""

    weight: float
    scores: dict[float, tuple[float, float]]
    groups: int  # colour groups among the scored products
    products: int
    seconds: float

    def summary(self) -> str:
        tried = ", ".join(f"{w:g}: {c:.3f}/{b:.3f}" for w, (c, b) in self.scores.items())
        return (f"colour weight {self.weight:g} chosen by {CRITERION} over {self.products} products "
                f"in {self.groups} colour group(s), catalog CV (category P@10/{CRITERION}) {tried}; "
                f"{self.seconds:.1f} s")


def _object_array(items: list[object]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):  # one by one: a tuple stays one element
        out[i] = item
    return out


def _pick(scores: dict[float, tuple[float, float]]) -> float:
    best = max(b for _, b in scores.values())
    return min(w for w, (_, b) in scores.items() if b >= best - CV_TIE)


def choose_colour_weight(categories: Sequence[Hashable | None], colours: np.ndarray, fit_shape: Fit, *,
                         weights: Sequence[float] = COLOUR_WEIGHT_GRID, k: int = 10, folds: int = 4,
                         seed: int = 0) -> ColourChoice:
    """The colour weight for this catalog (see the module). ``fit_shape(train_rows)`` gives
    the shape space fitted on those rows (the weight 0 space, as it is compared); rows
    without a category stay in the catalog but are neither fitted on nor scored."""
    if not weights or min(weights) < 0:
        raise ValueError(f"colour weights must be a non-empty grid of non-negative numbers, got {weights!r}")
    started = time.perf_counter()
    colours = np.asarray(colours, dtype=np.float64)
    labels = _object_array([None if c in ("", None) else c for c in categories])
    groups = colour_groups(colours, seed=seed)
    pairs = _object_array([None if c is None else (c, int(g)) for c, g in zip(labels, groups, strict=True)])
    k = min(k, len(labels) - 1)
    hits: dict[float, list[np.ndarray]] = {float(w): [] for w in weights}
    both: dict[float, list[np.ndarray]] = {float(w): [] for w in weights}
    scored: list[np.ndarray] = []
    for held, shape in kfold_spaces(list(labels), fit_shape, folds=folds, seed=seed):
        scored.append(held)
        for w in hits:
            top = held_out_rank(shape if w == 0 else blend_colour(shape, colours, w), held, k)
            hits[w].append(label_precision(labels[held], labels[top], k))
            both[w].append(label_precision(pairs[held], pairs[top], k))
    if not scored or k < 1:
        raise ValueError("choosing the colour weight needs labelled products in at least two folds")
    scores = {w: (float(np.concatenate(hits[w]).mean()), float(np.concatenate(both[w]).mean())) for w in hits}
    rows = np.concatenate(scored)
    return ColourChoice(weight=_pick(scores), scores=scores, groups=len(set(groups[rows].tolist())),
                        products=int(rows.size), seconds=time.perf_counter() - started)
