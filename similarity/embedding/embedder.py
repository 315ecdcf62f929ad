"""From image files or bytes to vectors: load, preprocess under a policy, embed with LiteRT."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from similarity.embedding.colour import COLOUR, ColourVersion
from similarity.embedding.framing import Framing
from similarity.embedding.images import DEFAULT_LIMITS, ImageLimits, load_image, to_rgb
from similarity.embedding.preprocess import DEFAULT_POLICY_NAME, PreprocessPolicy, get_policy, prepare
from similarity.embedding.runtime import LiteRTEmbedder
from similarity.errors import ImageRejected
from similarity.model.spec import DEFAULT_PRECISION, EMBEDDING_DIM, ModelIdentity, Precision

Source = bytes | str | os.PathLike[str]
_PREPARE_THREADS = min(4, os.cpu_count() or 1)



@dataclass(frozen=True)
class Prepared:
    """One source after loading: a model-ready array (and, when asked for, the garment's
    colour descriptor from the same decoded picture), or the reason it was refused."""

    array: np.ndarray | None
    error: ImageRejected | None
    colour: np.ndarray | None = None


def stack_prepared(prepared: Sequence[Prepared]) -> np.ndarray:
    """The arrays as one (N, 224, 224, 3) batch; the first refused image raises its error."""
    arrays = []
    for item in prepared:
        if item.array is None:
            raise item.error or ImageRejected("unknown", "image was not prepared")
        arrays.append(item.array)
    return np.stack(arrays)


class ImageEmbedder:
    """Embeds images under one preprocessing policy; vectors are keyed by ``model.key``.

    ``model_dir`` is the converted model's cache (see similarity.model.cache).
    ``precision`` picks the converted model: "fp32" (default) or "int8" (quantised; its own
    model key, so vectors made under the other precision are stale). ``colour``: the version of
    the colour descriptor that ``prepare_many(..., colour=True)`` computes.
    """

    def __init__(
        self,
        *,
        model_dir: Path,
        policy: str | PreprocessPolicy = DEFAULT_POLICY_NAME,
        limits: ImageLimits = DEFAULT_LIMITS,
        precision: Precision = DEFAULT_PRECISION,
        num_threads: int | None = None,
        batch_size: int = 64,
        colour: ColourVersion = COLOUR,
    ) -> None:
        self.policy = get_policy(policy) if isinstance(policy, str) else policy
        self.colour = colour
        self.limits = limits
        self.batch_size = batch_size
        self._executor: ThreadPoolExecutor | None = None
        self._runtime = LiteRTEmbedder(
            model_dir,
            precision=precision,
            num_threads=num_threads,
            batch_size=batch_size,
        )

    @property
    def model(self) -> ModelIdentity:
        return self._runtime.identity

    @property
    def num_threads(self) -> int:
        return self._runtime.num_threads

    def _prepare_one(self, source: Source) -> Prepared:
        try:
            return Prepared(prepare(source, policy=self.policy, limits=self.limits), None)
        except ImageRejected as exc:
            return Prepared(None, exc)

    def _prepare_with_colour(self, source: Source) -> Prepared:
        """One decode: the policy's array and the colour descriptor of the same picture (one
        framing for both when the policy frames as the colour descriptor does)."""
        try:
            img = to_rgb(load_image(source, limits=self.limits, draft_size=self.policy.draft_size))
        except ImageRejected as exc:
            return Prepared(None, exc)
        framing = self.policy.find_garment(img) if self.policy.framed_geometry is not None else None
        return Prepared(self.policy.to_array(img, framing), None,
                        self.colour.describe(img, self._colour_framing(img, framing)))

    def _colour_framing(self, img: Image.Image, framing: Framing | None) -> Framing:
        """The policy's framing when the colour version reads that very one, else its own."""
        if framing is not None and self.colour.reads(self.policy.work_side, self.policy.reducing_gap):
            return framing
        return self.colour.find_garment(img)

    def prepare_many(self, sources: Sequence[Source], *, colour: bool = False) -> list[Prepared]:
        """Load and preprocess in threads: Pillow releases the GIL while decoding and resizing.
        With ``colour``, each item also carries the colour descriptor (similarity/embedding/colour.py)."""
        one = self._prepare_with_colour if colour else self._prepare_one
        if len(sources) <= 1:
            return [one(s) for s in sources]
        return list(self._pool().map(one, sources))

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=_PREPARE_THREADS, thread_name_prefix="prepare")
        return self._executor

    def embed_arrays(self, arrays: np.ndarray) -> np.ndarray:
        return self._runtime.embed(arrays)

    def embed(self, source: Source) -> np.ndarray:
        """One image → (1280,) float32. Raises ImageRejected for a bad image."""
        return self._runtime.embed(prepare(source, policy=self.policy, limits=self.limits)[None])[0]

    def embed_with_colour(self, source: Source) -> tuple[np.ndarray, np.ndarray]:
        """One image → ((1280,) vector, (COLOUR_DIM,) colour descriptor), decoded once.
        Raises ImageRejected for a bad image."""
        item = self._prepare_with_colour(source)
        if item.array is None or item.colour is None:
            raise item.error or ImageRejected("unknown", "image was not prepared")
        return self._runtime.embed(item.array[None])[0], item.colour

    def embed_many(self, sources: Sequence[Source]) -> np.ndarray:
        """Images → (N, 1280) float32 in input order; the first bad image raises."""
        out = np.empty((len(sources), EMBEDDING_DIM), dtype=np.float32)
        for start in range(0, len(sources), self.batch_size):
            chunk = sources[start : start + self.batch_size]
            out[start : start + len(chunk)] = self._runtime.embed(stack_prepared(self.prepare_many(chunk)))
        return out
