"""Shop-style colour photos made from Fashion-MNIST garments: dyed, shot the shop's way or the
shopper's way. Deterministic: every picture is a pure function of (garment, dye, shot).

**Dyeing.** Fashion-MNIST is light garments on black. A garment's grey level ``v`` (0-255)
says how much fabric, and how lit, a pixel holds; dyed, the garment's pixels tint from white
towards the dye colour by ``(v / 255) ** 0.5`` (the interior takes the dye almost fully, thin
or shaded parts are paler tints of it). Black dye gives the familiar dark-on-white garment.
The silhouette (alpha) is ``min(1, v / 64)``: where the garment is on the background.

**Shots.** A :class:`Shot` is how the garment is photographed: canvas size, garment size as
a share of the canvas's shorter side, centre offset, tilt, background colour (with a gentle
gradient and sensor noise), JPEG quality. :func:`catalog_shot` is the shop's: centred, plain
white, garment filling the square as in Fashion-MNIST, PNG-clean. :func:`shop_extra_shot`
draws one of the shop's further photos of a garment (studio light, another framing, placing
and pose); :func:`shopper_shot` draws a random shopper's shot from a seeded generator.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from similarity.embedding.framing import find_garment

__all__ = [
    "DYES",
    "DYE_NAMES",
    "Shot",
    "catalog_shot",
    "dye",
    "dyed_colours",
    "render",
    "reshoot",
    "shop_extra_shot",
    "shopper_shot",
]

# Eight dyes a shop might sell, as sRGB. Chosen to be told apart by a shopper (no white: a
# white garment on a white catalog background is a different problem).
DYES: dict[str, tuple[int, int, int]] = {
    "black": (28, 28, 30),
    "navy": (28, 40, 100),
    "red": (200, 30, 40),
    "green": (40, 125, 60),
    "mustard": (215, 170, 35),
    "pink": (235, 120, 170),
    "camel": (175, 125, 75),
    "sky": (90, 160, 225),
}
DYE_NAMES: tuple[str, ...] = tuple(DYES)
_ALPHA_FULL = 64.0  # grey level from which a pixel is all garment
_PAD = 0.08  # reshoot: the band of border colour put round a photo before finding its garment


@dataclass(frozen=True)
class Shot:
    """How one photo is taken. ``scale``: the garment's (28-px square's) side as a share of the
    canvas's shorter side; ``dx``/``dy``: its centre's offset as a share of the canvas size;
    ``tilt`` in degrees (counter-clockwise); ``background``: RGB; ``gradient``: the background
    darkens by this much (0-1) from top-left to bottom-right; ``noise``: sensor noise sigma in
    grey levels; ``jpeg``: quality, or None for a lossless picture."""

    size: tuple[int, int] = (224, 224)
    scale: float = 1.0
    dx: float = 0.0
    dy: float = 0.0
    tilt: float = 0.0
    background: tuple[int, int, int] = (255, 255, 255)
    gradient: float = 0.0
    noise: float = 0.0
    jpeg: int | None = None
    seed: int = 0  # of the sensor noise


def catalog_shot() -> Shot:
    """The shop's product shot: centred, plain white, 224x224, lossless."""
    return Shot()


def shop_extra_shot(rng: np.random.Generator) -> Shot:
    """A shop's further photo of a garment: studio-clean like :func:`catalog_shot`, but framed,
    placed and posed otherwise: garment 70-100 % of the frame, off-centre within the room left,
    tilted up to 10 degrees, white to light-grey background, JPEG quality 85-95; square or 3:4."""
    size = (240, 320) if rng.random() < 0.5 else (256, 256)
    scale = float(rng.uniform(0.7, 1.0))
    room = (1.0 - scale) / 2
    dx = float(rng.uniform(-room, room)) * min(size) / size[0]
    dy = float(rng.uniform(-room, room)) * min(size) / size[1]
    grey = rng.uniform(215, 255)
    background = tuple(int(np.clip(grey + rng.uniform(-4, 4), 0, 255)) for _ in range(3))
    return Shot(size=size, scale=scale, dx=dx, dy=dy, tilt=float(rng.uniform(-10.0, 10.0)),
                background=(background[0], background[1], background[2]),
                gradient=float(rng.uniform(0.0, 0.06)), noise=float(rng.uniform(0.0, 1.5)),
                jpeg=int(rng.integers(85, 96)), seed=int(rng.integers(2**31)))


def shopper_shot(rng: np.random.Generator) -> Shot:
    """A shopper's photo: garment smaller or larger in the frame, off-centre, slightly tilted,
    off-white or grey background, JPEG quality 60-85; square or 3:4 portrait."""
    size = (240, 320) if rng.random() < 0.5 else (256, 256)
    scale = float(rng.uniform(0.5, 1.05))
    room = max(0.0, 1.0 - scale) / 2  # how far the centre can move and keep the garment in frame
    dx = float(rng.uniform(-room, room)) * min(size) / size[0]
    dy = float(rng.uniform(-room, room)) * min(size) / size[1]
    tilt = float(rng.uniform(-12.0, 12.0))
    if rng.random() < 0.5:  # off-white, slightly warm or cool
        base = rng.uniform(228, 250)
        background = tuple(int(np.clip(base + rng.uniform(-8, 8), 0, 255)) for _ in range(3))
    else:  # grey, nearly neutral
        base = rng.uniform(140, 215)
        background = tuple(int(np.clip(base + rng.uniform(-6, 6), 0, 255)) for _ in range(3))
    return Shot(size=size, scale=scale, dx=dx, dy=dy, tilt=tilt,
                background=(background[0], background[1], background[2]),
                gradient=float(rng.uniform(0.0, 0.12)), noise=float(rng.uniform(1.0, 3.0)),
                jpeg=int(rng.integers(60, 86)), seed=int(rng.integers(2**31)))


def dyed_colours(rng: np.random.Generator, dye_name: str, jitter: float = 10.0) -> tuple[float, float, float]:
    """The dye's RGB with a small per-garment variation (batches of one dye differ a little)."""
    r, g, b = (np.asarray(DYES[dye_name], dtype=np.float64) + rng.uniform(-jitter, jitter, 3)).clip(0, 255)
    return float(r), float(g), float(b)


def dye(image28: np.ndarray, colour: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(RGB float (H, W, 3) of the dyed garment, alpha (H, W) in [0, 1]) from grey levels."""
    v = np.asarray(image28, dtype=np.float64) / 255.0
    tint = np.sqrt(v)[..., None]
    rgb = 255.0 - tint * (255.0 - np.asarray(colour, dtype=np.float64))
    alpha = np.clip(v * 255.0 / _ALPHA_FULL, 0.0, 1.0)
    return rgb, alpha


def render(image28: np.ndarray, colour: tuple[float, float, float], shot: Shot) -> Image.Image:
    """Photograph the garment (28x28 grey levels, light on black) dyed ``colour`` under ``shot``."""
    w, h = shot.size
    side = max(1, round(shot.scale * min(w, h)))
    grey = Image.fromarray(np.asarray(image28, dtype=np.uint8), mode="L")
    grey = grey.resize((side, side), Image.Resampling.BICUBIC)
    if shot.tilt:
        grey = grey.rotate(shot.tilt, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=0)
    rgb, alpha = dye(np.asarray(grey), colour)
    return _photograph(rgb, alpha, shot)


def reshoot(img: Image.Image, shot: Shot) -> Image.Image:
    """Photograph again, under ``shot``, the garment of a product photo on a plain background
    (an augmented view of a catalog shot), as :func:`render` photographs a 28 px garment: the
    photo's frame plays the 28 px square's part, its longer side scaled to ``shot.scale`` of
    the canvas's shorter side, so the garment keeps its share of the frame. The garment is cut
    out with its framing mask (similarity/embedding/framing.py) and cropped to its box, tilted, and laid
    on the shot's background. The photo is first framed by a band of its own border's colour
    (:data:`_PAD` of its shorter side), so a garment touching the frame, as a catalog shot's
    often does, is still found. A busy background (no garment found) is photographed whole, as
    an opaque picture."""
    w, h = shot.size
    fit = shot.scale * min(w, h) / max(img.size)
    padded = _pad_with_border(img.convert("RGB"))
    framing = find_garment(padded)
    rgba = padded.convert("RGBA")
    rgba.putalpha(framing.alpha() if framing.found else Image.new("L", padded.size, 255))
    if framing.box is not None:
        rgba = rgba.crop(framing.box)
    rgba = rgba.resize((max(1, round(rgba.width * fit)), max(1, round(rgba.height * fit))),
                       Image.Resampling.BICUBIC)
    if shot.tilt:
        rgba = rgba.rotate(shot.tilt, resample=Image.Resampling.BICUBIC, expand=True)
    arr = np.asarray(rgba, dtype=np.float64)
    return _photograph(arr[..., :3], arr[..., 3] / 255.0, shot)


def _pad_with_border(img: Image.Image) -> Image.Image:
    """``img`` in a band of the median colour of its outermost pixels."""
    arr = np.asarray(img)
    ring = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    colour = tuple(int(c) for c in np.median(ring, axis=0))
    return ImageOps.expand(img, border=max(2, round(_PAD * min(img.size))), fill=colour)


def _photograph(rgb: np.ndarray, alpha: np.ndarray, shot: Shot) -> Image.Image:
    """Lay a garment (RGB float (gh, gw, 3), alpha (gh, gw) in [0, 1]) on the shot's background:
    gradient, placement, sensor noise, JPEG."""
    w, h = shot.size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    ramp = 1.0 - shot.gradient * (xx / max(w - 1, 1) + yy / max(h - 1, 1)) / 2.0
    canvas = np.asarray(shot.background, dtype=np.float64)[None, None, :] * ramp[..., None]

    gh, gw = alpha.shape
    left = round(w / 2 + shot.dx * w - gw / 2)
    top = round(h / 2 + shot.dy * h - gh / 2)
    # The part of the garment's box inside the canvas.
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + gw, w), min(top + gh, h)
    if x1 > x0 and y1 > y0:
        a = alpha[y0 - top : y1 - top, x0 - left : x1 - left, None]
        g = rgb[y0 - top : y1 - top, x0 - left : x1 - left]
        canvas[y0:y1, x0:x1] = canvas[y0:y1, x0:x1] * (1.0 - a) + g * a
    if shot.noise:
        canvas += np.random.default_rng(shot.seed).normal(0.0, shot.noise, canvas.shape)
    img = Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8), mode="RGB")
    if shot.jpeg is None:
        return img
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=shot.jpeg)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
