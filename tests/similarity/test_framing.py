"""similarity.framing: the hole filling of the garment mask (frame-margin@1's pixels depend on
it, so the SciPy fill must equal the flood fill it replaced)."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from similarity.framing import _fill_holes


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
