"""frame-margin@3 finds the garment on a JPEG decoded at a reduced scale (``draft``) and crops
the same box, within a pixel of the network input, as on the photo decoded at full resolution.

The photos vary in size (160 px, which no draft reduces, to 2000 px), aspect ratio, garment size
and position, tilt, background (white, off-white, grey, dark, with gradients and noise), JPEG
quality and EXIF orientation. "Within a pixel": each side of the box found on the reduced
decode, mapped to the full-resolution picture, lies within 1 px of the full-resolution box once
both are scaled as the policy scales that box into the 224 px input (its longer side to 196).
Measured on these photos: at most 0.34 px; frame-margin@1's finding (whole working pixels of a
128 px copy resized straight from the decode) is more than 1 px apart on one photo in five.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from similarity.embedding import colour, preprocess
from similarity.embedding.colour import LAB_HIST_V1, LAB_HIST_V2, colour_descriptor
from similarity.embedding.embedder import ImageEmbedder
from similarity.embedding.framing import find_garment
from similarity.embedding.images import load_image
from similarity.embedding.preprocess import FRAME_MARGIN_V3, INPUT_SIZE, MARGIN_SCALE
from similarity.evaluation.fashion_mnist import load_split
from similarity.evaluation.shots import DYE_NAMES, Shot, catalog_shot, dyed_colours, render, shopper_shot

SIZES = [(160, 120), (224, 224), (300, 400), (640, 480), (800, 800), (1000, 600), (600, 1000),
         (1200, 900), (1600, 1600), (2000, 1500)]
PHOTOS = 160
Box = tuple[float, float, float, float]


def _photo(n: int, rng: np.random.Generator, garments: np.ndarray) -> bytes:
    """Photo ``n``: a dyed Fashion-MNIST garment, shot the shop's or the shopper's way, as JPEG
    with an EXIF orientation (the pixels are stored turned; decoding turns them upright)."""
    size = SIZES[n % len(SIZES)]
    shot = catalog_shot() if n % 4 == 0 else shopper_shot(rng)
    background = shot.background if n % 5 else (int(rng.integers(0, 256)),) * 3
    shot = Shot(size=size, scale=shot.scale, dx=shot.dx, dy=shot.dy, tilt=shot.tilt,
                background=(background[0], background[1], background[2]), gradient=shot.gradient,
                noise=shot.noise, seed=shot.seed)
    picture = render(garments[n * 13], dyed_colours(rng, DYE_NAMES[n % len(DYE_NAMES)]), shot)
    exif = Image.Exif()
    exif[0x0112] = n % 8 + 1  # Orientation
    buf = io.BytesIO()
    picture.save(buf, format="JPEG", quality=int(rng.integers(70, 96)), exif=exif.tobytes())
    return buf.getvalue()


@pytest.fixture(scope="module")
def photos() -> list[bytes]:
    garments, _ = load_split("test")
    rng = np.random.default_rng(1)
    return [_photo(n, rng, garments) for n in range(PHOTOS)]


def _apart_at_224(reference: Box, other: Box) -> float:
    """The largest distance between matching sides, in pixels of the network input."""
    scale = round(INPUT_SIZE * MARGIN_SCALE) / max(reference[2] - reference[0], reference[3] - reference[1])
    return max(abs(a - b) for a, b in zip(reference, other, strict=True)) * scale


def _in_full_pixels(box: Box, reduced: Image.Image, full: Image.Image) -> Box:
    sx, sy = full.width / reduced.width, full.height / reduced.height
    return box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy


def _boxes(data: bytes, *, exact: bool) -> tuple[Image.Image, Box | None, Box | None]:
    """(full-resolution picture, its box, the reduced decode's box in full-resolution pixels):
    frame-margin@3's boxes, or (``exact`` False) frame-margin@1's finding's."""
    full = load_image(data)
    reduced = load_image(data, draft_size=FRAME_MARGIN_V3.draft_size)
    if exact:
        ref = FRAME_MARGIN_V3.find_garment(full).exact_box
        box = FRAME_MARGIN_V3.find_garment(reduced).exact_box
    else:
        ref, box = find_garment(full).box, find_garment(reduced).box
    return full, ref, None if box is None else _in_full_pixels(box, reduced, full)


def test_the_reduced_decode_crops_the_full_resolution_box_within_a_pixel(photos: list[bytes]) -> None:
    found = reduced_any = 0
    for n, data in enumerate(photos):
        full, ref, box = _boxes(data, exact=True)
        assert (ref is None) == (box is None), f"photo {n}: garment found in one decode only"
        if ref is None or box is None:
            continue
        found += 1
        reduced_any += load_image(data, draft_size=FRAME_MARGIN_V3.draft_size).size != full.size
        assert _apart_at_224(ref, box) <= 1.0, f"photo {n} ({full.size}): {ref} vs {box}"
    assert found >= 0.8 * len(photos) and reduced_any >= 0.5 * found


def test_frame_margin_1s_finding_is_not_within_a_pixel(photos: list[bytes]) -> None:
    """The same check fails for frame-margin@1's finding: this test can tell them apart."""
    apart = []
    for data in photos[:60]:
        _, ref, box = _boxes(data, exact=False)
        if ref is not None and box is not None:
            apart.append(_apart_at_224(ref, box))
    assert sum(a > 1.0 for a in apart) >= 5


def test_the_box_within_a_pixel_is_close_to_the_whole_pixel_one(photos: list[bytes]) -> None:
    """The exact box is the mask's own box, to a fraction of a working pixel: at most three
    working pixels (the blurred edge's reach and the threshold crossing) from it on any side."""
    for data in photos[:40]:
        found = FRAME_MARGIN_V3.find_garment(load_image(data, draft_size=FRAME_MARGIN_V3.draft_size))
        if found.box is None or found.exact_box is None:
            continue
        step = max(found.size) / max(found.mask.shape)
        assert max(abs(a - b) for a, b in zip(found.box, found.exact_box, strict=True)) <= 3 * step + 1


def test_one_decode_gives_the_policys_crop_and_the_colour_of_the_same_framing(
        photos: list[bytes], model_path: Path) -> None:
    """The embedder's colour descriptor under frame-margin@3 reads the garment as the policy
    finds it (lab-hist@2's values), and its array is the policy's own; lab-hist@1 asked for
    reads the 128 px default framing."""
    embedder = ImageEmbedder(model_dir=model_path.parent, policy=FRAME_MARGIN_V3)
    older = ImageEmbedder(model_dir=model_path.parent, policy=FRAME_MARGIN_V3, colour=LAB_HIST_V1)
    items = zip(photos[:8], embedder.prepare_many(photos[:8], colour=True),
                older.prepare_many(photos[:8], colour=True), strict=True)
    for data, item, old in items:
        img = load_image(data, draft_size=FRAME_MARGIN_V3.draft_size)
        assert item.array is not None and item.colour is not None and old.colour is not None
        assert np.array_equal(item.array, FRAME_MARGIN_V3.to_array(img))
        assert np.array_equal(item.colour, colour_descriptor(img, FRAME_MARGIN_V3.find_garment(img)))
        assert np.array_equal(item.colour, LAB_HIST_V2.describe(img))
        assert np.array_equal(old.colour, colour_descriptor(img, find_garment(img)))


def test_the_embedder_finds_the_garment_once_per_photo_for_crop_and_colour(
        photos: list[bytes], model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under frame-margin@3 the crop and lab-hist@2 share one framing; lab-hist@1 needs two."""
    calls: list[int] = []

    def counted(img: Image.Image, **kwargs: object) -> object:
        calls.append(1)
        return find_garment(img, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(preprocess, "find_garment", counted)
    monkeypatch.setattr(colour, "find_garment", counted)
    for version, findings in ((LAB_HIST_V2, 1), (LAB_HIST_V1, 2)):
        calls.clear()
        embedder = ImageEmbedder(model_dir=model_path.parent, policy=FRAME_MARGIN_V3, colour=version)
        embedder.prepare_many(photos[:4], colour=True)
        assert len(calls) == 4 * findings, version.key
