"""load_image: every refusal has its reason code; every accepted image comes back upright RGB."""

from __future__ import annotations

import io
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image, ImageFile

from similarity.embedding.images import (
    ALLOWED_FORMATS,
    DEFAULT_LIMITS,
    ImageLimits,
    check_image,
    load_image,
    to_rgb,
)
from similarity.errors import ImageRejected

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
MB = 1024 * 1024


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def rejected(source, **kwargs) -> ImageRejected:
    with pytest.raises(ImageRejected) as info:
        load_image(source, **kwargs)
    return info.value


def close(actual, expected, tol: int = 1) -> bool:
    return all(abs(a - e) <= tol for a, e in zip(actual, expected, strict=True))


# --- refusals ----------------------------------------------------------------------------


def test_limits_defaults_and_formats():
    assert ImageLimits(max_bytes=20 * MB, max_pixels=50_000_000, min_side=1) == DEFAULT_LIMITS
    assert isinstance(ALLOWED_FORMATS, frozenset)
    assert sorted(ALLOWED_FORMATS) == ["GIF", "JPEG", "PNG", "WEBP"]


@pytest.mark.parametrize("as_path", [False, True])
def test_zero_bytes_is_empty(tmp_path, as_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    err = rejected(path if as_path else b"")
    assert err.reason == "empty"
    assert "empty" in str(err)


def test_text_named_jpg_is_unreadable(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_text("this is a shopping list, not a photo\n")
    err = rejected(path)
    assert err.reason == "unreadable"
    assert "text" in err.message
    assert "JPEG, PNG, WebP or GIF" in err.message


def test_random_binary_is_unreadable():
    data = np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    assert rejected(b"\x01\x02" + data).reason == "unreadable"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP"])
def test_last_third_cut_is_truncated(tmp_path, fmt):
    data = encode(noise(120, 90), fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) * 2 // 3])
    err = rejected(path)
    assert err.reason == "truncated"
    assert "truncated" in err.message


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_check_image_names_the_format_and_refuses_what_load_image_refuses(fmt):
    data = encode(noise(64, 48), fmt)
    assert check_image(data) == fmt
    with pytest.raises(ImageRejected) as info:
        check_image(data[: 2 * len(data) // 3])
    assert info.value.reason == rejected(data[: 2 * len(data) // 3]).reason == "truncated"


def test_check_image_reads_a_jpeg_through_to_its_end_at_its_smallest_scale():
    data = encode(noise(800, 600), "JPEG", quality=90)
    assert check_image(data) == "JPEG"
    cut = data[:-200]  # only the last scans' data is missing: headers and most pixels are there
    with pytest.raises(ImageRejected) as info:
        check_image(cut)
    assert info.value.reason == "truncated"


def test_a_png_damaged_behind_valid_checksums_passes_the_check_and_fails_the_decode():
    """The check reads a PNG's chunks against their CRCs without inflating them (see
    check_image): such damage is refused by the embed worker's decode, with its reason."""
    data = bytearray(encode(noise(64, 48), "PNG"))
    start = data.index(b"IDAT") + 4
    length = int.from_bytes(data[start - 8 : start - 4], "big")
    body = bytes(b ^ 0x5A for b in data[start + 10 : start + length])  # past the zlib header
    data[start + 10 : start + length] = body
    crc = zlib.crc32(bytes(data[start - 4 : start + length]))
    data[start + length : start + length + 4] = crc.to_bytes(4, "big")
    assert check_image(bytes(data)) == "PNG"
    assert rejected(bytes(data)).reason == "truncated"


def test_truncated_jpeg_passes_verify_but_is_refused():
    # What Django's ImageField does (verify only) lets this file through; load_image must not.
    data = encode(noise(120, 90), "JPEG")
    cut = data[: len(data) * 2 // 3]
    with Image.open(io.BytesIO(cut)) as img:
        img.verify()
    assert rejected(cut).reason == "truncated"


def test_jpeg_cut_inside_its_header_is_truncated():
    data = encode(noise(120, 90), "JPEG")
    err = rejected(data[:40])
    assert err.reason == "truncated"
    assert "JPEG" in err.message


def test_refuses_when_pillow_would_accept_truncated_images(monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        load_image(encode(noise(8, 8), "PNG"))


def test_declared_huge_png_is_a_bomb_with_default_limits():
    # 144 MP of 1-bit zeros compresses to a few KB.
    data = encode(Image.new("1", (12000, 12000)), "PNG")
    assert len(data) < 100_000
    err = rejected(data)
    assert err.reason == "bomb"
    assert "12000x12000" in err.message or "decompression bomb" in err.message


def test_own_pixel_limit_refuses_before_decoding(monkeypatch):
    def no_decoding(self):
        raise AssertionError("pixels must not be decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    err = rejected(
        encode(Image.new("RGB", (200, 150)), "PNG"), limits=ImageLimits(max_pixels=10_000)
    )
    assert err.reason == "bomb"
    assert err.message == "image is 200x150 pixels (30,000 pixels), over the 10,000 pixels limit"


def test_pillow_bomb_warning_becomes_a_bomb_and_filters_are_restored(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    generous = ImageLimits(max_pixels=10**9)
    filters_before = list(warnings.filters)
    # 15,000 pixels: over Pillow's limit (a warning) but under twice it (no error).
    err = rejected(encode(Image.new("RGB", (150, 100)), "PNG"), limits=generous)
    assert err.reason == "bomb"
    assert warnings.filters == filters_before
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # Outside load_image Pillow still only warns: global state was not changed.
        with pytest.warns(Image.DecompressionBombWarning):
            Image.open(io.BytesIO(encode(Image.new("RGB", (150, 100)), "PNG")))


def test_pillow_bomb_error_becomes_a_bomb(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    # 40,000 pixels: over twice Pillow's limit, so Pillow raises DecompressionBombError.
    data = encode(Image.new("RGB", (200, 200)), "PNG")
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(data))
    err = rejected(data, limits=ImageLimits(max_pixels=10**9))
    assert err.reason == "bomb"


def test_over_byte_limit_bytes_message():
    data = b"\xff\xd8\xff" + bytes(int(25.3 * MB) - 3)
    err = rejected(data)
    assert err.reason == "too_large"
    assert err.message == "image is 25.3 MB, over the 20.0 MB limit"


def test_over_byte_limit_path_checks_size_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "huge.jpg"
    with path.open("wb") as fh:
        fh.truncate(25 * MB)  # sparse: no need to write 25 MB

    def no_reading(*args, **kwargs):
        raise AssertionError("an oversized file must not be read")

    monkeypatch.setattr(Path, "open", no_reading)
    err = rejected(path)
    assert err.reason == "too_large"
    assert "25.0 MB" in err.message


def test_small_byte_limit_message_uses_readable_units():
    data = encode(noise(64, 64), "PNG")
    err = rejected(data, limits=ImageLimits(max_bytes=1000))
    assert err.reason == "too_large"
    assert err.message.endswith("over the 1000 bytes limit")
    assert "KB" in err.message


@pytest.mark.parametrize(
    "text",
    [
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>',
        '<?xml version="1.0"?>\n<!DOCTYPE svg>\n<svg xmlns="http://www.w3.org/2000/svg"/>',
    ],
)
def test_svg_is_unsupported(tmp_path, text):
    path = tmp_path / "logo.jpg"
    path.write_text(text)
    err = rejected(path)
    assert err.reason == "unsupported_format"
    assert err.message == "SVG is not supported; upload JPEG, PNG, WebP or GIF"


def test_eps_is_unsupported_and_never_reaches_ghostscript(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("EPS must not be parsed or rendered")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", forbidden)
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", forbidden)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto showpage\n%%EOF\n"
    err = rejected(eps)
    assert err.reason == "unsupported_format"
    assert err.message.startswith("EPS is not supported")


def test_pdf_is_unsupported():
    err = rejected(b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n")
    assert err.reason == "unsupported_format"
    assert "PDF" in err.message


@pytest.mark.parametrize("fmt", ["BMP", "TIFF"])
def test_pillow_readable_but_not_allowed_formats_are_unsupported(fmt):
    data = encode(Image.new("RGB", (10, 10), RED), fmt)
    with Image.open(io.BytesIO(data)) as img:  # Pillow itself can read it
        assert img.format == fmt
    err = rejected(data)
    assert err.reason == "unsupported_format"
    assert err.message == f"{fmt} is not supported; upload JPEG, PNG, WebP or GIF"


def test_side_below_min_side_is_too_small():
    err = rejected(encode(Image.new("RGB", (1, 30)), "PNG"), limits=ImageLimits(min_side=2))
    assert err.reason == "too_small"
    assert "1x30" in err.message


def test_missing_path_is_not_an_image_rejection(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "nope.png")


# --- accepted images ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["bytes", "str", "path"])
def test_accepts_bytes_and_paths_and_returns_detached_rgb(tmp_path, kind):
    data = encode(Image.new("RGB", (30, 20), GREEN), "PNG")
    path = tmp_path / "green.png"
    path.write_bytes(data)
    source = {"bytes": data, "str": str(path), "path": path}[kind]
    img = load_image(source)
    assert type(img) is Image.Image  # a plain image, not tied to a file or decoder
    assert img.mode == "RGB"
    assert img.size == (30, 20)
    assert img.getpixel((5, 5)) == GREEN


def test_one_pixel_image_is_accepted():
    img = load_image(encode(Image.new("RGB", (1, 1), BLUE), "PNG"))
    assert img.size == (1, 1)
    assert img.getpixel((0, 0)) == BLUE


def test_long_strip_is_accepted():
    img = load_image(encode(Image.new("RGB", (10000, 100), RED), "PNG"))
    assert img.size == (10000, 100)


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in (RED, GREEN, BLUE)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(io.BytesIO(data)) as check:
        assert check.n_frames == 3
    img = load_image(data)
    assert img.mode == "RGB"
    assert img.getpixel((8, 8)) == RED


def test_animated_webp_gives_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in (BLUE, RED, GREEN)]
    data = encode(
        frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100, lossless=True
    )
    with Image.open(io.BytesIO(data)) as check:
        assert check.n_frames == 3
    assert load_image(data).getpixel((8, 8)) == BLUE


def test_palette_png_transparent_index_becomes_white():
    img = Image.new("P", (4, 2), 0)
    img.putpalette([0, 0, 0, *RED] + [0] * (256 - 2) * 3)
    img.paste(1, (2, 0, 4, 2))  # right half uses colour index 1 (red)
    data = encode(img, "PNG", transparency=0)  # index 0 (black) is transparent
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == "P"
        assert "transparency" in check.info
    out = load_image(data)
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((3, 1)) == RED


def test_gif_transparency_becomes_white():
    img = Image.new("P", (4, 4), 0)
    img.putpalette([*GREEN, *BLUE] + [0] * 254 * 3)
    img.paste(1, (0, 0, 2, 4))
    out = load_image(encode(img, "GIF", transparency=0))
    assert out.getpixel((3, 3)) == (255, 255, 255)
    assert out.getpixel((0, 0)) == BLUE


def test_rgba_half_transparent_red_is_composited_on_white():
    data = encode(Image.new("RGBA", (8, 8), (255, 0, 0, 128)), "PNG")
    assert close(load_image(data).getpixel((4, 4)), (255, 128, 128))


def test_la_half_transparent_black_is_composited_on_white():
    data = encode(Image.new("LA", (8, 8), (0, 128)), "PNG")
    assert close(load_image(data).getpixel((4, 4)), (128, 128, 128))


def test_fully_transparent_webp_is_white():
    data = encode(Image.new("RGBA", (8, 8), (0, 0, 255, 0)), "WEBP", lossless=True)
    assert load_image(data).getpixel((4, 4)) == (255, 255, 255)


def test_cmyk_jpeg_becomes_rgb():
    data = encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95)
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == "CMYK"
    out = load_image(data)
    assert out.mode == "RGB"
    assert close(out.getpixel((8, 8)), RED, tol=8)


def test_16_bit_png_is_scaled_not_clipped():
    arr = np.array([[65535, 32768, 0, 257]], dtype=np.uint16)
    data = encode(Image.fromarray(arr), "PNG")
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == "I;16"
    out = np.asarray(load_image(data))
    assert out.dtype == np.uint8
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert abs(int(out[0, 1, 0]) - 128) <= 1
    assert tuple(out[0, 2]) == (0, 0, 0)
    assert tuple(out[0, 3]) == (1, 1, 1)


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [("I;16B", 65535, 255), ("I;16", 32768, 128), ("I", 65535, 255), ("I", -5, 0), ("F", 1.0, 255)],
)
def test_high_depth_modes_scale_to_8_bit(mode, value, expected):
    out = to_rgb(Image.new(mode, (2, 2), value))
    assert out.mode == "RGB"
    assert out.getpixel((1, 1)) == (expected,) * 3


@pytest.mark.parametrize(("mode", "value"), [("L", 200), ("1", 1)])
def test_grey_and_bilevel_become_rgb(mode, value):
    out = load_image(encode(Image.new(mode, (4, 4), value), "PNG"))
    grey = 255 if mode == "1" else value
    assert out.getpixel((2, 2)) == (grey, grey, grey)


def test_to_rgb_returns_rgb_unchanged():
    img = Image.new("RGB", (3, 3), RED)
    assert to_rgb(img) is img


def test_exif_orientation_6_is_applied():
    img = Image.new("RGB", (40, 20), BLUE)
    img.paste(RED, (0, 0, 20, 20))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90° clockwise
    out = load_image(encode(img, "JPEG", exif=exif, quality=95))
    assert out.size == (20, 40)
    # Rotating clockwise brings the left half to the top.
    assert close(out.getpixel((10, 5)), RED, tol=10)
    assert close(out.getpixel((10, 35)), BLUE, tol=10)


def test_mpo_photo_is_read_as_jpeg():
    frames = [Image.new("RGB", (32, 24), GREEN), Image.new("RGB", (32, 24), RED)]
    data = encode(frames[0], "MPO", save_all=True, append_images=frames[1:])
    with Image.open(io.BytesIO(data)) as check:
        assert check.format == "MPO"
    out = load_image(data)
    assert out.size == (32, 24)
    assert close(out.getpixel((16, 12)), GREEN, tol=4)


def test_jpeg_draft_decodes_smaller_but_not_below_the_request():
    data = encode(noise(4000, 3000).resize((4000, 3000)), "JPEG", quality=85)
    full = load_image(data)
    drafted = load_image(data, draft_size=(256, 256))
    assert full.size == (4000, 3000)
    assert drafted.size[0] < 4000 and drafted.size[1] < 3000
    assert min(drafted.size) >= 256
    assert drafted.mode == "RGB"


def test_draft_size_is_ignored_for_non_jpeg():
    data = encode(Image.new("RGB", (1200, 900), GREEN), "PNG")
    assert load_image(data, draft_size=(256, 256)).size == (1200, 900)


def test_image_rejected_round_trips_through_pickle_with_its_reason():
    import pickle

    from similarity.errors import ImageRejected

    error = pickle.loads(pickle.dumps(ImageRejected("truncated", "image file is truncated")))
    assert isinstance(error, ImageRejected)
    assert (error.reason, error.message, str(error)) == ("truncated", "image file is truncated",
                                                          "image file is truncated")
