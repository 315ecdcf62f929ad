"""similarity.embedding.framing: the garment mask's morphology and hole filling (frame-margin@1's pixels
depend on them, so the SciPy versions must equal the Pillow code they replaced)."""

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from similarity.embedding.framing import _fill_holes, _largest_difference, _open_close_erode


def _flood_fill_reference(mask: np.ndarray) -> np.ndarray:
    """What frame-margin@1 first shipped with: PIL's 4-connected flood fill from outside."""
    h, w = mask.shape
    padded = np.zeros((h + 2, w + 2), dtype=np.uint8)
    padded[1:-1, 1:-1] = mask.astype(np.uint8) * 255
    img = Image.fromarray(padded, mode="L").copy()
    ImageDraw.floodfill(img, (0, 0), 128, thresh=0)
    return np.asarray(img)[1:-1, 1:-1] != 128


def test_an_enclosed_hole_is_filled_and_an_open_one_is_not():
    mask = np.zeros((9, 9), bool)
    mask[2:7, 2:7] = True
    mask[3:6, 3:6] = False          # a hole inside the garment
    assert _fill_holes(mask)[3:6, 3:6].all() and not _fill_holes(mask)[0, 0]
    mask[2, 4] = False              # a gap to the outside: the hole is background again
    assert not _fill_holes(mask)[3:6, 3:6].any()


@pytest.mark.parametrize("density", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 1), (33, 47), (64, 64)])
def test_equals_the_flood_fill_it_replaced(density, shape):
    rng = np.random.default_rng(hash((density, shape)) % 2**32)
    for _ in range(20):
        mask = rng.random(shape) < density
        assert np.array_equal(_fill_holes(mask), _flood_fill_reference(mask))


def _rank_filters_reference(mask: np.ndarray) -> np.ndarray:
    """What frame-margin@1 first shipped with: Pillow's rank filters on a 0/255 picture."""
    img = Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
    for f in (ImageFilter.MinFilter(3), ImageFilter.MaxFilter(3), ImageFilter.MaxFilter(5),
              ImageFilter.MinFilter(5), ImageFilter.MinFilter(3)):
        img = img.filter(f)
    return np.asarray(img) > 127


@pytest.mark.parametrize("density", [0.2, 0.5, 0.8])
@pytest.mark.parametrize("shape", [(1, 1), (2, 9), (7, 3), (33, 47), (128, 96)])
def test_the_open_close_erode_equals_pillows_rank_filters(density, shape):
    rng = np.random.default_rng(hash((density, shape)) % 2**32)
    for _ in range(20):
        mask = rng.random(shape) < density
        assert np.array_equal(_open_close_erode(mask), _rank_filters_reference(mask))


def test_the_largest_difference_is_the_max_over_channels():
    rng = np.random.default_rng(3)
    smooth, model = rng.normal(size=(2, 17, 23, 3)) * 40
    assert np.array_equal(_largest_difference(smooth, model), np.abs(smooth - model).max(axis=-1))
