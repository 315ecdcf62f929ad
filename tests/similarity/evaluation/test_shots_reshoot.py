"""Product-style augmented views (``reshoot``) and the shared framing of the embed step."""

from __future__ import annotations

import numpy as np
import pytest

from similarity.embedding.framing import find_garment
from similarity.embedding.preprocess import POLICIES
from similarity.evaluation.fashion_mnist import load_split
from similarity.evaluation.shots import DYES, Shot, catalog_shot, render, reshoot, shopper_shot


@pytest.fixture(scope="module")
def garment():
    images, _ = load_split("train")
    return render(images[0], DYES["red"], catalog_shot())


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_a_policy_given_the_framing_makes_the_same_pixels(garment, name):
    rng = np.random.default_rng(1)
    for img in (garment, render(load_split("train")[0][1], DYES["navy"], shopper_shot(rng))):
        policy = POLICIES[name]
        assert np.array_equal(policy.to_array(img), policy.to_array(img, find_garment(img)))


def test_reshoot_lays_the_cut_out_garment_on_the_shot(garment):
    shot = Shot(size=(240, 320), scale=0.5, dx=0.1, background=(150, 150, 150), jpeg=None)
    view = reshoot(garment, shot)
    assert view.size == (240, 320)
    found = find_garment(view)
    assert found.found and found.plain
    left, top, right, bottom = found.box
    # The catalog shot's frame (224 px) becomes half the canvas's shorter side (120 px): the
    # garment keeps its share of the frame. This garment touches its frame (no box found in the
    # catalog shot itself): the reshoot still cuts it out.
    assert find_garment(garment).box is None
    mask = np.asarray(garment).min(axis=2) < 250
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    assert right - left == pytest.approx((cols[-1] - cols[0] + 1) * 120 / 224, abs=8)
    assert bottom - top == pytest.approx((rows[-1] - rows[0] + 1) * 120 / 224, abs=8)
    assert (left + right) / 2 == pytest.approx(120 + 24, abs=8)  # moved right by 10 %
    corner = np.asarray(view)[:10, :10].reshape(-1, 3)
    assert np.abs(corner.astype(int) - 150).max() <= 2  # the shot's background, not the white


def test_reshoot_is_a_pure_function_of_the_picture_and_the_shot(garment):
    shot = shopper_shot(np.random.default_rng([7, 0]))
    assert np.array_equal(np.asarray(reshoot(garment, shot)), np.asarray(reshoot(garment, shot)))
