"""Decode untrusted uploads into plain RGB images, under limits, or refuse them with a reason.

Every refusal is an :class:`~similarity.errors.ImageRejected` whose ``reason`` is one of
``empty``, ``too_large``, ``unreadable``, ``unsupported_format``, ``truncated``, ``bomb``,
``too_small``.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import os
import struct
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps, UnidentifiedImageError

from similarity.errors import ImageRejected

__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_LIMITS",
    "ImageLimits",
    "load_image",
    "to_rgb",
]

ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF"})
# Pillow reports multi-picture JPEGs (many phone and camera photos) as "MPO"; they are JPEGs.
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
_OPEN_FORMATS = tuple(sorted(ALLOWED_FORMATS))
_ALLOWED_HUMAN = "JPEG, PNG, WebP or GIF"
_WHITE = (255, 255, 255)
_MB = 1024 * 1024

# What a decoder raises on damaged data (Pillow mostly uses OSError, some plugins others).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000
    min_side: int = 1


DEFAULT_LIMITS = ImageLimits()


def load_image(
    source: bytes | str | os.PathLike[str],
    *,
    limits: ImageLimits = DEFAULT_LIMITS,
    draft_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode ``source`` (raw bytes or a file path) fully into an upright RGB image.

    Animated GIF/WebP give their first frame; transparency is flattened onto white.
    ``draft_size`` lets a JPEG decode at a reduced scale that stays at least that large in
    both dimensions. A missing path raises ``FileNotFoundError`` (that is not the image's
    fault); everything wrong with the image itself raises ``ImageRejected``.
    """
    return _load(source, limits, draft_size)[0]


def check_image(source: bytes | str | os.PathLike[str], *,
                limits: ImageLimits = DEFAULT_LIMITS) -> str:
    """Check ``source`` as an upload and return its format ("PNG", "JPEG", ...): every header
    and limit check of ``load_image``, and that the compressed data is whole, without the
    full decode. A PNG's chunks are read to IEND against their checksums; a JPEG's whole
    entropy-coded stream is decoded at 1/8 scale; GIF and WebP are decoded. Profiled: 0.03
    instead of 0.96 ms for a 224 px PNG, 0.48 instead of 5.9 ms for an 800 px JPEG. The embed
    worker's decode stays the last word: data damaged behind valid checksums fails there, on
    the product, with its reason."""
    with _opened(source, limits) as img:
        fmt = _checked_format(img, limits)
        _read_through(img, fmt)
        return fmt


def _load(source: bytes | str | os.PathLike[str], limits: ImageLimits,
          draft_size: tuple[int, int] | None) -> tuple[Image.Image, str]:
    if draft_size is not None and min(draft_size) < 1:
        raise ValueError(f"draft_size must be positive, got {draft_size}")
    with _opened(source, limits) as img:
        return _decode(img, limits, draft_size), str(img.format)


@contextlib.contextmanager
def _opened(source: bytes | str | os.PathLike[str], limits: ImageLimits
            ) -> Iterator[ImageFile.ImageFile]:
    """The source opened (headers parsed) under the byte limit, closed on leaving."""
    data = _read_bounded(source, limits)
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # A global Pillow switch someone turned on would let cut-short files through silently.
        raise RuntimeError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True; Lookalike needs it False to refuse "
            "truncated images"
        )
    # Pillow's own bomb check runs inside Image.open and only warns below 2x its limit. The
    # filter is scoped to this block; our own max_pixels check catches the rest anyway.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img = _open(data)
        try:
            yield img
        finally:
            img.close()


def to_rgb(img: Image.Image) -> Image.Image:
    """Return ``img`` as RGB: transparency composited on white, CMYK and 16-bit converted.

    Returns ``img`` itself when it is already RGB without transparency.
    """
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _high_depth_to_rgb(img)
    palette_alpha = mode == "P" and img.palette is not None and img.palette.mode == "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info or palette_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    return img.convert("RGB")


def _high_depth_to_rgb(img: Image.Image) -> Image.Image:
    arr = np.asarray(img)
    if img.mode == "F":
        # Float images are taken to hold intensities in [0, 1].
        scaled = np.rint(np.clip(arr, 0.0, 1.0) * 255.0)
    else:
        # 16-bit range (PNG is the only allowed source): 65535 -> 255, 32768 -> 128.
        wide = np.clip(arr.astype(np.int64), 0, 65535)
        scaled = (wide + 128) // 257
    grey = scaled.astype(np.uint8)
    return Image.fromarray(np.repeat(grey[:, :, np.newaxis], 3, axis=2))


def _read_bounded(source: bytes | str | os.PathLike[str], limits: ImageLimits) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        _check_byte_size(len(data), limits)
        return data
    path = Path(source)
    _check_byte_size(path.stat().st_size, limits)
    with path.open("rb") as fh:
        # Read one byte past the limit in case the file grew after stat().
        data = fh.read(limits.max_bytes + 1)
    _check_byte_size(len(data), limits)
    return data


def _check_byte_size(size: int, limits: ImageLimits) -> None:
    if size == 0:
        raise ImageRejected("empty", "the file is empty (0 bytes)")
    if size > limits.max_bytes:
        have, limit = _human_bytes(size), _human_bytes(limits.max_bytes)
        if have == limit:  # just over: rounding would print the same figure twice
            have, limit = f"{size:,} bytes", f"{limits.max_bytes:,} bytes"
        raise ImageRejected("too_large", f"image is {have}, over the {limit} limit")


def _human_bytes(n: int) -> str:
    if n >= _MB:
        return f"{n / _MB:.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n} bytes"


def _open(data: bytes) -> ImageFile.ImageFile:
    """Open (parse headers only) with Pillow restricted to the allowed formats."""
    try:
        img = Image.open(io.BytesIO(data), formats=_OPEN_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb_from_pillow(exc) from exc
    except UnidentifiedImageError as exc:
        raise _identify_failure(data) from exc
    except _DECODE_ERRORS as exc:
        raise _identify_failure(data, detail=str(exc)) from exc
    if img.format not in ALLOWED_FORMATS | _JPEG_FORMATS:  # pragma: no cover - defensive
        img.close()
        raise ImageRejected(
            "unsupported_format",
            f"{img.format} is not supported; upload {_ALLOWED_HUMAN}",
        )
    return img


def _checked_format(img: ImageFile.ImageFile, limits: ImageLimits) -> str:
    """The image's format ("MPO" counts as "JPEG") once its declared size is within limits."""
    width, height = img.size
    if width * height > limits.max_pixels:
        have, limit = _human_pixels(width * height), _human_pixels(limits.max_pixels)
        if have == limit:
            have, limit = f"{width * height:,} pixels", f"{limits.max_pixels:,} pixels"
        raise ImageRejected(
            "bomb", f"image is {width}x{height} pixels ({have}), over the {limit} limit"
        )
    if min(width, height) < limits.min_side:
        raise ImageRejected(
            "too_small",
            f"image is {width}x{height} pixels; each side must be at least "
            f"{limits.min_side} pixels",
        )
    return "JPEG" if img.format in _JPEG_FORMATS else str(img.format)


def _read_through(img: ImageFile.ImageFile, fmt: str) -> None:
    """Read all the compressed data (see ``check_image``); ``ImageRejected`` if it is cut short
    or damaged."""
    if fmt == "PNG":
        try:
            img.verify()
        except _DECODE_ERRORS as exc:
            raise _truncated(fmt, exc) from exc
        return
    if fmt == "JPEG":
        img.draft(img.mode, (1, 1))  # the smallest scale the decoder has: 1/8
    _load_pixels(img, fmt)


def _load_pixels(img: ImageFile.ImageFile, fmt: str) -> None:
    try:
        img.load()  # first frame only for animations: the file is never seeked
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb_from_pillow(exc) from exc
    except _DECODE_ERRORS as exc:
        raise _truncated(fmt, exc) from exc


def _truncated(fmt: str, exc: BaseException) -> ImageRejected:
    return ImageRejected("truncated", f"{fmt} data is truncated or corrupt ({exc}); "
                                      "upload the file again")


def _decode(
    img: ImageFile.ImageFile, limits: ImageLimits, draft_size: tuple[int, int] | None
) -> Image.Image:
    fmt = _checked_format(img, limits)
    if draft_size is not None and fmt == "JPEG":
        img.draft("RGB", draft_size)
    _load_pixels(img, fmt)
    out = to_rgb(_upright(img))
    if out is img:
        out = img.copy()  # detach from the file object, which is closed by the caller
    return out


def _human_pixels(n: int) -> str:
    return f"{n / 1e6:.1f} MP" if n >= 1_000_000 else f"{n:,} pixels"


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF (or XMP) orientation; ``img`` itself when there is none to apply."""
    try:
        orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
        if orientation in (2, 3, 4, 5, 6, 7, 8):
            return ImageOps.exif_transpose(img)
    except _DECODE_ERRORS:
        pass  # damaged metadata: keep the pixels as stored rather than refuse the photo
    return img


def _bomb_from_pillow(exc: Exception) -> ImageRejected:
    return ImageRejected(
        "bomb", f"image has too many pixels, possibly a decompression bomb ({exc})"
    )


# Formats recognised only to name them in the refusal; none of these is ever given to Pillow.
def _sniff(data: bytes) -> str | None:
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith(b"%PDF-"):
        return "PDF"
    if head.startswith((b"%!PS", b"\xc5\xd0\xd3\xc6")):
        return "EPS"
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "TIFF"
    if head.startswith(b"BM") and len(data) >= 18:
        (dib_header_size,) = struct.unpack_from("<I", data, 14)
        if dib_header_size in (12, 16, 40, 52, 56, 64, 108, 124):
            return "BMP"
    if head.startswith(b"8BPS"):
        return "PSD"
    if head.startswith((b"\xff\x4f\xff\x51", b"\x00\x00\x00\x0cjP  \r\n\x87\n")):
        return "JPEG 2000"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"):
            return "HEIC"
    if head.startswith(b"\x00\x00\x01\x00"):
        return "ICO"
    text = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<?xml", b"<svg", b"<!doctype svg", b"<!--")) and b"<svg" in text:
        return "SVG"
    return None


def _identify_failure(data: bytes, detail: str | None = None) -> ImageRejected:
    kind = _sniff(data)
    if kind is None:
        what = (
            "contains text, not an image" if _looks_like_text(data) else "is not a readable image"
        )
        return ImageRejected("unreadable", f"the file {what}; upload {_ALLOWED_HUMAN}")
    if kind in ALLOWED_FORMATS:
        name = "WebP" if kind == "WEBP" else kind
        why = f" ({detail})" if detail else ""
        return ImageRejected(
            "truncated", f"{name} data is truncated or corrupt{why}; upload the file again"
        )
    return ImageRejected("unsupported_format", f"{kind} is not supported; upload {_ALLOWED_HUMAN}")


def _looks_like_text(data: bytes) -> bool:
    try:
        # Incremental decoding tolerates a multi-byte character cut at the sample's end.
        sample = codecs.getincrementaldecoder("utf-8")().decode(data[:1024], final=False)
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\t\r\n" for ch in sample)
