"""The clean Fashion-MNIST quality experiment's data and inputs: the catalog and held-out query
split, the preprocessings compared (the notebook's, the registered policies, pad-square with a
margin) and the run's in-memory embeddings."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from bench.common import model_dir
from similarity.embedding.preprocess import INPUT_SIZE, PreprocessPolicy, get_policy
from similarity.evaluation.fashion_mnist import balanced_indices, load_split

K = 10
CHUNK = 128  # images prepared and embedded at a time (a 224x224x3 float32 batch is 77 MB)


@dataclass(frozen=True)
class Data:
    catalog: np.ndarray  # (N, 28, 28) uint8, light on black as in the dataset
    catalog_labels: np.ndarray
    queries: np.ndarray
    query_labels: np.ndarray
    folds: int


def load_data(quick: bool) -> Data:
    per_catalog, per_query = (40, 20) if quick else (200, 100)
    train_x, train_y = load_split("train")
    test_x, test_y = load_split("test")
    ci = balanced_indices(train_y, per_catalog)
    qi = balanced_indices(test_y, per_query)
    return Data(train_x[ci], train_y[ci].astype(np.int64), test_x[qi], test_y[qi].astype(np.int64),
                folds=4)


def notebook_array(img: Image.Image) -> np.ndarray:
    """The notebook's scaling: RGB / 255, no ImageNet mean/std (a plain resize to 224)."""
    img = img.convert("RGB")
    if img.size != (INPUT_SIZE, INPUT_SIZE):
        img = img.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32) / 255.0


def pad_with_margin(scale: float) -> Callable[[Image.Image], Image.Image]:
    """pad-square@1's picture, shrunk to ``scale`` of the side inside a white 224 square."""
    pad_square = get_policy("pad-square@1").geometry

    def geometry(img: Image.Image) -> Image.Image:
        side = round(INPUT_SIZE * scale)
        small = pad_square(img).resize((side, side), Image.Resampling.BILINEAR)
        canvas = Image.new("RGB", (INPUT_SIZE, INPUT_SIZE), (255, 255, 255))
        canvas.paste(small, ((INPUT_SIZE - side) // 2, (INPUT_SIZE - side) // 2))
        return canvas

    return geometry


def margin_policy(scale: float) -> PreprocessPolicy:
    # Not registered in similarity.embedding.preprocess: a candidate measured here only.
    return PreprocessPolicy(name=f"pad-square-margin-{scale:g}", version=0, geometry=pad_with_margin(scale),
                            draft_size=(INPUT_SIZE, INPUT_SIZE),
                            description=f"pad-square, then the garment at {scale:.0%} of a white square")


@dataclass(frozen=True)
class Input:
    key: str
    label: str
    to_array: Callable[[Image.Image], np.ndarray]


NOTEBOOK = Input("notebook", "/255 at 224 (notebook)", notebook_array)
TORCHVISION = Input("torchvision@1", "torchvision@1", get_policy("torchvision@1").to_array)
PAD_SQUARE = Input("pad-square@1", "pad-square@1", get_policy("pad-square@1").to_array)
MARGINS = tuple(
    Input(f"pad-square+margin{s:g}", f"pad-square, garment at {s:.1%}", margin_policy(s).to_array)
    for s in (0.875, 0.75)
)


class Embeddings:
    """Embeds images under an input once per run (kept in memory)."""

    def __init__(self) -> None:
        from similarity.embedding.runtime import LiteRTEmbedder

        self._model = LiteRTEmbedder(model_dir(), batch_size=64)
        self._cache: dict[tuple[str, str], np.ndarray] = {}
        self.images = 0
        self.seconds = 0.0

    def photos_vectors(self, inp: Input, what: str, photos: list[Image.Image]) -> np.ndarray:
        key = (inp.key, what)
        if key not in self._cache:
            start = time.perf_counter()
            out = np.empty((len(photos), 1280), dtype=np.float32)
            for i in range(0, len(photos), CHUNK):
                batch = np.stack([inp.to_array(p) for p in photos[i : i + CHUNK]])
                out[i : i + len(batch)] = self._model.embed(batch)
            self._cache[key] = out
            self.images += len(photos)
            self.seconds += time.perf_counter() - start
        return self._cache[key]

