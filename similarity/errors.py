"""Typed errors raised by the engine. Every message names what was wrong."""

from __future__ import annotations


class SimilarityError(Exception):
    """Base class for every error the engine raises on purpose."""


class WeightsError(SimilarityError):
    """The weights file is missing, altered, foreign or unsafe."""


class ImageRejected(SimilarityError):
    """An image cannot be used. ``reason`` is a stable machine-readable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Rebuildable from its arguments, so it survives Celery's result serialisation.
        return (type(self), (self.reason, self.message))


class MatrixError(SimilarityError):
    """The distance matrix cannot be read, written or changed as asked."""


class MatrixFullError(MatrixError):
    """Adding would exceed the configured size limit."""


class StaleMatrixError(MatrixError):
    """The stored matrix was built with other weights, policy or metric."""


class ModelCacheError(SimilarityError):
    """The converted model cache is missing or does not match the weights."""
