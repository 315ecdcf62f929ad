"""The converted LiteRT model cached on disk: found and verified, or converted once.

Only a conversion imports TensorFlow (through similarity.model.convert); a process that
finds the cache runs on LiteRT alone.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from similarity.atomic import atomic_file
from similarity.errors import ModelCacheError
from similarity.model.spec import ModelIdentity


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


def check_cached(model: Path, manifest: Path, identity: ModelIdentity) -> bool:
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
    if check_cached(model, manifest, identity):
        return model
    with _file_lock(cache_dir / ".convert.lock"):
        if check_cached(model, manifest, identity):  # another process converted it
            return model
        from similarity.model.convert import convert_to_litert  # TensorFlow only from here

        data = convert_to_litert(precision=identity.precision)
        _atomic_write(model, data)
        record = {**identity.manifest(), "model_sha256": hashlib.sha256(data).hexdigest()}
        _atomic_write(manifest, json.dumps(record, indent=2).encode())
    return model
