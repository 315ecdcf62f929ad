"""similarity.evaluation.colour_cv: the colour weight a catalog chooses for itself, on synthetic
catalogs whose colour is noise (grey garments: one colour group) or a real attribute (dyed)."""

from __future__ import annotations

import numpy as np
import pytest

from similarity.embedding.colour import COLOUR_DIM
from similarity.evaluation.colour_cv import CV_TIE, choose_colour_weight
from similarity.evaluation.colour_groups import colour_groups

N_PER_CLASS, CLASSES, DIM = 30, 4, 16
NEUTRAL = 3 * 7 + 3  # the a*b* cell of a = b = 0


def descriptors(cells: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unit descriptors whose colour sits in the given a*b* cell, spread over random lightness."""
    out = np.zeros((cells.size, 4, 49))
    for i, cell in enumerate(cells.tolist()):
        out[i, :, cell] = rng.random(4)
    flat = np.sqrt(out.reshape(cells.size, COLOUR_DIM))
    return flat / np.linalg.norm(flat, axis=1, keepdims=True)


def catalog(seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Categories and unit shape vectors: class centres plus noise, so shape finds the category
    most of the time but not always."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(CLASSES), N_PER_CLASS)
    centres = rng.normal(size=(CLASSES, DIM))
    shape = centres[labels] + 0.9 * rng.normal(size=(labels.size, DIM))
    shape /= np.linalg.norm(shape, axis=1, keepdims=True)
    return [f"c{c}" for c in labels.tolist()], shape, rng.permutation(labels.size) % 4


def fixed_space(shape: np.ndarray):
    return lambda train: (lambda rows: shape[rows])


def test_grey_garments_are_one_colour_group_and_colour_noise_is_turned_off():
    labels, shape, _ = catalog()
    rng = np.random.default_rng(1)
    grey = descriptors(np.full(len(labels), NEUTRAL), rng)
    assert set(colour_groups(grey).tolist()) == {0}
    choice = choose_colour_weight(labels, grey, fixed_space(shape))
    assert choice.weight == 0.0
    assert choice.groups == 1 and choice.products == len(labels)
    for category, both in choice.scores.values():
        assert category == pytest.approx(both)  # one colour group: the criterion is category P@10
    assert choice.scores[2.0][0] < choice.scores[0.0][0] - CV_TIE  # the noise costs category


def test_dyed_garments_choose_a_colour_weight_above_zero():
    labels, shape, dyes = catalog()
    rng = np.random.default_rng(2)
    dyed = descriptors(np.array([5, 12, 30, 44])[dyes], rng)  # 4 dyes, independent of category
    assert len(set(colour_groups(dyed).tolist())) == 4
    choice = choose_colour_weight(labels, dyed, fixed_space(shape))
    assert choice.weight > 0
    assert choice.scores[choice.weight][1] > choice.scores[0.0][1] + 0.1
    assert "colour weight" in choice.summary() and "4 colour group(s)" in choice.summary()


def test_ties_go_to_the_smaller_weight_and_unlabelled_products_are_not_scored():
    labels, shape, dyes = catalog()
    labels[:5] = [""] * 5
    dyed = descriptors(np.array([5, 12, 30, 44])[dyes], np.random.default_rng(3))
    choice = choose_colour_weight(labels, dyed, fixed_space(shape), weights=(0.5, 0.5000001))
    assert choice.weight == 0.5 and choice.products == len(labels) - 5


def test_bad_grids_are_refused():
    labels, shape, _ = catalog()
    with pytest.raises(ValueError, match="colour weights"):
        choose_colour_weight(labels, np.zeros((len(labels), COLOUR_DIM)), fixed_space(shape), weights=(-1.0,))


def test_pale_and_full_tints_of_a_dye_agree_in_colour():
    labels, shape, dyes = catalog()
    rng = np.random.default_rng(4)
    full, pale = np.array([5, 12, 30, 44])[dyes], np.array([4, 19, 31, 37])[dyes]  # neighbouring a*b* cells
    share = rng.random(len(labels))[:, None]
    mixed = np.sqrt(share * descriptors(full, rng) ** 2 + (1 - share) * descriptors(pale, rng) ** 2)
    choice = choose_colour_weight(labels, mixed, fixed_space(shape))
    assert choice.groups == 4 and choice.weight > 0
    assert choice.scores[choice.weight][1] > choice.scores[0.0][1] + 0.1
