"""What the embedding model is: its input and output shapes, precisions, and the identity
(weights hash, versions) every converted model and every vector it makes are keyed by."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from similarity.model.weights import WEIGHTS_SHA256

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
