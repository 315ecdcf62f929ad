"""similarity.embedding.colour: the descriptor's soft histogram (a matrix product now) equals the
four-way sum it was defined with, on each version's framing (lab-hist@1 and @2)."""

import numpy as np
from PIL import Image

from similarity.embedding.colour import (
    COLOUR_KEY,
    LAB_HIST_V1,
    LAB_HIST_V2,
    ColourVersion,
    axis_shares,
    colour_descriptor,
    garment_samples,
)
from similarity.embedding.framing import find_garment


def _einsum_reference(image: Image.Image, version: ColourVersion) -> np.ndarray:
    """The histogram as first written: one einsum over pixels and the axes' shares."""
    weights, lab = garment_samples(version.find_garment(image))
    hist = np.sqrt(np.einsum("n,ni,nj,nk->ijk", weights, *axis_shares(lab)).ravel())
    return (hist / np.linalg.norm(hist)).astype(np.float32)


def test_the_descriptor_equals_its_four_way_sum_on_plain_and_busy_pictures():
    rng = np.random.default_rng(5)
    plain = Image.new("RGB", (150, 110), (245, 245, 240))
    plain.paste((180, 30, 40), (40, 20, 110, 90))
    plain.paste((20, 60, 170), (60, 40, 90, 70))
    busy = Image.fromarray(rng.integers(0, 256, (90, 130, 3), dtype=np.uint8))
    for image in (plain, busy):
        for version in (LAB_HIST_V1, LAB_HIST_V2):
            got = version.describe(image)
            assert got.shape == (196,) and abs(float(np.linalg.norm(got)) - 1.0) < 1e-5
            np.testing.assert_allclose(got, _einsum_reference(image, version), rtol=0, atol=1e-6)


def test_the_current_version_reads_the_reduced_framing_and_v1_the_default_one():
    """lab-hist@2 (current) reads the 96 px reduced framing; lab-hist@1 the 128 px one, as before."""
    image = Image.new("RGB", (400, 300), (245, 245, 240))
    image.paste((180, 30, 40), (100, 60, 290, 250))
    image.paste((20, 60, 170), (150, 100, 240, 200))
    assert COLOUR_KEY == "lab-hist@2"
    assert LAB_HIST_V2.find_garment(image).mask.shape == (72, 96)
    assert np.array_equal(colour_descriptor(image), LAB_HIST_V2.describe(image))
    assert np.array_equal(LAB_HIST_V1.describe(image), colour_descriptor(image, find_garment(image)))
    assert not np.array_equal(LAB_HIST_V1.describe(image), LAB_HIST_V2.describe(image))
