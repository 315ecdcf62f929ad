"""What a stored vector is and what made it: pure helpers read from settings only.

Nothing here touches the database or builds an engine object, so every other catalog module
can import it (the dependency chain is vectors → space → engine → services/selectors).
"""

from __future__ import annotations

import hashlib

import numpy as np
from django.conf import settings

from similarity import (
    COLOUR_DIM,
    COLOUR_KEY,
    EMBEDDING_DIM,
    PRECISIONS,
    ImageLimits,
    ModelIdentity,
    Precision,
    get_policy,
)


def image_limits() -> ImageLimits:
    """The upload limits of the settings, as the engine wants them."""
    return ImageLimits(
        max_bytes=settings.LOOKALIKE_MAX_UPLOAD_BYTES,
        max_pixels=settings.LOOKALIKE_MAX_IMAGE_PIXELS,
    )


def policy_key() -> str:
    return get_policy(settings.LOOKALIKE_PREPROCESS_POLICY).key


def vector_key_current() -> str:
    """What a current vector is keyed by: ``<model key>/<policy key>+<colour key>`` (no model
    load needed). The embed step stores the vector and the garment's colour descriptor
    together, so a product embedded before the colour descriptor existed (or under another
    version of it) is stale like one of another model or policy, and the rebuild migrates it."""
    return f"{model_identity().key}/{policy_key()}+{COLOUR_KEY}"


def embed_precision() -> Precision:
    """``LOOKALIKE_EMBED_PRECISION``, checked."""
    precision = settings.LOOKALIKE_EMBED_PRECISION
    if precision not in PRECISIONS:
        raise ValueError(f"LOOKALIKE_EMBED_PRECISION must be one of {PRECISIONS}, got {precision!r}")
    return precision


def model_identity() -> ModelIdentity:
    """The embedding model of the settings."""
    return ModelIdentity(precision=embed_precision())


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def vector_to_bytes(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").reshape(EMBEDDING_DIM).tobytes()


def vector_from_bytes(data: bytes | memoryview) -> np.ndarray:
    return np.frombuffer(bytes(data), dtype="<f4").reshape(EMBEDDING_DIM)


def colour_to_bytes(colour: np.ndarray) -> bytes:
    return np.ascontiguousarray(colour, dtype="<f4").reshape(COLOUR_DIM).tobytes()


def colour_from_bytes(data: bytes | memoryview | None, key: str) -> np.ndarray:
    """A stored colour descriptor, or zeros when there is none of the current version (the
    colour half then adds the same to every distance: shape alone ranks that product)."""
    raw = b"" if data is None else bytes(data)
    if key != COLOUR_KEY or len(raw) != COLOUR_DIM * 4:
        return np.zeros(COLOUR_DIM, dtype=np.float32)
    return np.frombuffer(raw, dtype="<f4").reshape(COLOUR_DIM)
