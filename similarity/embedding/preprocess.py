"""Named, versioned preprocessing policies: an RGB image to a normalised (224, 224, 3) array.

A policy's ``key`` (``name@version``) is stored with every embedding and matrix, so changing
what a policy does to pixels means adding a new version, never editing an existing one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from similarity.embedding.framing import (
    REDUCED_WORK_SIDE,
    REDUCING_GAP,
    WORK_SIDE,
    Framing,
    find_garment,
    framed_crop_layers,
    matte_to_white,
)
from similarity.embedding.images import DEFAULT_LIMITS, ImageLimits, load_image, to_rgb
from similarity.errors import ImageRejected, SimilarityError

__all__ = [
    "DEFAULT_POLICY_NAME",
    "FRAME_MARGIN_V1",
    "FRAME_MARGIN_V2",
    "FRAME_MARGIN_V3",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INPUT_SIZE",
    "PAD_MARGIN_V1",
    "PAD_SQUARE_V1",
    "POLICIES",
    "TORCHVISION_V1",
    "PreprocessPolicy",
    "UnknownPolicyError",
    "get_policy",
    "prepare",
    "prepare_batch",
]

INPUT_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# (x / 255 - mean) / std as one multiply-add.
_SCALE = (1.0 / (255.0 * np.asarray(IMAGENET_STD))).astype(np.float32)
_OFFSET = (-np.asarray(IMAGENET_MEAN) / np.asarray(IMAGENET_STD)).astype(np.float32)
_WHITE = (255, 255, 255)

Source = bytes | str | os.PathLike[str]
Geometry = Callable[[Image.Image], Image.Image]
FramedGeometry = Callable[[Image.Image, Framing], Image.Image]


class UnknownPolicyError(SimilarityError, KeyError, ValueError):
    """No preprocessing policy has the requested name or version."""

    def __str__(self) -> str:
        return str(self.args[0])  # KeyError would otherwise show the message's repr


@dataclass(frozen=True)
class PreprocessPolicy:
    """How an RGB image becomes the network input.

    ``geometry`` maps an RGB image of any size to an RGB ``INPUT_SIZE`` square; ``draft_size``
    is what to ask a JPEG decoder for so that the decoded image is still large enough.
    """

    name: str
    version: int
    geometry: Geometry = field(repr=False, compare=False)
    draft_size: tuple[int, int]
    description: str = field(default="", compare=False)
    # The same geometry given the picture's framing (similarity/embedding/framing.py) already found, so a
    # caller that needs the framing anyway (the colour descriptor) does not find it twice. None: the
    # geometry does not frame.
    framed_geometry: FramedGeometry | None = field(default=None, repr=False, compare=False)
    # The working copy the garment is found on (similarity/embedding/framing.py): its side and
    # Pillow's reducing gap for making it.
    work_side: int = WORK_SIDE
    reducing_gap: float | None = None

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"

    def find_garment(self, img: Image.Image) -> Framing:
        """The framing this policy's geometry uses: give it back to :meth:`to_array`."""
        return find_garment(img, work_side=self.work_side, reducing_gap=self.reducing_gap)

    def to_array(self, img: Image.Image, framing: Framing | None = None) -> np.ndarray:
        """Return float32 ``(INPUT_SIZE, INPUT_SIZE, 3)`` RGB, ImageNet-normalised. ``framing``:
        :meth:`find_garment` of this very picture, if the caller has it (same pixels either way)."""
        rgb = to_rgb(img)
        if framing is not None and self.framed_geometry is not None:
            framed = self.framed_geometry(rgb, framing)
        else:
            framed = self.geometry(rgb)
        if framed.mode != "RGB" or framed.size != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(
                f"policy {self.key} produced a {framed.mode} image of {framed.size}, "
                f"expected RGB {INPUT_SIZE}x{INPUT_SIZE}"
            )
        arr = np.array(framed, dtype=np.float32)
        arr *= _SCALE
        arr += _OFFSET
        return arr


def _resize_shorter_then_centre_crop(img: Image.Image, resize: int = 256) -> Image.Image:
    """torchvision's eval transform for a PIL image: ``Resize(256)`` then ``CenterCrop(224)``."""
    w, h = img.size
    # Same arithmetic as torchvision: the longer side is truncated, not rounded.
    new_w, new_h = (resize, int(resize * h / w)) if w <= h else (int(resize * w / h), resize)
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    top = round((new_h - INPUT_SIZE) / 2.0)  # int(round(x)) in torchvision: banker's rounding
    left = round((new_w - INPUT_SIZE) / 2.0)
    return img.crop((left, top, left + INPUT_SIZE, top + INPUT_SIZE))


def _pad_square(img: Image.Image) -> Image.Image:
    """Fit the whole image, centred, in a white square.

    Scales first and pads after (rather than padding at full resolution): the same picture,
    without allocating a huge white canvas for very elongated images.
    """
    w, h = img.size
    scale = INPUT_SIZE / max(w, h)
    new_w = max(1, min(INPUT_SIZE, round(w * scale)))
    new_h = max(1, min(INPUT_SIZE, round(h * scale)))
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (INPUT_SIZE, INPUT_SIZE), _WHITE)
    canvas.paste(img, ((INPUT_SIZE - new_w) // 2, (INPUT_SIZE - new_h) // 2))
    return canvas


MARGIN_SCALE = 0.875


def _pad_square_with_margin(img: Image.Image, scale: float = MARGIN_SCALE) -> Image.Image:
    """pad-square's picture shrunk to ``scale`` of the side, centred in a white square
    (bench/experiments/clean_quality.py measured 0.875 best: the garment at 87.5 %, as in Fashion-MNIST)."""
    side = round(INPUT_SIZE * scale)
    small = _pad_square(img).resize((side, side), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (INPUT_SIZE, INPUT_SIZE), _WHITE)
    canvas.paste(small, ((INPUT_SIZE - side) // 2, (INPUT_SIZE - side) // 2))
    return canvas


def _frame_then_pad_margin(img: Image.Image) -> Image.Image:
    """Find the garment (similarity/embedding/framing.py); on a plain background, replace the background
    by white and crop to the garment's box; then pad-margin@1's picture. A busy background, or
    no garment found: pad-margin@1 of the whole image."""
    return _framed_pad_margin(img, find_garment(img))


def _framed_pad_margin(img: Image.Image, framing: Framing) -> Image.Image:
    if framing.box is None:
        return _pad_square_with_margin(img)
    return _pad_square_with_margin(matte_to_white(img, framing).crop(framing.box))


def _frame_then_margin_at_input_size(img: Image.Image) -> Image.Image:
    """frame-margin@1's picture, made at the network's size: see :func:`_framed_margin_at_input_size`."""
    return _framed_margin_at_input_size(img, find_garment(img))


def _framed_margin_at_input_size(img: Image.Image, framing: Framing, *, exact: bool = False) -> Image.Image:
    """The garment's box resampled once, straight from the decoded picture to its final size
    (at most 196 px), and its mask from the working copy to the same size; the background
    whitened there. frame-margin@1 whitened the whole decoded picture and resized twice (to
    224, then to 196): the same crop within a pixel (tests/similarity/embedding/test_framed_crop.py)
    at a fraction of the pixels. ``exact``: the box to a fraction of a pixel (frame-margin@3)."""
    if framing.box is None:
        return _pad_square_with_margin(img)
    side = round(INPUT_SIZE * MARGIN_SCALE)
    # Pasted through its mask straight onto the white input: framed_crop's picture (whitened
    # through the mask, then pasted) without its own white canvas and copy.
    rgb, alpha = framed_crop_layers(img, framing, side, exact=exact)
    canvas = Image.new("RGB", (INPUT_SIZE, INPUT_SIZE), _WHITE)
    canvas.paste(rgb, ((INPUT_SIZE - rgb.width) // 2, (INPUT_SIZE - rgb.height) // 2), alpha)
    return canvas


def _frame_then_exact_margin(img: Image.Image) -> Image.Image:
    """frame-margin@3's picture: see :func:`_framed_exact_margin`."""
    return _framed_exact_margin(img, FRAME_MARGIN_V3.find_garment(img))


def _framed_exact_margin(img: Image.Image, framing: Framing) -> Image.Image:
    """frame-margin@2's crop of the box found to a fraction of a working pixel
    (similarity/embedding/framing.py, ``_exact_box``): a JPEG decoded at a reduced scale gives the
    full-resolution crop within a pixel at 224 px (tests/similarity/embedding/test_downscaled_framing.py)."""
    return _framed_margin_at_input_size(img, framing, exact=True)


TORCHVISION_V1 = PreprocessPolicy(
    name="torchvision",
    version=1,
    geometry=_resize_shorter_then_centre_crop,
    draft_size=(256, 256),  # JPEG draft keeps both sides >= 256, so the shorter one too
    description="shorter side to 256 (bilinear), centre crop 224: torchvision's eval transform",
)
PAD_SQUARE_V1 = PreprocessPolicy(
    name="pad-square",
    version=1,
    geometry=_pad_square,
    draft_size=(INPUT_SIZE, INPUT_SIZE),
    description="pad to a white square (centred), resize to 224 (bilinear); nothing is cropped",
)
PAD_MARGIN_V1 = PreprocessPolicy(
    name="pad-margin",
    version=1,
    geometry=_pad_square_with_margin,
    draft_size=(INPUT_SIZE, INPUT_SIZE),
    description="pad-square@1, then shrunk to 196 px (87.5 %) centred in a white 224 square",
)
FRAME_MARGIN_V1 = PreprocessPolicy(
    name="frame-margin",
    version=1,
    geometry=_frame_then_pad_margin,
    framed_geometry=_framed_pad_margin,
    draft_size=(INPUT_SIZE, INPUT_SIZE),
    description="find the garment on a plain background, background to white, crop to it, "
    "then pad-margin@1; a busy background: pad-margin@1 of the whole image",
)
FRAME_MARGIN_V2 = PreprocessPolicy(
    name="frame-margin",
    version=2,
    geometry=_frame_then_margin_at_input_size,
    framed_geometry=_framed_margin_at_input_size,
    draft_size=(INPUT_SIZE, INPUT_SIZE),
    description="frame-margin@1's crop, made at the network's size: the garment's box resampled "
    "once to at most 196 px and whitened there (the same crop within a pixel, at a fraction of the cost)",
)
FRAME_MARGIN_V3 = PreprocessPolicy(
    name="frame-margin",
    version=3,
    geometry=_frame_then_exact_margin,
    framed_geometry=_framed_exact_margin,
    work_side=REDUCED_WORK_SIDE,  # framing.py's smaller working copy (96 px, Image.reduce)
    reducing_gap=REDUCING_GAP,
    draft_size=(INPUT_SIZE, INPUT_SIZE),
    description="frame-margin@2 with the garment found on a 96 px working copy and its box to a "
    "fraction of a pixel: the same crop, within a pixel at 224 px, from a JPEG decoded at a reduced "
    "scale as from full resolution",
)

# Every version ever defined stays here, so keys stored with old matrices still resolve.
_BY_KEY: dict[str, PreprocessPolicy] = {
    p.key: p for p in (TORCHVISION_V1, PAD_SQUARE_V1, PAD_MARGIN_V1, FRAME_MARGIN_V1, FRAME_MARGIN_V2,
                       FRAME_MARGIN_V3)
}
# Name -> current version (the int8 calibration set runs every current one). frame-margin is
# at @3: its crop no longer depends on the scale the JPEG was decoded at, and it costs a fraction
# of @1's (docs/benchmarks.md); vectors stored under @1 are stale and re-embedded.
POLICIES: dict[str, PreprocessPolicy] = {
    TORCHVISION_V1.name: TORCHVISION_V1,
    PAD_SQUARE_V1.name: PAD_SQUARE_V1,
    PAD_MARGIN_V1.name: PAD_MARGIN_V1,
    FRAME_MARGIN_V3.name: FRAME_MARGIN_V3,
}
DEFAULT_POLICY_NAME = "torchvision"


def get_policy(name: str) -> PreprocessPolicy:
    """Return the current policy called ``name``, or an exact version given as ``name@version``."""
    base, sep, version = name.partition("@")
    if base not in POLICIES:
        raise UnknownPolicyError(
            f"unknown preprocessing policy {name!r}; known policies: {', '.join(sorted(POLICIES))}"
        )
    if not sep:
        return POLICIES[base]
    policy = _BY_KEY.get(name)
    if policy is None:
        known = sorted(p.version for p in _BY_KEY.values() if p.name == base)
        raise UnknownPolicyError(
            f"unknown version {version!r} of preprocessing policy {base!r}; known versions: "
            f"{', '.join(map(str, known))}"
        )
    return policy


def prepare(
    source: Source, *, policy: PreprocessPolicy, limits: ImageLimits = DEFAULT_LIMITS
) -> np.ndarray:
    """Decode ``source`` under ``limits`` and return the policy's (224, 224, 3) float32 input."""
    img = load_image(source, limits=limits, draft_size=policy.draft_size)
    return policy.to_array(img)


def prepare_batch(
    sources: Iterable[Source], *, policy: PreprocessPolicy, limits: ImageLimits = DEFAULT_LIMITS
) -> np.ndarray:
    """Prepare each source into one (N, 224, 224, 3) float32 array.

    The first rejected image stops the batch; its ``ImageRejected`` carries a note with its index.
    """
    if isinstance(sources, bytes | str | os.PathLike):
        raise TypeError("prepare_batch takes an iterable of sources; use prepare() for one")
    items = list(sources)
    out = np.empty((len(items), INPUT_SIZE, INPUT_SIZE, 3), dtype=np.float32)
    for i, source in enumerate(items):
        try:
            out[i] = prepare(source, policy=policy, limits=limits)
        except ImageRejected as exc:
            exc.add_note(f"image #{i} of the batch of {len(items)}")
            raise
    return out
