"""A colour descriptor of the garment's own pixels, and its blend with a shape space.

:func:`colour_descriptor` (version ``COLOUR_KEY``) reads only the garment: the mask of
:func:`similarity.embedding.framing.find_garment`, shrunk by one pixel so that edge pixels mixed with
the background do not count. The versions differ only in the framing they read: ``lab-hist@2``
(current) the one frame-margin@3 finds (a 96 px working copy made through ``Image.reduce``), so
the embed worker finds the garment once per photo for the crop and the colour;
``lab-hist@1`` the 128 px default framing. On a busy background (no mask) a centred Gaussian weighting
stands in for it. Each pixel is converted to CIE Lab (D65) and spread softly over a fixed grid
of ``COLOUR_DIM`` Lab centres (L in 4 levels x a, b in 7 x 7 steps of 25); lightness counts
half as much as hue and chroma, so a garment's shading moves less than its dye does. The
histogram is square-rooted (Hellinger) and L2-normalised: euclidean distance between two
descriptors is the Hellinger distance between the garments' colour distributions.

Storage: ``COLOUR_DIM`` float32 beside the 1280-d vector, keyed by ``COLOUR_KEY`` (plus the
image it came from), computed from the same decoded picture at embed time.

:func:`blend_colour` puts a shape vector and a colour descriptor side by side,
``[shape / |shape|, w * colour] / sqrt(1 + w**2)``, so that squared euclidean distance is
``(d_shape**2 + w**2 d_colour**2) / (1 + w**2)``: ``w = 0`` is shape only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from similarity.embedding.framing import (
    REDUCED_WORK_SIDE,
    REDUCING_GAP,
    WORK_SIDE,
    Framing,
    find_garment,
)

__all__ = ["COLOUR", "COLOUR_DIM", "COLOUR_KEY", "LAB_HIST_V1", "LAB_HIST_V2", "ColourVersion", "axis_shares",
           "blend_colour", "colour_descriptor", "garment_samples", "garment_weights", "rgb_to_lab"]

_L_CENTRES = np.array([15.0, 40.0, 65.0, 90.0])
_AB_CENTRES = np.arange(-75.0, 76.0, 25.0)
_L_WEIGHT = 0.5
_SIGMA = 15.0
_MAX_PIXELS = 4096
COLOUR_DIM = _L_CENTRES.size * _AB_CENTRES.size**2  # 4 * 7 * 7 = 196
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (..., 3) in 0-255 to CIE Lab (D65), float64."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _RGB_TO_XYZ.T / _WHITE_D65
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])],
                    axis=-1)


def garment_weights(framing: Framing) -> np.ndarray:
    """Per working pixel, how much it counts as the garment's colour (see the module)."""
    h, w = framing.mask.shape
    if not framing.found:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        return np.exp(-(((xx - (w - 1) / 2) / (0.25 * w)) ** 2 + ((yy - (h - 1) / 2) / (0.25 * h)) ** 2) / 2)
    mask = framing.mask > 0.5
    inner = mask.copy()  # shrink by one pixel (4-neighbourhood)
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return (inner if inner.any() else mask).astype(np.float64)


def garment_samples(framing: Framing) -> tuple[np.ndarray, np.ndarray]:
    """(weights, Lab colours) of an even sample of at most ``_MAX_PIXELS`` garment pixels (a
    sample is enough for a histogram)."""
    weights = garment_weights(framing).ravel()
    keep = np.flatnonzero(weights > 0)
    keep = keep[:: max(1, keep.size // _MAX_PIXELS)]
    return weights[keep], rgb_to_lab(framing.work.reshape(-1, 3)[keep])


def axis_shares(lab: np.ndarray) -> list[np.ndarray]:
    """Each pixel's share of every centre, axis by axis (L, a, b): the Gaussian kernel over
    (L, a, b) is a product of one per axis, and so is its normalisation over the grid."""
    shares = []
    for axis, centres, scale in ((0, _L_CENTRES, _L_WEIGHT), (1, _AB_CENTRES, 1.0), (2, _AB_CENTRES, 1.0)):
        d2 = ((lab[:, axis, None] - centres[None, :]) * scale) ** 2
        k = np.exp(-(d2 - d2.min(axis=1, keepdims=True)) / (2 * _SIGMA**2))
        shares.append(k / k.sum(axis=1, keepdims=True))
    return shares


@dataclass(frozen=True)
class ColourVersion:
    """A version of the descriptor: its key and the working copy its framing is found on."""

    key: str
    work_side: int
    reducing_gap: float | None

    def find_garment(self, image: Image.Image) -> Framing:
        """The framing this version reads: give it to :meth:`describe`."""
        return find_garment(image, work_side=self.work_side, reducing_gap=self.reducing_gap)

    def reads(self, work_side: int, reducing_gap: float | None) -> bool:
        """Whether a framing found on this working copy is the one this version reads."""
        return (work_side, reducing_gap) == (self.work_side, self.reducing_gap)

    def describe(self, image: Image.Image, framing: Framing | None = None) -> np.ndarray:
        """The descriptor of ``image``; ``framing``: :meth:`find_garment` of it, if the caller has it."""
        return colour_descriptor(image, framing or self.find_garment(image.convert("RGB")))


LAB_HIST_V1 = ColourVersion("lab-hist@1", WORK_SIDE, None)
LAB_HIST_V2 = ColourVersion("lab-hist@2", REDUCED_WORK_SIDE, REDUCING_GAP)
COLOUR = LAB_HIST_V2
COLOUR_KEY = COLOUR.key


def colour_descriptor(image: Image.Image, framing: Framing | None = None) -> np.ndarray:
    """``(COLOUR_DIM,)`` float32, unit length: the garment's colours (see the module), read on
    ``framing`` (by default the current version's framing of ``image``)."""
    weights, lab = garment_samples(framing or COLOUR.find_garment(image.convert("RGB")))
    lightness, a, b = axis_shares(lab)
    # The sum over pixels of weight x L share x a share x b share, as one matrix product (an
    # einsum of the four was half of the descriptor's time).
    ab = (a[:, :, None] * b[:, None, :]).reshape(len(weights), -1)
    hist = np.sqrt(((weights[:, None] * lightness).T @ ab).ravel())
    norm = np.linalg.norm(hist)
    return (hist / norm if norm > 0 else hist).astype(np.float32)


def blend_colour(shape: np.ndarray, colour: np.ndarray, weight: float) -> np.ndarray:
    """``[l2(shape), weight * l2(colour)] / sqrt(1 + weight**2)`` row by row (float64)."""
    if weight < 0:
        raise ValueError(f"weight must be non-negative, got {weight}")
    s = np.atleast_2d(np.asarray(shape, dtype=np.float64))
    c = np.atleast_2d(np.asarray(colour, dtype=np.float64))
    if s.shape[0] != c.shape[0]:
        raise ValueError(f"{s.shape[0]} shape vectors but {c.shape[0]} colour descriptors")
    s = s / np.maximum(np.linalg.norm(s, axis=1, keepdims=True), 1e-12)
    c = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    z = np.hstack([s, weight * c]) / np.sqrt(1.0 + weight**2)
    return z[0] if np.ndim(shape) == 1 else z
