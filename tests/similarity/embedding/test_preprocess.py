"""Preprocessing policies: exact torchvision geometry, normalisation, registry, batches."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image

from similarity.embedding.images import ImageLimits, load_image
from similarity.embedding.preprocess import (
    DEFAULT_POLICY_NAME,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PAD_MARGIN_V1,
    PAD_SQUARE_V1,
    POLICIES,
    TORCHVISION_V1,
    UnknownPolicyError,
    get_policy,
    prepare,
    prepare_batch,
)
from similarity.errors import ImageRejected, SimilarityError

MEAN = np.array(IMAGENET_MEAN)
STD = np.array(IMAGENET_STD)
WHITE_NORM = (1.0 - MEAN) / STD
BLACK_NORM = -MEAN / STD


def encode(img: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def normalise(img: Image.Image) -> np.ndarray:
    """The reference normalisation, in float64."""
    return (np.asarray(img, dtype=np.float64) / 255.0 - MEAN) / STD


def gradient(width: int, height: int) -> Image.Image:
    x = np.arange(width)[None, :] * np.ones((height, 1), dtype=int)
    y = np.arange(height)[:, None] * np.ones((1, width), dtype=int)
    arr = np.stack([x * 255 // (width - 1), y * 255 // (height - 1), (x * 7 + y * 3) % 256], -1)
    return Image.fromarray(arr.astype(np.uint8))


# --- registry ----------------------------------------------------------------------------


def test_registry_and_keys():
    assert DEFAULT_POLICY_NAME == "torchvision"
    assert set(POLICIES) == {"torchvision", "pad-square", "pad-margin", "frame-margin"}
    assert PAD_MARGIN_V1.key == "pad-margin@1"
    assert get_policy("pad-margin") is PAD_MARGIN_V1
    assert TORCHVISION_V1.key == "torchvision@1"
    assert PAD_SQUARE_V1.key == "pad-square@1"
    assert get_policy("torchvision") is TORCHVISION_V1
    assert get_policy("torchvision@1") is TORCHVISION_V1
    assert get_policy("pad-square@1") is PAD_SQUARE_V1
    assert all(get_policy(name).name == name for name in POLICIES)


def test_policies_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TORCHVISION_V1.version = 2  # type: ignore[misc]


def test_unknown_policy_name_lists_known_names():
    with pytest.raises(ValueError, match="pad-margin, pad-square, torchvision") as info:
        get_policy("resnet")
    assert isinstance(info.value, KeyError)
    assert isinstance(info.value, SimilarityError)
    assert "'resnet'" in str(info.value)


@pytest.mark.parametrize(
    "key", ["torchvision@2", "torchvision@", "torchvision@one", "torchvision@01"]
)
def test_wrong_version_names_known_versions(key):
    with pytest.raises(UnknownPolicyError) as info:
        get_policy(key)
    message = str(info.value)
    assert "'torchvision'" in message
    assert message.endswith("known versions: 1")


def test_draft_sizes_cover_what_each_policy_needs():
    assert min(TORCHVISION_V1.draft_size) >= 256
    assert min(PAD_SQUARE_V1.draft_size) >= 224


# --- normalisation -----------------------------------------------------------------------


@pytest.mark.parametrize("policy", [TORCHVISION_V1, PAD_SQUARE_V1])
@pytest.mark.parametrize(("colour", "expected"), [((255,) * 3, WHITE_NORM), ((0,) * 3, BLACK_NORM)])
def test_solid_colour_normalises_per_channel(policy, colour, expected):
    arr = policy.to_array(Image.new("RGB", (300, 300), colour))
    assert arr.shape == (224, 224, 3)
    assert arr.dtype == np.float32
    assert arr.flags.c_contiguous and arr.flags.writeable
    np.testing.assert_allclose(arr, np.broadcast_to(expected, arr.shape), atol=1e-6)


def test_channels_stay_in_rgb_order():
    arr = TORCHVISION_V1.to_array(Image.new("RGB", (224, 224), (255, 0, 0)))
    np.testing.assert_allclose(arr[0, 0], [WHITE_NORM[0], BLACK_NORM[1], BLACK_NORM[2]], atol=1e-6)


def test_to_array_flattens_transparency_on_white():
    arr = TORCHVISION_V1.to_array(Image.new("RGBA", (224, 224), (0, 0, 0, 0)))
    np.testing.assert_allclose(arr[100, 100], WHITE_NORM, atol=1e-6)


# --- torchvision geometry ----------------------------------------------------------------


def test_torchvision_matches_manual_resize_and_crop_landscape():
    img = gradient(300, 260)
    # Shorter side 260 -> 256; longer side int(256 * 300 / 260) = int(295.38) = 295.
    resized = img.resize((295, 256), Image.BILINEAR)
    left, top = round((295 - 224) / 2), round((256 - 224) / 2)
    assert (left, top) == (36, 16)
    expected = normalise(resized.crop((left, top, left + 224, top + 224)))
    np.testing.assert_allclose(TORCHVISION_V1.to_array(img), expected, atol=1e-5)
    # A rounded (296) instead of truncated longer side gives different numbers.
    wrong = normalise(img.resize((296, 256), Image.BILINEAR).crop((36, 16, 260, 240)))
    assert np.abs(TORCHVISION_V1.to_array(img) - wrong).max() > 0.01


def test_torchvision_matches_manual_resize_and_crop_portrait():
    img = gradient(230, 411)
    new_h = int(256 * 411 / 230)
    top = round((new_h - 224) / 2.0)
    assert (new_h, top) == (457, 116)  # 116.5 rounds half to even, as in torchvision
    resized = img.resize((256, new_h), Image.BILINEAR)
    expected = normalise(resized.crop((16, top, 240, top + 224)))
    np.testing.assert_allclose(TORCHVISION_V1.to_array(img), expected, atol=1e-5)


def test_torchvision_centre_crop_rounds_half_to_even():
    # 293x256 needs no resize; (293 - 224) / 2 = 34.5, which torchvision rounds to 34.
    cols = np.arange(293)
    arr = np.zeros((256, 293, 3), dtype=np.uint8)
    arr[:, :, 0] = cols % 256
    arr[:, :, 1] = cols // 256
    out = TORCHVISION_V1.to_array(Image.fromarray(arr))
    first_col = np.rint((out[0, 0] * STD + MEAN) * 255).astype(int)
    assert first_col[0] + 256 * first_col[1] == 34


# --- pad-square --------------------------------------------------------------------------


def bar_on_white() -> Image.Image:
    img = Image.new("RGB", (400, 200), (255, 255, 255))
    img.paste((0, 0, 0), (0, 0, 6, 200))  # thin black bar at the left edge
    return img


def test_pad_square_keeps_the_edge_that_torchvision_crops():
    img = bar_on_white()
    padded = PAD_SQUARE_V1.to_array(img)
    cropped = TORCHVISION_V1.to_array(img)
    # Torchvision's centre crop cuts the bar away: only white remains.
    np.testing.assert_allclose(cropped, np.broadcast_to(WHITE_NORM, cropped.shape), atol=1e-6)
    # Pad-square keeps it: dark pixels in the leftmost columns of the garment band.
    assert padded[112, 0].max() < 0.0
    assert padded[112, 0].mean() < BLACK_NORM.mean() + 0.5
    # ... and pads above and below with white (400x200 -> 224x112 centred, rows 56..167).
    np.testing.assert_allclose(padded[:50], np.broadcast_to(WHITE_NORM, (50, 224, 3)), atol=1e-6)
    np.testing.assert_allclose(padded[-50:], np.broadcast_to(WHITE_NORM, (50, 224, 3)), atol=1e-6)


def test_pad_square_matches_padding_then_resizing():
    x, y = np.meshgrid(np.linspace(0, 255, 300), np.linspace(0, 255, 180))
    img = Image.fromarray(np.stack([x, y, (x + y) / 2], -1).astype(np.uint8))
    canvas = Image.new("RGB", (300, 300), (255, 255, 255))
    canvas.paste(img, (0, 60))
    literal = normalise(canvas.resize((224, 224), Image.BILINEAR))
    arr = PAD_SQUARE_V1.to_array(img)
    # Same picture; only the rows where the image meets the padding blend differently.
    assert np.abs(arr - literal).mean() < 0.01
    row_diff = np.abs(arr - literal).max(axis=(1, 2))
    assert (row_diff > 0.05).sum() <= 2
    np.testing.assert_allclose(arr[60:160], literal[60:160], atol=0.03)


# --- pad-margin --------------------------------------------------------------------------


def test_pad_margin_puts_the_padded_garment_at_87_5_percent():
    img = Image.new("RGB", (300, 150), (0, 0, 0))  # all garment, 2:1
    arr = PAD_MARGIN_V1.to_array(img)
    dark = (arr < 0).all(axis=2)
    rows, cols = np.flatnonzero(dark.any(axis=1)), np.flatnonzero(dark.any(axis=0))
    # 224 * 0.875 = 196 px square, centred at 14..209; the 2:1 garment is 196 x 98 inside it.
    assert (cols.min(), cols.max()) == (14, 209)
    assert abs(rows.min() - 63) <= 1 and abs(rows.max() - 160) <= 1
    # A white margin all around, even where pad-square would touch the edge.
    np.testing.assert_allclose(arr[:, :12], np.broadcast_to(WHITE_NORM, (224, 12, 3)), atol=1e-6)
    np.testing.assert_allclose(arr[:, -12:], np.broadcast_to(WHITE_NORM, (224, 12, 3)), atol=1e-6)
    assert PAD_SQUARE_V1.to_array(img)[112, 0].max() < 0.0


def test_pad_margin_matches_the_measured_bench_geometry():
    from bench.experiments.clean_inputs import pad_with_margin

    x, y = np.meshgrid(np.linspace(0, 255, 120), np.linspace(0, 255, 90))
    img = Image.fromarray(np.stack([x, y, (x + y) / 2], -1).astype(np.uint8))
    expected = normalise(pad_with_margin(0.875)(img))
    np.testing.assert_allclose(PAD_MARGIN_V1.to_array(img), expected, atol=1e-5)


# --- prepare -----------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [TORCHVISION_V1, PAD_SQUARE_V1])
def test_one_pixel_image_is_prepared(policy):
    arr = prepare(encode(Image.new("RGB", (1, 1), (0, 0, 255))), policy=policy)
    assert arr.shape == (224, 224, 3)
    blue = np.array([BLACK_NORM[0], BLACK_NORM[1], WHITE_NORM[2]])
    np.testing.assert_allclose(arr, np.broadcast_to(blue, arr.shape), atol=1e-6)


@pytest.mark.parametrize("policy", [TORCHVISION_V1, PAD_SQUARE_V1])
def test_long_strip_is_prepared(policy):
    arr = prepare(encode(Image.new("RGB", (10000, 100), (0, 0, 0))), policy=policy)
    assert arr.shape == (224, 224, 3)
    assert np.isfinite(arr).all()
    # The strip's black must be present in both (all of it for torchvision's crop).
    np.testing.assert_allclose(arr[112, 112], BLACK_NORM, atol=1e-6)


def test_prepare_from_path_equals_prepare_from_bytes(tmp_path):
    data = encode(gradient(320, 240), "JPEG", quality=90)
    path = tmp_path / "g.jpg"
    path.write_bytes(data)
    np.testing.assert_array_equal(
        prepare(path, policy=TORCHVISION_V1), prepare(data, policy=TORCHVISION_V1)
    )


def test_prepare_applies_limits():
    with pytest.raises(ImageRejected) as info:
        prepare(encode(gradient(64, 64)), policy=TORCHVISION_V1, limits=ImageLimits(max_bytes=100))
    assert info.value.reason == "too_large"


@pytest.mark.parametrize("policy", [TORCHVISION_V1, PAD_SQUARE_V1])
def test_jpeg_draft_is_close_to_full_decode(policy):
    rng = np.random.default_rng(3)
    base = np.asarray(gradient(4000, 3000), dtype=np.int16)
    photo = np.clip(base + rng.integers(-25, 26, base.shape), 0, 255).astype(np.uint8)
    data = encode(Image.fromarray(photo), "JPEG", quality=90)
    drafted = load_image(data, draft_size=policy.draft_size)
    assert drafted.size[0] < 4000 and drafted.size[1] < 3000
    assert min(drafted.size) >= min(policy.draft_size)
    full = policy.to_array(load_image(data))
    fast = prepare(data, policy=policy)
    np.testing.assert_array_equal(fast, policy.to_array(drafted))
    assert np.abs(fast - full).mean() < 0.05


def test_prepare_batch_stacks_prepared_images():
    sources = [encode(Image.new("RGB", (50, 40), c)) for c in ((255, 0, 0), (0, 255, 0))]
    batch = prepare_batch(sources, policy=PAD_SQUARE_V1)
    assert batch.shape == (2, 224, 224, 3)
    assert batch.dtype == np.float32
    for row, source in zip(batch, sources, strict=True):
        np.testing.assert_array_equal(row, prepare(source, policy=PAD_SQUARE_V1))
    assert not np.array_equal(batch[0], batch[1])


def test_prepare_batch_of_nothing_is_empty():
    assert prepare_batch([], policy=TORCHVISION_V1).shape == (0, 224, 224, 3)


def test_prepare_batch_names_the_rejected_image():
    sources = [encode(Image.new("RGB", (8, 8))), b"", encode(Image.new("RGB", (8, 8)))]
    with pytest.raises(ImageRejected) as info:
        prepare_batch(sources, policy=TORCHVISION_V1)
    assert info.value.reason == "empty"
    assert any("#1" in note for note in info.value.__notes__)


def test_prepare_batch_refuses_a_single_source():
    with pytest.raises(TypeError, match="prepare\\(\\)"):
        prepare_batch(encode(Image.new("RGB", (8, 8))), policy=TORCHVISION_V1)  # type: ignore[arg-type]
