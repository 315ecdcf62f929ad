"""Fast CPU inference with LiteRT, from the converted model in the cache.

Only the conversion imports TensorFlow; a process that finds the cache (a web worker
embedding one query image, say) runs on LiteRT alone.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from similarity.errors import ModelCacheError
from similarity.model.cache import cached_model_path, check_cached, ensure_model
from similarity.model.spec import DEFAULT_PRECISION, EMBEDDING_DIM, INPUT_SHAPE, ModelIdentity, Precision
from similarity.model.weights import default_weights_path, verify_weights


def default_threads() -> int:
    """LiteRT threads when none are asked for: the cores, at most 4."""
    return min(os.cpu_count() or 1, 4)


class LiteRTEmbedder:
    """Embeds preprocessed batches (N, 224, 224, 3) float32 into (N, 1280) float32.

    ``precision`` picks the cached model: "fp32" (the default) or "int8" (quantised, float
    input and output, see similarity.model.quantize).
    """

    def __init__(
        self,
        cache_dir: Path,
        *,
        precision: Precision = DEFAULT_PRECISION,
        num_threads: int | None = None,
        batch_size: int = 64,
        convert_if_missing: bool = True,
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter

        identity = ModelIdentity(precision=precision)
        verify_weights_once()
        if convert_if_missing:
            path = ensure_model(cache_dir, identity)
        else:
            path = cached_model_path(cache_dir, identity)
            if not check_cached(path, path.with_suffix(".json"), identity):
                raise ModelCacheError(
                    f"{path}: converted model missing or stale; run 'python -m similarity prepare'"
                )
        self.identity = identity
        self.batch_size = batch_size
        self.num_threads = num_threads or default_threads()
        self._interpreter = Interpreter(model_path=str(path), num_threads=self.num_threads)
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._allocated_batch = 0
        self._lock = threading.Lock()  # an interpreter is not thread-safe

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if batch.shape[0] != self._allocated_batch:
            self._interpreter.resize_tensor_input(self._input, list(batch.shape))
            self._interpreter.allocate_tensors()
            self._allocated_batch = batch.shape[0]
        self._interpreter.set_tensor(self._input, batch)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output).copy()

    def embed(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[1:] != INPUT_SHAPE:
            raise ValueError(f"expected a batch of shape (N, 224, 224, 3), got {images.shape}")
        out = np.empty((images.shape[0], EMBEDDING_DIM), dtype=np.float32)
        with self._lock:
            for start in range(0, images.shape[0], self.batch_size):
                chunk = images[start : start + self.batch_size]
                out[start : start + chunk.shape[0]] = self._run(chunk)
        return out


_verified = False


def verify_weights_once() -> None:
    """Vectors are keyed by the weights' hash, so check the installed file once per process."""
    global _verified
    if not _verified:
        verify_weights(default_weights_path())
        _verified = True
