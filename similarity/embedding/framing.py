"""Find the garment on a plain or near-plain background. Pure numpy and Pillow.

:func:`find_garment` works on a copy of the picture at most ``WORK_SIDE`` (or ``work_side``)
pixels on a side:

1. **Background model** from the border ring (4 % of the shorter side): a plane per channel
   (so a gentle gradient or vignette is still "plain") fitted by least squares to the ring,
   refitted on the ring pixels that fit the first plane.
2. **Difference** of every (lightly blurred) pixel from the background model: the largest of
   the three channel differences. The threshold is ``max(MIN_THRESHOLD, 4 sigma)``, sigma
   the ring's robust noise level (1.4826 x the median difference).
3. **Plain or busy.** The background is *plain* when its noise sigma is at most
   ``MAX_NOISE`` and at least ``MIN_PLAIN_BORDER`` of the ring is background (a garment may
   touch one or two sides). A busy background (texture, a room, a pattern) is not plain: the
   framing gives up and the caller uses the whole image.
4. **Foreground**: pixels over the threshold, opened (3x3) to drop specks of JPEG or sensor
   noise, closed (5x5) to join a garment's parts, and eroded (3x3) to undo the blur's
   spreading; its holes filled (a flood fill of the
   background from outside), giving a mask; pixels that differ from the background by between
   twice the noise and the threshold (pale parts, soft edges) count partly. Less than
   ``MIN_AREA`` of the picture is "no garment found" (the whole image is used). The **box**
   is the mask's bounding box, grown by ``BOX_MARGIN`` of its size on each side, in the
   original picture's pixels.

The mask (:meth:`Framing.alpha`) lets a policy replace the background by white, and the
colour descriptor (similarity/embedding/colour.py) read the garment's own pixels only.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

__all__ = [
    "BOX_MARGIN",
    "MAX_NOISE",
    "MIN_AREA",
    "MIN_PLAIN_BORDER",
    "MIN_THRESHOLD",
    "REDUCED_WORK_SIDE",
    "REDUCING_GAP",
    "WORK_SIDE",
    "Framing",
    "find_garment",
    "framed_crop",
    "framed_crop_layers",
    "matte_to_white",
]

WORK_SIDE = 128
# The smaller working copy (frame-margin@3, lab-hist@2): 96 px made through Image.reduce, half
# the pixels of 128 and half the time of the finding (profiled), its box found to a fraction of
# a pixel as steady (tests/similarity/embedding/test_downscaled_framing.py).
REDUCED_WORK_SIDE = 96
REDUCING_GAP = 1.0
BORDER = 0.04
MIN_THRESHOLD = 24.0  # grey levels
MAX_NOISE = 8.0  # robust sigma of the border, grey levels
MIN_PLAIN_BORDER = 0.6
MIN_AREA = 0.002
BOX_MARGIN = 0.02
_WHITE = (255, 255, 255)


@dataclass(frozen=True, eq=False)
class Framing:
    """What :func:`find_garment` found. ``box`` is None when the background is busy or no
    garment stands out (use the whole image); ``mask`` is the garment mask at the working
    size (float32 in [0, 1]; all ones when ``box`` is None); ``work`` the working RGB copy."""

    size: tuple[int, int]  # of the original picture
    box: tuple[int, int, int, int] | None
    mask: np.ndarray
    work: np.ndarray  # (h, w, 3) uint8
    background: tuple[float, float, float]
    noise: float
    plain: bool
    # The box to a fraction of a pixel (see _exact_box), None with ``box``.
    exact_box: tuple[float, float, float, float] | None = None

    @property
    def found(self) -> bool:
        return self.box is not None

    def alpha(self) -> Image.Image:
        """The mask at the original picture's size, as an ``L`` image (255 = garment)."""
        small = Image.fromarray(np.rint(self.mask * 255).astype(np.uint8), mode="L")
        return small.resize(self.size, Image.Resampling.BILINEAR)


def _rgb(img: Image.Image) -> Image.Image:
    """``img`` as RGB; itself when it is RGB already (``convert`` would copy it)."""
    return img if img.mode == "RGB" else img.convert("RGB")


def _work_copy(img: Image.Image, work_side: int, reducing_gap: float | None) -> Image.Image:
    w, h = img.size
    scale = work_side / max(w, h)
    if scale >= 1.0:
        return img.copy()
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return img.resize(size, Image.Resampling.BOX, reducing_gap=reducing_gap)


@dataclass(frozen=True)
class _Ring:
    """The border ring of an (h, w) picture: its pixels' flat (row-major) indices, their rows of
    :func:`_grid` (n, 3) for the fit, and their x and y as contiguous rows (read-only, shared)."""

    index: np.ndarray
    coords: np.ndarray
    x: np.ndarray
    y: np.ndarray


@functools.lru_cache(maxsize=8)
def _ring(h: int, w: int) -> _Ring:
    b = max(2, round(BORDER * min(h, w)))
    ring = np.zeros((h, w), dtype=bool)
    ring[:b], ring[-b:], ring[:, :b], ring[:, -b:] = True, True, True, True
    coords = _grid(h, w)[ring]
    parts = (np.flatnonzero(ring), coords, np.ascontiguousarray(coords[:, 0]),
             np.ascontiguousarray(coords[:, 1]))
    for part in parts:
        part.flags.writeable = False
    return _Ring(*parts)


@functools.lru_cache(maxsize=8)
def _grid(h: int, w: int) -> np.ndarray:
    """(h, w, 3): x and y scaled to [0, 1], and 1, per pixel (read-only, shared)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    grid = np.stack([xx / max(w - 1, 1), yy / max(h - 1, 1), np.ones_like(xx)], axis=-1)
    grid.flags.writeable = False
    return grid


def _plane(coef: np.ndarray, h: int, w: int) -> np.ndarray:
    """The plane per channel with coefficients ``coef`` (3: x, y, 1 by 3 channels) on the
    picture, channels first (3, h, w): x * a + (y * b + c), a row plus a column per channel."""
    grid = _grid(h, w)
    across = coef[0][:, None] * grid[0, :, 0]  # (3, w)
    down = coef[1][:, None] * grid[:, 0, 1] + coef[2][:, None]  # (3, h)
    return across[:, None, :] + down[:, :, None]


def _plane_at(ring: _Ring, coef: np.ndarray) -> np.ndarray:
    """The plane on the ring, channels first (3, n), with the same arithmetic as on the picture."""
    return coef[0][:, None] * ring.x + (coef[1][:, None] * ring.y + coef[2][:, None])


def _largest_difference(smooth: np.ndarray, model: np.ndarray) -> np.ndarray:
    """Per pixel, the largest of the three channels' absolute differences; channels first
    (3, ...), so that each channel is one contiguous run (a max over a last axis of 3 is NumPy's
    slow case, and so is every operation broadcast along it: profiled)."""
    d = np.subtract(smooth, model)
    np.abs(d, out=d)
    return np.maximum(np.maximum(d[0], d[1]), d[2])


def _open_close_erode(mask: np.ndarray) -> np.ndarray:
    """Opened (3x3), closed (5x5), eroded (3x3), edge pixels repeated: Pillow's rank filters'
    result (checked on every Fashion-MNIST picture). A window clamped to the picture, then
    another, make one clamped window as wide as both: the opening's 3x3 dilation and the
    closing's 5x5 one make one 7x7 dilation, the closing's 5x5 erosion and the last 3x3 one
    one 7x7 erosion; each square is a pass along the rows and one along the columns, as NumPy
    slices (profiled: a sixth of SciPy's minimum and maximum filters' time on 96 px)."""
    out = _square(mask, 1, np.logical_and)
    out = _square(out, 3, np.logical_or)
    return _square(out, 3, np.logical_and)


def _square(mask: np.ndarray, radius: int, op: np.ufunc) -> np.ndarray:
    """``op`` (logical and: erosion; or: dilation) over each pixel's (2 radius + 1) square,
    the window clamped to the picture; ``radius`` 1 or 3."""
    return _along(_along(mask, radius, op).T, radius, op).T


def _along(mask: np.ndarray, radius: int, op: np.ufunc) -> np.ndarray:
    """``op`` over each pixel's window along the first axis: radius 1 with the pixels above and
    below, radius 3 as that of radius 1's result with the pixels two away."""
    out = mask.copy()
    op(out[1:], mask[:-1], out=out[1:])
    op(out[:-1], mask[1:], out=out[:-1])
    if radius == 1:
        return out
    wide = out.copy()
    op(wide[2:], out[:-2], out=wide[2:])
    op(wide[:-2], out[2:], out=wide[:-2])
    return wide


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Everything not reachable from outside through background pixels (4-connected) is
    garment. Only the mask's bounding box can hold a hole (every pixel beside it is background
    joined to the border): the box, ringed by one pixel of background that stands for the
    outside, is labelled once, and what is not in the ring's component is garment. SciPy's
    binary_fill_holes (iterated dilations) took 13 % of the framing's time, PIL's flood fill,
    in Python, 4/5 of it."""
    mask = np.asarray(mask, dtype=bool)
    filled = np.zeros_like(mask)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return filled
    cols = np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    labels, _ = ndimage.label(np.pad(~mask[top:bottom, left:right], 1, constant_values=True))
    filled[top:bottom, left:right] = labels[1:-1, 1:-1] != labels[0, 0]
    return filled


def _box_blur(work: np.ndarray) -> np.ndarray:
    """Pillow's ``BoxBlur(1)`` of ``work`` (h, w, 3), channels first (3, h, w) as float64: each
    pixel the mean of itself and its two neighbours along the row, rounded, then the same along
    the column, edge pixels repeated; Pillow rounds ``sum * floor(2**24 / 3) / 2**24``, which is
    ``(sum + 1) // 3`` for sums of three bytes. Pixel-identical to Pillow's at a third of its
    time on 96 px (profiled)."""
    rows = work.transpose(2, 0, 1).astype(np.uint16, order="C")
    return _third_of_sum(_third_of_sum(rows, 2), 1).astype(np.float64)


def _third_of_sum(a: np.ndarray, axis: int) -> np.ndarray:
    """``(sum + 1) // 3`` of each element and its two neighbours along ``axis`` (edges repeated)."""
    def at(sl: slice | int) -> tuple[slice | int, ...]:
        return (slice(None),) * axis + (sl,)

    out = a.copy()
    out[at(slice(1, None))] += a[at(slice(None, -1))]
    out[at(slice(None, -1))] += a[at(slice(1, None))]
    out[at(0)] += a[at(0)]
    out[at(-1)] += a[at(-1)]
    out += 1
    out //= 3
    return out


def _fit_background(smooth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(plane coefficients, the plane on the ring, the ring's differences from it, their median):
    the plane fitted to the ring, then refitted on the ring pixels within the first fit's
    threshold (when they all are, that refit is the first fit). ``smooth`` is channels first
    (3, h, w). lstsq, not the faster normal equations: a background at a whole grey level puts
    pixels exactly on the threshold, and the last bit of the plane decides them (frame-margin@1's
    pixels must not change)."""
    ring = _ring(*smooth.shape[1:])
    values = np.take(smooth.reshape(3, -1), ring.index, axis=1)  # (3, n); take: a third of [:, index]
    coef, *_ = np.linalg.lstsq(ring.coords, values.T, rcond=None)
    # The first fit is only judged on the ring: no need to evaluate it on the whole picture.
    ring_model = _plane_at(ring, coef)
    ring_diff = _largest_difference(values, ring_model)
    median = _median(ring_diff)
    inliers = ring_diff <= max(MIN_THRESHOLD, 4.0 * 1.4826 * median)
    if inliers.all():
        return coef, ring_model, ring_diff, median
    if inliers.sum() >= 3:
        coef, *_ = np.linalg.lstsq(ring.coords.compress(inliers, axis=0),
                                   values.compress(inliers, axis=1).T, rcond=None)
    ring_model = _plane_at(ring, coef)
    ring_diff = _largest_difference(values, ring_model)
    return coef, ring_model, ring_diff, _median(ring_diff)


def _median(values: np.ndarray) -> float:
    """``np.median`` of a 1-d array, the same number (the mean of the two middle values when
    they are two) at a third of its time: one partition, without its generic checks."""
    k = values.size // 2
    if values.size % 2:
        return float(np.partition(values, k)[k])
    middle = np.partition(values, (k - 1, k))
    return float((middle[k - 1] + middle[k]) / 2)


def _row_medians(values: np.ndarray) -> np.ndarray:
    """``np.median(values, axis=1)`` of a 2-d array, as :func:`_median` does it."""
    k = values.shape[1] // 2
    if values.shape[1] % 2:
        return np.partition(values, k, axis=1)[:, k]
    middle = np.partition(values, (k - 1, k), axis=1)
    return (middle[:, k - 1] + middle[:, k]) / 2


def find_garment(img: Image.Image, *, work_side: int = WORK_SIDE,
                 reducing_gap: float | None = None) -> Framing:
    """Locate the garment in an RGB picture (see the module's docstring) on a working copy at
    most ``work_side`` pixels on a side. ``reducing_gap``: Pillow's, for making that copy (1.0:
    first averaged by the largest whole factor, ``Image.reduce``, then resized; half the time)."""
    img = _rgb(img)
    work_img = _work_copy(img, work_side, reducing_gap)
    work = np.asarray(work_img, dtype=np.uint8)
    h, w = work.shape[:2]
    smooth = _box_blur(work)
    coef, ring_model, ring_diff, ring_median = _fit_background(smooth)
    noise = 1.4826 * ring_median
    threshold = max(MIN_THRESHOLD, 4.0 * noise)
    background = tuple(float(c) for c in _row_medians(ring_model))
    bg = (background[0], background[1], background[2])
    plain = noise <= MAX_NOISE and float((ring_diff <= threshold).mean()) >= MIN_PLAIN_BORDER

    def whole() -> Framing:
        return Framing(img.size, None, np.ones((h, w), dtype=np.float32), work, bg, noise, plain)

    if not plain:
        return whole()
    diff = _largest_difference(smooth, _plane(coef, h, w))
    fg = _fill_holes(_open_close_erode(diff > threshold))
    if fg.mean() < MIN_AREA:
        return whole()
    # Soft edge and pale parts: pixels between twice the noise and the threshold count partly.
    low = max(6.0, 2.0 * noise)
    soft = np.subtract(diff, low)
    soft /= max(threshold - low, 1e-6)
    np.clip(soft, 0.0, 1.0, out=soft)
    np.maximum(soft, fg, out=soft)
    scale = (img.size[0] / w, img.size[1] / h)
    return Framing(img.size, _pixel_box(fg, scale, img.size), soft.astype(np.float32),
                   work, bg, noise, plain, _exact_box(diff, fg, threshold, scale, img.size))


def _pixel_box(fg: np.ndarray, scale: tuple[float, float],
               size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The mask's bounding box grown by ``BOX_MARGIN``, in whole pixels of the picture."""
    rows, cols = np.flatnonzero(fg.any(axis=1)), np.flatnonzero(fg.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    (sx, sy), mx, my = scale, BOX_MARGIN * (right - left), BOX_MARGIN * (bottom - top)
    return (max(0, int(np.floor((left - mx) * sx))), max(0, int(np.floor((top - my) * sy))),
            min(size[0], int(np.ceil((right + mx) * sx))), min(size[1], int(np.ceil((bottom + my) * sy))))


def _exact_box(diff: np.ndarray, fg: np.ndarray, threshold: float, scale: tuple[float, float],
               size: tuple[int, int]) -> tuple[float, float, float, float]:
    """The garment's box to a fraction of a working pixel, grown by ``BOX_MARGIN``, in the
    picture's (fractional) pixels: each edge where the largest difference across the garment
    (near the mask) crosses the threshold, interpolated between two working pixels. It moves
    smoothly with the picture, where the mask's edge jumps a whole working pixel (up to 6 px of
    an 800 px photo) when one pixel crosses the threshold: the box of a downscaled copy is then
    the full-resolution box's within a pixel of the network input."""
    near = np.where(_square(fg, 3, np.logical_or), diff, 0.0)
    left, right = _crossings(near.max(axis=0), threshold, np.asarray(fg.any(axis=0)))
    top, bottom = _crossings(near.max(axis=1), threshold, np.asarray(fg.any(axis=1)))
    (sx, sy), mx, my = scale, BOX_MARGIN * (right - left), BOX_MARGIN * (bottom - top)
    return (max(0.0, (left - mx) * sx), max(0.0, (top - my) * sy),
            min(float(size[0]), (right + mx) * sx), min(float(size[1]), (bottom + my) * sy))


def _crossings(profile: np.ndarray, threshold: float, inside: np.ndarray) -> tuple[float, float]:
    """Where ``profile`` first rises over and last falls under ``threshold``, in pixel-edge
    coordinates (pixel i spans [i, i + 1)), linearly between pixel centres; the mask's own
    extent when the profile never reaches the threshold there."""
    over = np.flatnonzero(profile > threshold)
    if over.size == 0:
        idx = np.flatnonzero(inside)
        return float(idx[0]), float(idx[-1] + 1)
    first, last = int(over[0]), int(over[-1])
    start = 0.0 if first == 0 else first - 0.5 + _fraction(profile[first - 1], profile[first], threshold)
    end = float(profile.size) if last == profile.size - 1 else (
        last + 0.5 + 1.0 - _fraction(profile[last + 1], profile[last], threshold))
    return start, end


def _fraction(below: float, above: float, threshold: float) -> float:
    """How far from the pixel under the threshold to the one over it the crossing lies."""
    return float((threshold - below) / (above - below))


def matte_to_white(img: Image.Image, framing: Framing) -> Image.Image:
    """The picture with everything outside the garment mask replaced by white (soft edge)."""
    if not framing.found:
        return img
    alpha = framing.alpha()
    return Image.composite(img.convert("RGB"), Image.new("RGB", img.size, _WHITE), alpha)


def framed_crop(img: Image.Image, framing: Framing, side: int, *, exact: bool = False) -> Image.Image:
    """The garment's box scaled to fit a ``side`` square, background whitened: the picture's box
    and the mask's matching region of the working copy each resampled once, straight to the
    output size, instead of the whole picture whitened at full size and then cropped.
    ``exact``: the box to a fraction of a pixel (``framing.exact_box``), not in whole pixels."""
    rgb, alpha = framed_crop_layers(img, framing, side, exact=exact)
    return Image.composite(rgb, Image.new("RGB", rgb.size, _WHITE), alpha)


def framed_crop_layers(img: Image.Image, framing: Framing, side: int, *,
                       exact: bool = False) -> tuple[Image.Image, Image.Image]:
    """:func:`framed_crop`'s picture before whitening: the box's RGB and the mask (``L``), both
    at the crop's size; pasted with that mask onto white, they make the crop."""
    box = framing.exact_box if exact else framing.box
    if box is None:
        raise ValueError("framed_crop needs a framing that found a garment (framing.box is None)")
    left, top, right, bottom = box
    scale = side / max(right - left, bottom - top)
    size = (max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale)))
    mh, mw = framing.mask.shape
    sx, sy = mw / framing.size[0], mh / framing.size[1]
    small = Image.fromarray(np.rint(framing.mask * 255).astype(np.uint8), mode="L")
    alpha = small.resize(size, Image.Resampling.BILINEAR, box=(left * sx, top * sy, right * sx, bottom * sy))
    return _rgb(img).resize(size, Image.Resampling.BILINEAR, box=box), alpha
