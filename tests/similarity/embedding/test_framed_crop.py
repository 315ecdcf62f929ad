"""frame-margin@2 against frame-margin@1 on real garment photos at several sizes: the same crop
within a pixel at 224 px, and vectors within a tight tolerance.

"Within a pixel", precisely: (1) the garment's bounding box in the 224 px network input (pixels
more than 24 grey levels from white) has each edge within 1 px of frame-margin@1's; (2) every
pixel of either input lies within the range of the other's 3x3 neighbourhood (the pixel itself
and its eight neighbours: a shift of at most one pixel in any direction), widened by
``ENVELOPE_LEVELS`` grey levels for the one resampling instead of three.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from similarity.embedding.framing import find_garment, framed_crop
from similarity.embedding.preprocess import (
    FRAME_MARGIN_V1,
    FRAME_MARGIN_V2,
    FRAME_MARGIN_V3,
    IMAGENET_MEAN,
    IMAGENET_STD,
    get_policy,
    prepare,
)
from similarity.evaluation.fashion_mnist import load_split
from similarity.evaluation.shots import DYE_NAMES, Shot, catalog_shot, dyed_colours, render, shopper_shot

SIZES = [(224, 224), (300, 400), (800, 800), (1200, 900)]
ENVELOPE_LEVELS = 16.0  # grey levels; measured up to 13 on these photos
PER_SIZE = 12


def _photos(size: tuple[int, int]) -> list[bytes]:
    """Dyed Fashion-MNIST garments shot the shop's and the shopper's way at ``size``, as JPEG."""
    images, _ = load_split("test")
    rng = np.random.default_rng(size[0] * 7 + size[1])
    out = []
    for i in range(PER_SIZE):
        shot = catalog_shot() if i % 3 == 0 else shopper_shot(rng)
        shot = Shot(size=size, scale=shot.scale, dx=shot.dx, dy=shot.dy, tilt=shot.tilt,
                    background=shot.background, gradient=shot.gradient, noise=shot.noise,
                    jpeg=None, seed=shot.seed)
        buf = io.BytesIO()
        render(images[i * 37], dyed_colours(rng, DYE_NAMES[i % len(DYE_NAMES)]), shot).save(
            buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def _grey_levels(arr: np.ndarray) -> np.ndarray:
    """A network input back to 0-255 RGB."""
    return (arr * np.asarray(IMAGENET_STD) + np.asarray(IMAGENET_MEAN)) * 255.0


def _garment_box(rgb: np.ndarray) -> tuple[int, int, int, int]:
    garment = (255.0 - rgb).max(axis=-1) > 24.0
    rows, cols = np.flatnonzero(garment.any(axis=1)), np.flatnonzero(garment.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def _inside_shifted_envelope(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pixel: does ``a`` lie within the range of ``b``'s 3x3 neighbourhood (+ tolerance)?"""
    lo = ndimage.minimum_filter(b, size=(3, 3, 1), mode="nearest") - ENVELOPE_LEVELS
    hi = ndimage.maximum_filter(b, size=(3, 3, 1), mode="nearest") + ENVELOPE_LEVELS
    return np.asarray((a >= lo) & (a <= hi))


def _both(photo: bytes) -> tuple[np.ndarray, np.ndarray]:
    return prepare(photo, policy=FRAME_MARGIN_V1), prepare(photo, policy=FRAME_MARGIN_V2)


@pytest.mark.parametrize("size", SIZES)
def test_the_crop_is_frame_margin_1s_within_a_pixel_at_224(size: tuple[int, int]) -> None:
    found = 0
    for photo in _photos(size):
        old, new = (_grey_levels(a) for a in _both(photo))
        assert np.abs(np.subtract(_garment_box(new), _garment_box(old))).max() <= 1
        assert _inside_shifted_envelope(new, old).all() and _inside_shifted_envelope(old, new).all()
        found += find_garment(Image.open(io.BytesIO(photo))).found
    assert found >= PER_SIZE - 1  # the comparison is of framed crops, not of the fallback


def test_a_shift_of_two_pixels_is_not_within_a_pixel() -> None:
    """The envelope check can fail: the same input moved by two pixels is outside it."""
    old = _grey_levels(prepare(_photos((800, 800))[1], policy=FRAME_MARGIN_V1))
    assert not _inside_shifted_envelope(np.roll(old, 2, axis=1), old).all()


def test_the_vectors_stay_within_a_tight_tolerance(model_path: Path) -> None:
    from similarity.embedding.runtime import LiteRTEmbedder

    embedder = LiteRTEmbedder(model_path.parent)
    photos = [p for size in SIZES for p in _photos(size)[:4]]
    pairs = [_both(p) for p in photos]
    old = embedder.embed(np.stack([a for a, _ in pairs]))
    new = embedder.embed(np.stack([b for _, b in pairs]))
    cos = (old * new).sum(1) / (np.linalg.norm(old, axis=1) * np.linalg.norm(new, axis=1))
    # Measured: cosine 0.984-0.9997 (frame-margin@1 resampled three times, softer edges).
    assert cos.min() >= 0.98 and float(np.median(cos)) >= 0.995
    # Each garment's new vector is nearer its own old vector than any other garment's.
    dist = ((new[:, None, :] - old[None, :, :]) ** 2).sum(-1)
    assert np.array_equal(dist.argmin(axis=1), np.arange(len(photos)))


def test_frame_margin_is_at_version_3_and_the_older_versions_are_chosen_by_their_keys() -> None:
    assert get_policy("frame-margin") is FRAME_MARGIN_V3 and FRAME_MARGIN_V3.key == "frame-margin@3"
    assert get_policy("frame-margin@1") is FRAME_MARGIN_V1
    assert get_policy("frame-margin@2") is FRAME_MARGIN_V2 and FRAME_MARGIN_V2.key == "frame-margin@2"


def test_framed_crop_fits_the_box_in_the_side_and_refuses_a_framing_without_one() -> None:
    img = Image.new("RGB", (400, 300), (255, 255, 255))
    img.paste((20, 30, 90), (100, 50, 300, 150))  # a 200 x 100 garment
    framing = find_garment(img)
    crop = framed_crop(img, framing, 196)
    assert max(crop.size) == 196 and abs(crop.width / crop.height - 200 / 100) < 0.1
    with pytest.raises(ValueError, match="found a garment"):
        framed_crop(img, find_garment(Image.new("RGB", (400, 300), (255, 255, 255))), 196)
