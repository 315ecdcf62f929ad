"""Shop-style photos, garment framing, the colour descriptor, the robust projection and the
shop-photo metrics, on hand-made pictures with known answers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from similarity.embedding.colour import COLOUR_DIM, blend_colour, colour_descriptor, rgb_to_lab
from similarity.embedding.framing import find_garment, matte_to_white
from similarity.embedding.preprocess import FRAME_MARGIN_V1, INPUT_SIZE, get_policy
from similarity.embedding.projection import (
    BlendProjection,
    fit_blend,
    fit_robust_blend,
    load_blend,
    save_blend,
)
from similarity.evaluation.metrics import label_precision, refind_recall
from similarity.evaluation.shots import (
    DYES,
    Shot,
    catalog_shot,
    dye,
    dyed_colours,
    render,
    shop_extra_shot,
    shopper_shot,
)

GARMENT_BOX = (70, 50, 150, 190)  # left, top, right, bottom (exclusive) on a 240x260 picture


def garment_on(background: tuple[int, int, int], colour: tuple[int, int, int] = (30, 40, 100),
               size: tuple[int, int] = (240, 260),
               box: tuple[int, int, int, int] = GARMENT_BOX) -> Image.Image:
    """A garment-like shape (a body and two sleeves, with a lighter stripe) filling ``box``."""
    img = Image.new("RGB", size, background)
    d = ImageDraw.Draw(img)
    left, top, right, bottom = box
    w = right - left
    d.rectangle((left + w // 4, top, right - w // 4 - 1, bottom - 1), fill=colour)  # body
    d.rectangle((left, top, left + w // 4, top + (bottom - top) // 2), fill=colour)  # sleeves
    d.rectangle((right - w // 4 - 1, top, right - 1, top + (bottom - top) // 2), fill=colour)
    stripe = tuple(min(255, c + 40) for c in colour)
    d.rectangle((left + w // 4, top + 20, right - w // 4 - 1, top + 30), fill=stripe)
    return img


def noisy(img: Image.Image, sigma: float, seed: int = 0) -> Image.Image:
    noise = np.random.default_rng(seed).normal(0, sigma, (img.height, img.width, 3))
    arr = np.asarray(img, dtype=np.float64) + noise
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def busy_background(size: tuple[int, int] = (240, 260), seed: int = 0) -> Image.Image:
    """A textured scene: random coloured blocks plus strong noise."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (size[1] // 8 + 1, size[0] // 8 + 1, 3)).astype(np.uint8)
    img = Image.fromarray(blocks).resize(size, Image.Resampling.NEAREST)
    return noisy(img, 25, seed)


# ------------------------------------------------------------------------------------ framing


def assert_box_near(box: tuple[int, int, int, int] | None) -> None:
    """The garment's box grown by the 2 % margin, within 1.5 working pixels (240 px -> 128)."""
    assert box is not None
    left, top, right, bottom = GARMENT_BOX
    mx, my = 0.02 * (right - left), 0.02 * (bottom - top)
    want = (left - mx, top - my, right + mx, bottom + my)
    assert all(abs(g - w) <= 3 for g, w in zip(box, want, strict=True)), (box, want)


@pytest.mark.parametrize("background", [(255, 255, 255), (242, 238, 230), (160, 160, 165)],
                         ids=["white", "off-white", "grey"])
def test_framing_finds_the_garment_box_on_plain_backgrounds(background: tuple[int, int, int]) -> None:
    img = noisy(garment_on(background), 2.0)
    framing = find_garment(img)
    assert framing.found and framing.plain
    assert_box_near(framing.box)
    assert np.allclose(framing.background, background, atol=6)


def test_framing_handles_a_background_gradient() -> None:
    img = np.asarray(garment_on((200, 200, 200)), dtype=np.float64)
    ramp = np.linspace(1.0, 0.85, img.shape[1])[None, :, None]
    body = (img == (30, 40, 100)).all(-1) | (img == (70, 80, 140)).all(-1)
    img = np.where(body[..., None], img, img * ramp)
    framing = find_garment(Image.fromarray(img.astype(np.uint8)))
    assert framing.found
    assert_box_near(framing.box)


def test_framing_falls_back_on_a_busy_background() -> None:
    scene = busy_background()
    scene.paste(garment_on((255, 255, 255)).crop(GARMENT_BOX), GARMENT_BOX[:2])
    framing = find_garment(scene)
    assert not framing.found and not framing.plain
    # The policy then pads the whole picture, exactly as pad-margin@1 does.
    assert np.array_equal(FRAME_MARGIN_V1.to_array(scene), get_policy("pad-margin@1").to_array(scene))


def test_framing_finds_nothing_on_an_empty_background() -> None:
    assert not find_garment(Image.new("RGB", (200, 150), (180, 180, 180))).found


def test_frame_margin_makes_small_off_centre_shots_look_like_the_catalog_shot() -> None:
    catalog = Image.new("RGB", (180, 180), "white")
    catalog.paste(garment_on((255, 255, 255)).crop(GARMENT_BOX), (50, 20))
    shopper = noisy(garment_on((170, 168, 160), size=(400, 300), box=(230, 120, 310, 260)), 2.0)
    a = FRAME_MARGIN_V1.to_array(catalog)
    b = FRAME_MARGIN_V1.to_array(shopper)
    pad = get_policy("pad-margin@1")
    assert a.shape == (INPUT_SIZE, INPUT_SIZE, 3)
    framed_gap = np.abs(a - b).mean()
    padded_gap = np.abs(pad.to_array(catalog) - pad.to_array(shopper)).mean()
    assert framed_gap < 0.25 * padded_gap


def test_matte_turns_a_grey_background_white_and_keeps_the_garment() -> None:
    img = garment_on((150, 150, 150))
    out = np.asarray(matte_to_white(img, find_garment(img)))
    assert (out[5, 5] >= 250).all()
    centre = ((GARMENT_BOX[0] + GARMENT_BOX[2]) // 2, (GARMENT_BOX[1] + GARMENT_BOX[3]) * 3 // 4)
    assert np.abs(out[centre[1], centre[0]].astype(int) - (30, 40, 100)).max() <= 3


# ------------------------------------------------------------------------------------- colour


def test_colour_descriptor_tells_red_from_navy_and_ignores_the_background() -> None:
    red_white = colour_descriptor(garment_on((255, 255, 255), (200, 30, 40)))
    red_grey = colour_descriptor(noisy(garment_on((150, 150, 155), (200, 30, 40)), 2.0))
    navy_white = colour_descriptor(garment_on((255, 255, 255), (28, 40, 100)))
    navy_sky = colour_descriptor(garment_on((225, 235, 250), (28, 40, 100)))  # a bluish background
    for d in (red_white, red_grey, navy_white, navy_sky):
        assert d.shape == (COLOUR_DIM,) and d.dtype == np.float32
        assert np.linalg.norm(d) == pytest.approx(1.0, abs=1e-5)
    same_colour = max(np.linalg.norm(red_white - red_grey), np.linalg.norm(navy_white - navy_sky))
    other_colour = min(np.linalg.norm(red_white - navy_white), np.linalg.norm(red_grey - navy_sky))
    assert same_colour < 0.25
    assert other_colour > 1.0


def test_colour_descriptor_of_a_garment_on_a_red_background_is_not_red() -> None:
    navy_on_red = colour_descriptor(garment_on((200, 30, 40), (28, 40, 100)))
    navy = colour_descriptor(garment_on((255, 255, 255), (28, 40, 100)))
    red = colour_descriptor(garment_on((255, 255, 255), (200, 30, 40)))
    assert np.linalg.norm(navy_on_red - navy) < np.linalg.norm(navy_on_red - red)


def test_rgb_to_lab_known_values() -> None:
    lab = rgb_to_lab(np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0]]))
    assert lab[0] == pytest.approx([100.0, 0.0, 0.0], abs=0.05)
    assert lab[1] == pytest.approx([0.0, 0.0, 0.0], abs=0.05)
    assert lab[2] == pytest.approx([53.24, 80.09, 67.20], abs=0.1)


def test_blend_colour_weights_squared_distances() -> None:
    shape = np.array([[1.0, 0.0], [0.0, 1.0]])
    colour = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    z = blend_colour(shape, colour, 2.0)
    assert np.sum((z[0] - z[1]) ** 2) == pytest.approx(2.0 / 5.0)  # (2 + 4 * 0) / (1 + 4)
    assert np.linalg.norm(z, axis=1) == pytest.approx([1.0, 1.0])
    assert np.array_equal(blend_colour(shape, colour, 0.0)[:, 2:], np.zeros((2, 3)))
    with pytest.raises(ValueError):
        blend_colour(shape, colour, -1.0)


# -------------------------------------------------------------------------------- generation


def garment28() -> np.ndarray:
    img = np.zeros((28, 28), dtype=np.uint8)
    img[4:24, 8:20] = 200
    img[6:10, 4:24] = 160
    return img


def test_dye_tints_from_white_towards_the_colour() -> None:
    rgb, alpha = dye(np.array([[0, 255, 64]], dtype=np.uint8), (200.0, 30.0, 40.0))
    assert rgb[0, 0] == pytest.approx([255, 255, 255])
    assert rgb[0, 1] == pytest.approx([200, 30, 40])
    assert alpha[0].tolist() == pytest.approx([0.0, 1.0, 1.0])


def test_shots_are_deterministic_and_differ_by_seed() -> None:
    a = [shopper_shot(np.random.default_rng(3)) for _ in range(2)]
    assert a[0] == a[1]
    assert shopper_shot(np.random.default_rng(4)) != a[0]
    colour = dyed_colours(np.random.default_rng(3), "red")
    assert colour == dyed_colours(np.random.default_rng(3), "red")
    one, two = render(garment28(), colour, a[0]), render(garment28(), colour, a[1])
    assert hashlib.sha256(one.tobytes()).digest() == hashlib.sha256(two.tobytes()).digest()


def test_shop_extra_shots_vary_but_stay_in_the_studio() -> None:
    rng = np.random.default_rng(5)
    shots = [shop_extra_shot(rng) for _ in range(50)]
    assert len(set(shots)) == 50
    assert all(0.7 <= s.scale <= 1.0 and abs(s.tilt) <= 10 and min(s.background) >= 211
               and s.jpeg is not None and s.jpeg >= 85 for s in shots)
    assert all(abs(s.dx) * s.size[0] <= (1 - s.scale) / 2 * min(s.size) + 1e-9 for s in shots)  # in frame
    img = np.asarray(render(garment28(), DYES["black"], shots[0]))
    assert img.shape == (shots[0].size[1], shots[0].size[0], 3)
    assert img[0, 0].min() > 190


def test_catalog_shot_of_black_dye_is_a_dark_garment_centred_on_white() -> None:
    img = np.asarray(render(garment28(), DYES["black"], catalog_shot()))
    assert img.shape == (224, 224, 3)
    assert (img[:8, :8] == 255).all()
    assert img[112, 112].max() < 80


def test_shopper_shot_places_the_garment_where_told() -> None:
    shot = Shot(size=(300, 200), scale=0.5, dx=0.2, dy=0.0, background=(160, 160, 160))
    img = np.asarray(render(garment28(), DYES["red"], shot)).astype(int)
    garment = np.abs(img - 160).max(-1) > 30
    cols = np.flatnonzero(garment.any(0))
    assert abs((cols[0] + cols[-1]) / 2 - (150 + 0.2 * 300)) < 4
    assert (img[0, 0] == 160).all()


# ------------------------------------------------------------------------------------ metrics


def test_label_precision_counts_matches_in_the_first_k() -> None:
    got = label_precision(["red", "navy"], [["red", "navy", "red"], ["red"]], 2)
    assert got.tolist() == pytest.approx([0.5, 0.0])
    both = label_precision([(1, "red")], [[(1, "red"), (1, "navy"), (2, "red"), (1, "red")]], 4)
    assert both.tolist() == pytest.approx([0.5])
    assert label_precision(["a"], [["a"]], 10).tolist() == pytest.approx([0.1])  # missing places count


def test_refind_recall() -> None:
    ranked = np.array([[4, 2, 7], [1, 0, 3], [9, 8, 6]])
    targets = np.array([4, 0, 5])
    assert refind_recall(ranked, targets, 1) == pytest.approx(1 / 3)
    assert refind_recall(ranked, targets, 2) == pytest.approx(2 / 3)
    assert refind_recall(ranked, targets, 3) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        refind_recall(ranked, targets[:2], 1)


# ---------------------------------------------------------------------------- robust projection


def test_robust_blend_learns_to_ignore_what_augmentation_changes() -> None:
    rng = np.random.default_rng(0)
    n, d = 120, 12
    y = np.repeat(np.arange(3), n // 3)
    x = rng.normal(0, 1, (n, d))
    x[:, 0] += 3.0 * y  # the category lives on axis 0
    nuisance = np.zeros(d)
    nuisance[1] = 1.0
    # A shopper's view moves a garment along axis 1 (say, the background), a lot.
    views = x + rng.normal(0, 6.0, (n, 1)) * nuisance
    plain = fit_blend(x, y, weight=1.0, pca_dim=d, shrinkage=0.1)
    robust = fit_robust_blend(x, y, views, y, weight=1.0, pca_dim=d, shrinkage=0.1)
    assert robust.key != plain.key and robust.lda.params["augmented"] == n

    def lda_sensitivity(proj: BlendProjection) -> float:
        m = proj.lda.matrix  # rows: input dims (after L2); how much axis 1 moves the LDA part
        return float(np.linalg.norm(m[1]) / np.linalg.norm(m[0]))

    assert lda_sensitivity(robust) < 0.5 * lda_sensitivity(plain)


# --------------------------------------------------------------------- old policies are unchanged


@pytest.mark.parametrize(("key", "size", "digest"), [
    ("torchvision@1", (300, 200), "d54508983580c976"),
    ("torchvision@1", (97, 333), "d3e06e171f5847f1"),
    ("pad-square@1", (300, 200), "b0d7241e238b9715"),
    ("pad-square@1", (97, 333), "e7e934f16f840720"),
    ("pad-margin@1", (300, 200), "c4e0d8f8c6847d5b"),
    ("pad-margin@1", (97, 333), "61ed1e1acd02e4fc"),
])
def test_existing_policies_give_the_same_arrays_as_before_framing(key: str, size: tuple[int, int],
                                                                 digest: str) -> None:
    """Digests recorded with the policies as they were before frame-margin@1 was added."""
    w, h = size
    x = np.arange(w)[None, :] * np.ones((h, 1), dtype=int)
    yy = np.arange(h)[:, None] * np.ones((1, w), dtype=int)
    img = Image.fromarray(np.stack([x * 255 // (w - 1), yy * 255 // (h - 1), (x * 7 + yy * 3) % 256],
                                   -1).astype(np.uint8))
    assert hashlib.sha256(get_policy(key).to_array(img).tobytes()).hexdigest()[:16] == digest


def test_garment_invariant_half_damps_what_views_change_and_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n, d = 90, 10
    y = np.repeat(np.arange(3), n // 3)
    x = rng.normal(0, 1, (n, d))
    x[:, 0] += 3.0 * y
    shift = np.zeros(d)
    shift[2] = 1.0
    views = np.vstack([x + rng.normal(0, 5.0, (n, 1)) * shift for _ in range(2)])
    of = np.tile(np.arange(n), 2)
    proj = fit_robust_blend(x, y, views, np.tile(y, 2), weight=1.0, pca_dim=d, shrinkage=0.1,
                            augmented_of=of, invariant_dim=d - 1, invariant_shrinkage=0.5)
    assert proj.visual is not None and proj.output_dim == 2 + d - 1
    # A view moved along axis 2 stays next to its own garment in the invariant space, and
    # further from it in the plain cosine space of fit_robust_blend without the invariant half.
    plain = fit_robust_blend(x, y, views, np.tile(y, 2), weight=1.0, pca_dim=d, shrinkage=0.1)
    for space in (proj, plain):
        assert np.allclose(np.linalg.norm(space(x), axis=1), 1.0)

    def refound(space: BlendProjection) -> float:
        z, q = space(x), space(views)
        dist = ((q[:, None, :] - z[None, :, :]) ** 2).sum(-1)
        return float((dist.argmin(1) == of).mean())

    assert refound(proj) > refound(plain)
    path = tmp_path / "projection.npz"
    save_blend(path, proj, "model/frame-margin@1")
    loaded, key = load_blend(path)
    assert key == "model/frame-margin@1" and loaded.key == proj.key
    assert np.allclose(loaded(x), proj(x))
    with pytest.raises(ValueError, match="augmented_of"):
        fit_robust_blend(x, y, views, np.tile(y, 2), weight=1.0, pca_dim=d, invariant_dim=4)


def test_a_blend_without_the_invariant_half_keeps_its_key_and_vectors() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, (40, 6))
    y = np.repeat(np.arange(2), 20)
    blend = fit_blend(x, y, weight=1.0, pca_dim=5)
    text = f"{blend.lda.key}/{blend.weight!r}"
    assert blend.key == f"blend-{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    expected = np.hstack([blend.lda(x), x / np.linalg.norm(x, axis=1, keepdims=True)]) / np.sqrt(2.0)
    assert np.allclose(blend(x), expected)
    assert "visual_matrix" not in blend.to_dict()
