"""similarity.embedding.framing: the blur, the garment mask's morphology and hole filling (frame-margin@1's
pixels depend on them, so the NumPy and SciPy versions must equal the Pillow code they replaced)."""

import hashlib
import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from similarity.embedding.framing import (
    _box_blur,
    _fill_holes,
    _largest_difference,
    _median,
    _open_close_erode,
    _row_medians,
)


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
    smooth, model = rng.normal(size=(2, 3, 17, 23)) * 40
    assert np.array_equal(_largest_difference(smooth, model), np.abs(smooth - model).max(axis=0))


@pytest.mark.parametrize("size", [1, 2, 3, 4, 101, 1471, 1472])
def test_the_medians_equal_numpys(size):
    """The noise level and the background are medians; the threshold depends on their last bit."""
    rng = np.random.default_rng(size)
    for _ in range(50):
        values = np.round(rng.normal(size=(3, size)) * 40, int(rng.integers(0, 3))) / 7
        assert _median(values[0]) == float(np.median(values[0]))
        assert np.array_equal(_row_medians(values), np.median(values, axis=1))


@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (5, 1), (2, 2), (3, 7), (33, 47), (96, 72), (128, 96)])
def test_the_box_blur_equals_pillows(shape):
    """frame-margin@1's pixels depend on the blur: NumPy's must be Pillow's BoxBlur(1) exactly,
    on any picture and on near-white ones (sums near the top of the range)."""
    rng = np.random.default_rng(hash(shape) % 2**32)
    for low in (0, 0, 240):
        picture = rng.integers(low, 256, (*shape, 3)).astype(np.uint8)
        pillows = np.asarray(Image.fromarray(picture).filter(ImageFilter.BoxBlur(1)))
        assert np.array_equal(_box_blur(picture), pillows.transpose(2, 0, 1))


# sha256 (first 16 hex digits) of frame-margin@1's and @2's inputs for _shop_photo(i), recorded
# with the garment finding as it was before frame-margin@3's: a policy's pixels never change.
_RECORDED = [("1b81efe1d257e7af", "cb82cffb8d43715e"), ("aafbd4c114ee72c9", "38608f888392b3a2"),
             ("7ae873461449f02d", "5edf61dce15e2bc0"), ("04051d0f9e55f2d0", "04051d0f9e55f2d0"),
             ("3e0015d0b34f5b9a", "408f88bb10e4e0ae"), ("42f12f06305eae4a", "8a3c65f0b1ac790b"),
             ("5fce393687f22c75", "533e3f71d94dd6fa"), ("c1c9b8dcd9e65778", "7884bb89f4c9abf4"),
             ("f47b78fde66371cf", "8fd1d80f4229a0c1"), ("f6976dc95ffbe616", "f6976dc95ffbe616"),
             ("bb557c024aeedd84", "dd13c1919475769e"), ("75c22499d4f946e9", "e6a081d0d14fe99c")]


def _shop_photos() -> list[Image.Image]:
    from similarity.embedding.images import load_image
    from similarity.evaluation.fashion_mnist import load_split
    from similarity.evaluation.shots import DYE_NAMES, Shot, catalog_shot, dyed_colours, render, shopper_shot

    garments, _ = load_split("test")
    rng = np.random.default_rng(3)
    photos = []
    for i in range(len(_RECORDED)):
        shot = catalog_shot() if i % 3 == 0 else shopper_shot(rng)
        shot = Shot(size=[(224, 224), (640, 480), (300, 400), (800, 800)][i % 4], scale=shot.scale,
                    dx=shot.dx, dy=shot.dy, tilt=shot.tilt, background=shot.background,
                    gradient=shot.gradient, noise=shot.noise, seed=shot.seed)
        buf = io.BytesIO()
        photo = render(garments[i * 11], dyed_colours(rng, DYE_NAMES[i % 8]), shot)
        photo.save(buf, format="JPEG", quality=85)
        photos.append(load_image(buf.getvalue(), draft_size=(224, 224)))
    return photos


def test_frame_margin_1_and_2_make_the_pixels_they_always_made():
    from similarity.embedding.preprocess import FRAME_MARGIN_V1, FRAME_MARGIN_V2

    for photo, recorded in zip(_shop_photos(), _RECORDED, strict=True):
        digests = tuple(hashlib.sha256(p.to_array(photo).tobytes()).hexdigest()[:16]
                        for p in (FRAME_MARGIN_V1, FRAME_MARGIN_V2))
        assert digests == recorded


@pytest.mark.parametrize("background", [255, 250, 240, 200])
def test_a_part_exactly_at_the_threshold_from_the_background_does_not_count(background):
    """A background at a whole grey level puts pixels exactly 24 levels from it: the plane's last
    bit decides them, so it must be fitted as frame-margin@1 always fitted it (lstsq; the normal
    equations count the part on some sides)."""
    from similarity.embedding.framing import find_garment

    pixels = np.full((200, 200, 3), background, np.uint8)
    pixels[50:150, 50:150] = background - 24  # exactly the threshold
    pixels[75:125, 75:125] = 20  # the garment
    assert find_garment(Image.fromarray(pixels)).box == (74, 74, 126, 126)
