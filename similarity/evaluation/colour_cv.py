"""Choosing the colour descriptor's weight by cross-validation inside a catalog.

A catalog knows its products' categories, not their colours. What it can score:

- **category P@10** of each held-out product's neighbours (similarity.evaluation.kfold:
  the shape space is refitted without the product's fold);
- **category-and-hue@10**: the share of those neighbours in the product's category *and*
  its hue group, the hue group being read off the product's own colour descriptor
  (:func:`hue_groups`: the cell of the descriptor's a*b* plane holding most of the
  garment's colour; lightness is left out, as shading and lighting move it within one
  garment). A catalog of grey garments is one hue group, so there the criterion *is*
  category P@10 and colour can only cost; in a catalog of dyed garments, neighbours of
  the shopper's hue count.

The weight with the best category-and-hue@10 wins; weights within ``CV_TIE`` of it are
tied and the smallest of them is chosen, so noise never buys colour. One shape fit per
fold serves every weight of the grid (the weight only changes the blend).
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from similarity.embedding.colour import COLOUR_DIM, blend_colour
from similarity.evaluation.kfold import Fit, held_out_rank, kfold_spaces
from similarity.evaluation.metrics import label_precision

__all__ = ["COLOUR_WEIGHT_GRID", "CRITERION", "CV_TIE", "ColourChoice", "choose_colour_weight", "hue_groups"]

COLOUR_WEIGHT_GRID = (0.0, 0.25, 0.5, 1.0, 2.0)
CV_TIE = 0.005
CRITERION = "category-and-hue@10"
_AB_CELLS = 49  # the descriptor's 7 x 7 a*b* grid (similarity/embedding/colour.py)


def hue_groups(colours: np.ndarray) -> np.ndarray:
    """(N,) int64: each descriptor's a*b* cell with the most mass, summed over lightness
    (-1 for a missing, all-zero descriptor)."""
    c = np.asarray(colours, dtype=np.float64).reshape(-1, COLOUR_DIM)
    mass = (c * c).reshape(c.shape[0], -1, _AB_CELLS).sum(axis=1)  # Hellinger: squares are shares
    groups = mass.argmax(axis=1).astype(np.int64)
    groups[mass.sum(axis=1) <= 0] = -1
    return groups


@dataclass(frozen=True)
class ColourChoice:
    """The chosen weight, and per weight of the grid (category P@10, category-and-hue@10)."""

    weight: float
    scores: dict[float, tuple[float, float]]
    hues: int  # hue groups among the scored products
    products: int
    seconds: float

    def summary(self) -> str:
        tried = ", ".join(f"{w:g}: {c:.3f}/{b:.3f}" for w, (c, b) in self.scores.items())
        return (f"colour weight {self.weight:g} chosen by {CRITERION} over {self.products} products "
                f"in {self.hues} hue group(s), catalog CV (category P@10/{CRITERION}) {tried}; "
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
    hues = hue_groups(colours)
    pairs = _object_array([None if c is None else (c, int(h)) for c, h in zip(labels, hues, strict=True)])
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
    return ColourChoice(weight=_pick(scores), scores=scores, hues=len(set(hues[rows].tolist())),
                        products=int(rows.size), seconds=time.perf_counter() - started)
