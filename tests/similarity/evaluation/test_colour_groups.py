"""similarity.evaluation.colour_groups: colour groups found in a catalog's own descriptors, on
descriptors made the descriptor's way from garment pixels in CIE Lab."""

from __future__ import annotations

import numpy as np

from similarity.embedding.colour import COLOUR_DIM, axis_shares
from similarity.evaluation.colour_groups import MIN_SEPARATION, ab_distributions, colour_groups

PIXELS = 64


def descriptor(lab: np.ndarray) -> np.ndarray:
    """The colour descriptor (similarity/embedding/colour.py) of garment pixels given in Lab."""
    lightness, a, b = axis_shares(lab)
    ab = (a[:, :, None] * b[:, None, :]).reshape(len(lab), -1)
    hist = np.sqrt((lightness.T @ ab).ravel())
    return hist / np.linalg.norm(hist)


def garment(rng: np.random.Generator, ab: tuple[float, float], tint_spread: float) -> np.ndarray:
    """A garment of one dye: pixels of random lightness from the pale tint (chroma scaled by
    ``1 - tint_spread``) to the full dye, in random proportions."""
    tint = 1.0 - tint_spread * rng.random(PIXELS) ** rng.uniform(0.3, 3.0)
    lab = np.column_stack([rng.uniform(20, 90, PIXELS), ab[0] * tint, ab[1] * tint])
    return descriptor(lab)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return len(set(zip(a.tolist(), b.tolist(), strict=True))) == len(set(a.tolist())) == len(set(b.tolist()))


def test_grey_and_nearly_grey_garments_are_one_colour_group():
    rng = np.random.default_rng(0)
    grey = np.stack([garment(rng, (0.0, 0.0), 0.0) for _ in range(80)])
    assert colour_groups(grey).tolist() == [0] * 80
    tinted = np.stack([garment(rng, tuple(rng.normal(0, 2.5, 2)), 0.5) for _ in range(80)])  # a camera's cast
    assert colour_groups(tinted).tolist() == [0] * 80


def test_dyes_are_found_whatever_the_share_of_pale_tint():
    rng = np.random.default_rng(1)
    dyes = {0: (60.0, 30.0), 1: (-45.0, 40.0), 2: (10.0, -55.0), 3: (0.0, 0.0)}  # red, green, navy, black
    truth = np.arange(120) % len(dyes)
    dyed = np.stack([garment(rng, dyes[int(d)], 0.7) for d in truth])
    assert same_partition(colour_groups(dyed), truth)


def test_groups_closer_than_a_glance_are_one_and_missing_descriptors_are_apart():
    rng = np.random.default_rng(2)
    close = np.arange(60) % 2  # two dyes a few Lab units apart
    near = np.stack([garment(rng, (30.0 + 4.0 * int(d), 20.0), 0.1) for d in close])
    assert set(colour_groups(near).tolist()) == {0}
    with_missing = np.vstack([near, np.zeros((2, COLOUR_DIM))])
    assert colour_groups(with_missing)[-2:].tolist() == [-1, -1]
    assert np.allclose(np.linalg.norm(ab_distributions(near), axis=1), 1.0)
    assert 0.2 < MIN_SEPARATION < 0.5  # a colour difference of 10 in a*b*: about 0.33
