"""similarity.embedding.colour: the descriptor's soft histogram (a matrix product now) equals the
four-way sum it was defined with, so stored lab-hist@1 descriptors stay valid."""

import numpy as np
from PIL import Image

from similarity.embedding.colour import axis_shares, colour_descriptor, garment_samples
from similarity.embedding.framing import find_garment


def _einsum_reference(image: Image.Image) -> np.ndarray:
    """lab-hist@1's histogram as first written: one einsum over pixels and the axes' shares."""
    weights, lab = garment_samples(find_garment(image))
    hist = np.sqrt(np.einsum("n,ni,nj,nk->ijk", weights, *axis_shares(lab)).ravel())
    return (hist / np.linalg.norm(hist)).astype(np.float32)


def test_the_descriptor_equals_its_four_way_sum_on_plain_and_busy_pictures():
    rng = np.random.default_rng(5)
    plain = Image.new("RGB", (150, 110), (245, 245, 240))
    plain.paste((180, 30, 40), (40, 20, 110, 90))
    plain.paste((20, 60, 170), (60, 40, 90, 70))
    busy = Image.fromarray(rng.integers(0, 256, (90, 130, 3), dtype=np.uint8))
    for image in (plain, busy):
        got = colour_descriptor(image)
        assert got.shape == (196,) and abs(float(np.linalg.norm(got)) - 1.0) < 1e-5
        np.testing.assert_allclose(got, _einsum_reference(image), rtol=0, atol=1e-6)
