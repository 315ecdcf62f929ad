"""Hostile and odd uploads (guarantee 5) and the fixtures the hostile-upload and secure-default
tests share. Self-contained: nothing here depends on tests/reliability/conftest.py.

Every case is built from scratch with Pillow (or by hand) and says what must happen to it:
refused with a reason (``reason`` set), or accepted, in which case ``check`` looks at the
engine's decode (``similarity.embedding.images.load_image``) of the bytes the product ends up with.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from PIL import Image, ImageDraw

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)
SEARCH_K = 10


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def close(actual, expected, tol: int) -> bool:
    return all(abs(int(a) - int(e)) <= tol for a, e in zip(actual, expected, strict=True))


def garment(seed: int, size: int = 160) -> Image.Image:
    """A distinct synthetic 'garment': coloured shapes on white."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), WHITE)
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x0, y0 = (int(v) for v in rng.integers(0, size // 2, 2))
        w, h = (int(v) for v in rng.integers(size // 4, size // 2, 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x0 + w, y0 + h), fill=colour)
    return img


# ---------------------------------------------------------------------------------- the files


def _noise_jpeg() -> bytes:
    rng = np.random.default_rng(7)
    return encode(Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)), "JPEG")


def truncated_jpeg() -> bytes:
    data = _noise_jpeg()
    cut = data[: len(data) * 2 // 3]
    with Image.open(io.BytesIO(cut)) as img:
        img.verify()  # what Django's ImageField checks: this cut-short file passes it
    return cut


def truncated_png() -> bytes:
    rng = np.random.default_rng(8)
    data = encode(Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)), "PNG")
    return data[: len(data) * 2 // 3]


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


BOMB_SIDE = 20_000  # 400 MP declared: over the configured 50 MP and over 2x Pillow's own limit


def decompression_bomb_png(side: int = BOMB_SIDE) -> bytes:
    """A valid 1-bit greyscale PNG of side x side zeros: 400 MP from about 60 KB."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)  # filter byte + packed bits
    z = zlib.compressobj(9)
    parts = [z.compress(row * 1000) for _ in range(side // 1000)]
    parts.append(z.compress(row * (side % 1000)))
    parts.append(z.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


def noisy_png() -> bytes:
    """About 12 KB: over the small limit the over-size case sets."""
    rng = np.random.default_rng(9)
    return encode(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), "PNG")


SVG = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
    b'<script>alert(document.cookie)</script><rect width="100" height="100" fill="red"/></svg>\n'
)
EPS = (
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n"
    b"(/etc/passwd) (r) file pop\nnewpath 0 0 moveto 100 100 lineto stroke showpage\n%%EOF\n"
)


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (64, 64), c) for c in (RED, GREEN, BLUE)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(io.BytesIO(data)) as check:
        assert check.n_frames == 3
    return data


def palette_transparent_png() -> bytes:
    img = Image.new("P", (64, 32), 0)
    img.putpalette([0, 0, 0, *RED] + [0] * (256 - 2) * 3)
    img.paste(1, (32, 0, 64, 32))  # right half is red (index 1); left half index 0 = transparent
    data = encode(img, "PNG", transparency=0)
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == "P" and "transparency" in check.info
    return data


CMYK_COLOUR = (0, 255, 255, 0)  # pure red in CMYK


def cmyk_jpeg() -> bytes:
    data = encode(Image.new("CMYK", (64, 64), CMYK_COLOUR), "JPEG", quality=95)
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == "CMYK"
    return data


SIXTEEN_BIT = (65535, 32768, 0, 257)  # each a 16 x 64 column band


def sixteen_bit_png() -> bytes:
    arr = np.repeat(np.repeat(np.array([SIXTEEN_BIT], dtype=np.uint16), 16, axis=1), 64, axis=0)
    data = encode(Image.fromarray(arr), "PNG")
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode.startswith("I;16"), check.mode
    return data


def exif_rotated_jpeg() -> bytes:
    """Stored 80x40, left half red, right half blue; EXIF orientation 6 (turn 90° clockwise)."""
    img = Image.new("RGB", (80, 40), BLUE)
    img.paste(RED, (0, 0, 40, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(img, "JPEG", exif=exif, quality=95)


def one_pixel_png() -> bytes:
    return encode(Image.new("RGB", (1, 1), (10, 120, 200)), "PNG")


def strip_png() -> bytes:
    img = Image.new("RGB", (10_000, 100), WHITE)
    ImageDraw.Draw(img).rectangle((0, 0, 4_999, 99), fill=BLUE)
    return encode(img, "PNG")


# ------------------------------------------------------------------- what must happen to them


def _check_gif(img: Image.Image) -> None:
    assert img.mode == "RGB" and img.size == (64, 64)
    assert img.getpixel((32, 32)) == RED, "the first frame, not a later one"


def _check_palette(img: Image.Image) -> None:
    assert img.mode == "RGB" and img.size == (64, 32)
    assert img.getpixel((5, 5)) == WHITE, "the transparent palette entry is composited on white"
    assert img.getpixel((50, 20)) == RED


def _check_cmyk(img: Image.Image) -> None:
    assert img.mode == "RGB"
    assert close(img.getpixel((32, 32)), RED, tol=10), img.getpixel((32, 32))


def _check_16_bit(img: Image.Image) -> None:
    assert img.mode == "RGB" and img.size == (64, 64)
    arr = np.asarray(img)
    got = [tuple(int(v) for v in arr[32, 16 * i + 8]) for i in range(4)]
    assert got[0] == (255, 255, 255)
    assert close(got[1], (128, 128, 128), tol=1), got[1]  # scaled by 1/257, not clipped to 255
    assert got[2] == (0, 0, 0)
    assert got[3] == (1, 1, 1)


def _check_upright(img: Image.Image) -> None:
    assert img.size == (40, 80), "orientation 6 turns the stored 80x40 upright to 40x80"
    # Turning clockwise brings the stored left half (red) to the top.
    assert close(img.getpixel((20, 10)), RED, tol=12), img.getpixel((20, 10))
    assert close(img.getpixel((20, 70)), BLUE, tol=12), img.getpixel((20, 70))


def _check_one_pixel(img: Image.Image) -> None:
    assert img.mode == "RGB" and img.size == (1, 1)
    assert img.getpixel((0, 0)) == (10, 120, 200)


def _check_strip(img: Image.Image) -> None:
    assert img.mode == "RGB" and img.size == (10_000, 100)
    assert img.getpixel((100, 50)) == BLUE and img.getpixel((9_900, 50)) == WHITE


def _bands(size: tuple[int, int], colours: list[tuple[int, int, int]], *, vertical: bool) -> Image.Image:
    """Equal bands of ``colours``: left to right, or top to bottom when ``vertical``."""
    img = Image.new("RGB", size)
    n = len(colours)
    w, h = size
    for i, colour in enumerate(colours):
        box = (0, h * i // n, w, h * (i + 1) // n) if vertical else (w * i // n, 0, w * (i + 1) // n, h)
        img.paste(colour, box)
    return img


# What each accepted case must look like once normalised, drawn independently of the engine.
EXPECTED = {
    "animated-gif": lambda: Image.new("RGB", (64, 64), RED),
    "palette-transparency": lambda: _bands((64, 32), [WHITE, RED], vertical=False),
    "cmyk-jpeg": lambda: Image.new("RGB", (64, 64), RED),
    "16-bit-png": lambda: _bands((64, 64), [(v,) * 3 for v in (255, 128, 0, 1)], vertical=False),
    "exif-rotated-jpeg": lambda: _bands((40, 80), [RED, BLUE], vertical=True),
    "1x1": lambda: Image.new("RGB", (1, 1), (10, 120, 200)),
    "10000x100-strip": lambda: _bands((10_000, 100), [BLUE, WHITE], vertical=False),
}


def looks_like(actual: Image.Image, expected: Image.Image, *, mean_tol: float = 12.0) -> None:
    """Same size, and on average within ``mean_tol`` per channel (JPEG leaves some noise)."""
    assert actual.size == expected.size, (actual.size, expected.size)
    diff = np.abs(np.asarray(actual.convert("RGB"), np.int16) - np.asarray(expected, np.int16))
    assert diff.mean() < mean_tol, f"mean difference {diff.mean():.1f} from the expected image"


@dataclass(frozen=True)
class Case:
    id: str
    filename: str
    make: Callable[[], bytes]
    reason: str | None = None  # refused with this reason, or accepted when None
    words: str = ""  # what the refusal's message must say
    check: Callable[[Image.Image], None] | None = None
    max_bytes: int | None = None  # LOOKALIKE_MAX_UPLOAD_BYTES for this case

    @property
    def refused(self) -> bool:
        return self.reason is not None

    def expected(self) -> Image.Image:
        return EXPECTED[self.id]()

    def upload(self, data: bytes | None = None, name: str | None = None) -> SimpleUploadedFile:
        return SimpleUploadedFile(name or self.filename, self.make() if data is None else data,
                                  content_type="application/octet-stream")


OVERSIZE_LIMIT = 4_000

CASES = [
    Case("zero-bytes", "empty.jpg", lambda: b"", reason="empty", words="0 bytes"),
    Case("text-named-jpg", "photo.jpg", lambda: b"buy milk, eggs and bread\n" * 20,
         reason="unreadable", words="contains text, not an image"),
    Case("truncated-jpeg", "cut.jpg", truncated_jpeg, reason="truncated",
         words="JPEG data is truncated or corrupt"),
    Case("truncated-png", "cut.png", truncated_png, reason="truncated",
         words="PNG data is truncated or corrupt"),
    Case("decompression-bomb", "bomb.png", decompression_bomb_png, reason="bomb",
         words="possibly a decompression bomb"),
    Case("over-size-limit", "big.png", noisy_png, reason="too_large", words="over the",
         max_bytes=OVERSIZE_LIMIT),
    Case("svg", "logo.svg", lambda: SVG, reason="unsupported_format", words="SVG is not supported"),
    Case("svg-named-png", "logo.png", lambda: SVG, reason="unsupported_format",
         words="SVG is not supported"),
    Case("eps", "art.eps", lambda: EPS, reason="unsupported_format", words="EPS is not supported"),
    Case("animated-gif", "anim.gif", animated_gif, check=_check_gif),
    Case("palette-transparency", "palette.png", palette_transparent_png, check=_check_palette),
    Case("cmyk-jpeg", "cmyk.jpg", cmyk_jpeg, check=_check_cmyk),
    Case("16-bit-png", "deep.png", sixteen_bit_png, check=_check_16_bit),
    Case("exif-rotated-jpeg", "rotated.jpg", exif_rotated_jpeg, check=_check_upright),
    Case("1x1", "dot.png", one_pixel_png, check=_check_one_pixel),
    Case("10000x100-strip", "strip.png", strip_png, check=_check_strip),
]
REFUSED = [c for c in CASES if c.refused]
ACCEPTED = [c for c in CASES if not c.refused]


def case_params(cases: list[Case]) -> list:
    return [pytest.param(c, id=c.id) for c in cases]


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture
def media_root(settings, tmp_path: Path) -> Path:
    """A MEDIA_ROOT of this test's own (a subdirectory, so escapes to its parent are visible)."""
    root = tmp_path / "site" / "media"
    root.mkdir(parents=True)
    settings.MEDIA_ROOT = root
    return root


@pytest.fixture
def matrix_dir(settings, tmp_path: Path) -> Path:
    path = tmp_path / "matrix"
    path.mkdir()
    settings.LOOKALIKE_MATRIX_DIR = path
    return path


@pytest.fixture
def fresh_state(settings):
    """No rate limit left over from other tests, and no cached search index."""
    from catalog.selectors import photo_search as selectors

    cache.clear()
    selectors.search_index_clear()
    yield
    cache.clear()
    selectors.search_index_clear()


@pytest.fixture
def no_rate_limit(settings, fresh_state):
    settings.LOOKALIKE_SEARCH_RATE = "0/m"


@pytest.fixture
def superuser_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return client


def add_via_admin(client, upload: SimpleUploadedFile, *, name: str = "Odd upload", **extra):
    from django.urls import reverse

    return client.post(
        reverse("admin:catalog_product_add"),
        {"name": name, "slug": "", "category": "Odd", "image": upload, "_save": "Save", **extra},
    )


def stored_product(*, name: str, data: bytes, category: str = "Catalog", status: str = "ready",
                   vector: np.ndarray | None = None):
    """A product row with its file under MEDIA_ROOT/products/, written without the services."""
    from django.conf import settings

    from catalog.models import Product
    from catalog.vectors import sha256_hex, vector_key_current, vector_to_bytes

    rel = f"products/{sha256_hex(data)[:16]}-{name.lower().replace(' ', '-')}.png"
    path = Path(settings.MEDIA_ROOT) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    sha = sha256_hex(data)
    return Product.objects.create(
        name=name, slug=name.lower().replace(" ", "-"), category=category, image=rel,
        image_sha256=sha, status=status, status_changed_at=timezone.now(),
        vector=None if vector is None else vector_to_bytes(vector),
        vector_key=vector_key_current() if vector is not None else "",
        embedded_image_sha256=sha if vector is not None else "",
    )


@pytest.fixture(scope="session")
def catalog_vectors(model_path) -> list[tuple[bytes, np.ndarray]]:
    """12 synthetic garments (PNG bytes) and their real embeddings (made once per session)."""
    from catalog.engine import embedder_get

    images = [encode(garment(100 + i), "PNG") for i in range(12)]
    vectors = embedder_get().embed_many(images)
    return list(zip(images, vectors, strict=True))


@pytest.fixture
def searchable_catalog(media_root, fresh_state, catalog_vectors):
    """12 ready products with real vectors: search by photo has more than 10 to choose from."""
    return [
        stored_product(name=f"Garment {i}", data=data, vector=vector)
        for i, (data, vector) in enumerate(catalog_vectors)
    ]


def raw_multipart(fields: dict[str, str], files: list[tuple[str, bytes, bytes]]) -> tuple[bytes, str]:
    """A multipart body built by hand, so a file name reaches the server exactly as given.

    ``files`` are (field, raw file name bytes, content). Django's test client would take
    ``os.path.basename`` of the name first and hide what a hostile client can send.
    """
    boundary = b"----lookalike-hostile-boundary"
    parts = []
    for name, value in fields.items():
        parts.append(
            b"--" + boundary + b"\r\n"
            + f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode() + b"\r\n"
        )
    for field, filename, content in files:
        parts.append(
            b"--" + boundary + b"\r\n"
            + f'Content-Disposition: form-data; name="{field}"; filename="'.encode()
            + filename + b'"\r\nContent-Type: image/png\r\n\r\n'
            + content + b"\r\n"
        )
    body = b"".join(parts) + b"--" + boundary + b"--\r\n"
    return body, f"multipart/form-data; boundary={boundary.decode()}"
