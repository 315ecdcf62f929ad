"""Fast CPU inference with LiteRT, from a converted model cached on disk.

Only the conversion imports TensorFlow; a process that finds the cache (a web worker
embedding one query image, say) runs on LiteRT alone.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from similarity.atomic import atomic_file
from similarity.errors import ModelCacheError
from similarity.weights import WEIGHTS_SHA256, verify_weights

# Bump when the network, the conversion or anything else that changes the vectors changes.
MODEL_VERSION = 1
# Bump when the int8 quantisation (recipe, calibration images, seed) changes: int8 vectors
# become stale, fp32 ones do not.
QUANT_VERSION = 1
EMBEDDING_DIM = 1280
INPUT_SHAPE = (224, 224, 3)

Precision = Literal["fp32", "int8"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
DEFAULT_PRECISION: Precision = "fp32"


@dataclass(frozen=True)
class ModelIdentity:
    """What a converted model and every vector it makes are keyed by.

    ``key`` is ``mobilenet_v2-<weights sha256[:16]>-v<MODEL_VERSION>`` for fp32 (the key
    vectors had before int8 existed, so they stay current) and
    ``...-v<MODEL_VERSION>-int8q<QUANT_VERSION>`` for int8.
    """

    weights_sha256: str = WEIGHTS_SHA256
    version: int = MODEL_VERSION
    precision: Precision = DEFAULT_PRECISION
    quant_version: int = QUANT_VERSION

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; use one of {', '.join(PRECISIONS)}")

    @property
    def key(self) -> str:
        base = f"mobilenet_v2-{self.weights_sha256[:16]}-v{self.version}"
        return base if self.precision == "fp32" else f"{base}-{self.precision}q{self.quant_version}"

    def manifest(self) -> dict[str, object]:
        """What a cached model's manifest must record (besides the model file's own hash)."""
        record: dict[str, object] = {
            "weights_sha256": self.weights_sha256,
            "version": self.version,
            "precision": self.precision,
        }
        if self.precision != "fp32":
            record["quant_version"] = self.quant_version
        return record


def _atomic_write(path: Path, data: bytes) -> None:
    with atomic_file(path) as handle:
        handle.write(data)


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_model_path(cache_dir: Path, identity: ModelIdentity = ModelIdentity()) -> Path:
    return Path(cache_dir) / f"{identity.key}.tflite"


def _check_cached(model: Path, manifest: Path, identity: ModelIdentity) -> bool:
    """True if the cached model exists and its manifest vouches for it; False if absent."""
    if not model.exists() or not manifest.exists():
        return False
    try:
        meta = json.loads(manifest.read_text())
    except (OSError, ValueError) as exc:
        raise ModelCacheError(f"{manifest}: unreadable model manifest ({exc})") from exc
    if not isinstance(meta, dict):
        raise ModelCacheError(f"{manifest}: model manifest is not a JSON object")
    # Manifests written before int8 existed were all fp32 and do not say so.
    meta.setdefault("precision", "fp32")
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    expected = identity.manifest()
    return {k: meta.get(k) for k in expected} == expected and meta.get("model_sha256") == digest


def ensure_model(cache_dir: Path, identity: ModelIdentity = ModelIdentity()) -> Path:
    """Return the cached LiteRT model, converting it first (imports TensorFlow) if needed.

    The cache is keyed by the weights' hash, MODEL_VERSION and the precision (with
    QUANT_VERSION for int8), and a manifest records these and the model file's own hash, so
    a stale, damaged or other-precision cache is rebuilt, never used.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    model = cached_model_path(cache_dir, identity)
    manifest = model.with_suffix(".json")
    if _check_cached(model, manifest, identity):
        return model
    with _file_lock(cache_dir / ".convert.lock"):
        if _check_cached(model, manifest, identity):  # another process converted it
            return model
        from similarity.convert import convert_to_litert  # TensorFlow only from here

        data = convert_to_litert(precision=identity.precision)
        _atomic_write(model, data)
        record = {**identity.manifest(), "model_sha256": hashlib.sha256(data).hexdigest()}
        _atomic_write(manifest, json.dumps(record, indent=2).encode())
    return model


def default_threads() -> int:
    """LiteRT threads when none are asked for: the cores, at most 4."""
    return min(os.cpu_count() or 1, 4)


class LiteRTEmbedder:
    """Embeds preprocessed batches (N, 224, 224, 3) float32 into (N, 1280) float32.

    ``precision`` picks the cached model: "fp32" (the default) or "int8" (quantised, float
    input and output, see similarity.quantize).
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
            if not _check_cached(path, path.with_suffix(".json"), identity):
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
        from similarity.weights import default_weights_path

        verify_weights(default_weights_path())
        _verified = True
