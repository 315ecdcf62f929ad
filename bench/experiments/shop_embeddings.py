"""The shop-photo experiment's pictures rendered, embedded under a preprocessing policy and
described by their colour, with a disk cache keyed by the pictures, the policy, the model and
the code that makes them."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import model_dir
from bench.experiments.shop_pictures import PhotoSet, Picture
from similarity.embedding import colour, framing, preprocess
from similarity.embedding.colour import COLOUR_KEY, colour_descriptor
from similarity.embedding.preprocess import get_policy
from similarity.evaluation import fashion_mnist, shots
from similarity.evaluation.fashion_mnist import load_split, to_photo
from similarity.evaluation.shots import render, reshoot

CHUNK = 64


def _code_version() -> str:
    """A digest of the code that makes the pictures, the policies' pixels and the colours: cached
    vectors are only reused while it is unchanged."""
    digest = hashlib.sha256()
    for module in (shots, framing, preprocess, colour, fashion_mnist):
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()[:16]


_CODE_VERSION = _code_version()


class Photos:
    """Renders pictures, embeds them under a policy and describes their colour, with a disk cache."""

    def __init__(self, cache_dir: Path, log: Callable[[str], None]) -> None:
        from similarity.embedding.runtime import LiteRTEmbedder

        self._images = {split: load_split(split)[0] for split in ("train", "test")}
        self._model = LiteRTEmbedder(model_dir(), batch_size=CHUNK)
        self._model_key = self._model.identity.key
        self.cache_dir = cache_dir
        self.log = log
        self.embedded = 0
        self.seconds = 0.0

    def picture(self, p: Picture, size: int | None = None) -> Image.Image:
        image28 = self._images[p.split][p.index]
        if p.reshoot_of is not None and p.shot is not None:
            img = reshoot(self.picture(p.reshoot_of), p.shot)
            return img if size is None else img.resize((size, round(size * img.size[1] / img.size[0])))
        if p.shot is None:
            return to_photo(image28, size or 224)
        img = render(image28, p.colour, p.shot)
        return img if size is None else img.resize((size, round(size * img.size[1] / img.size[0])))

    def _cached(self, kind: str, key: str, photos: PhotoSet, compute: Callable[[Image.Image], np.ndarray],
                dim: int, batch: Callable[[list[np.ndarray]], np.ndarray] | None = None) -> np.ndarray:
        spec = [key, _CODE_VERSION, [p.spec() for p in photos.pictures]]
        digest = hashlib.sha256(json.dumps(spec).encode()).hexdigest()
        path = self.cache_dir / f"{kind}-{digest[:24]}.npy"
        if path.is_file():
            return np.load(path, allow_pickle=False)
        start = time.perf_counter()
        out = np.empty((len(photos), dim), dtype=np.float32)
        for i in range(0, len(photos), CHUNK):
            items = [compute(self.picture(p)) for p in photos.pictures[i : i + CHUNK]]
            out[i : i + len(items)] = batch(items) if batch is not None else np.stack(items)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, out)
        tmp.replace(path)
        self.seconds += time.perf_counter() - start
        self.log(f"    {kind} of {photos.name} ({len(photos)}) under {key}: "
                 f"{time.perf_counter() - start:.0f} s")
        return out

    def vectors(self, photos: PhotoSet, policy_key: str) -> np.ndarray:
        policy = get_policy(policy_key)
        self.embedded += len(photos)
        return self._cached("vec", f"{self._model_key}/{policy.key}", photos, policy.to_array, 1280,
                            lambda arrays: self._model.embed(np.stack(arrays)))

    def colours(self, photos: PhotoSet) -> np.ndarray:
        from similarity.embedding.colour import COLOUR_DIM

        return self._cached("colour", COLOUR_KEY, photos, colour_descriptor, COLOUR_DIM)

