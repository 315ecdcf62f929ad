"""What a ``MatrixStore`` is configured with: ``MatrixMeta`` (what a stored index was computed
with) and ``StoreSettings``, the store's attributes its collaborators read.

The collaborators (loader, writer, publisher) hold the store itself and read these attributes
on every call, because the catalog changes ``layout``, ``max_deltas``, ``engine`` and
``fence`` after construction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from similarity.errors import MatrixError
from similarity.index.dense import METRICS


@dataclass(frozen=True)
class MatrixMeta:
    """What a stored matrix was computed with; a mismatch makes it stale."""

    weights_sha256: str
    policy: str
    metric: str

    def __post_init__(self) -> None:
        for name in ("weights_sha256", "policy", "metric"):
            if not isinstance(getattr(self, name), str):
                raise MatrixError(f"MatrixMeta.{name} must be a str")
        if self.metric not in METRICS:
            raise MatrixError(f"MatrixMeta.metric must be one of {METRICS}, got {self.metric!r}")


class StoreSettings(Protocol):
    """The ``MatrixStore`` attributes (see similarity.index.store) its collaborators read."""

    directory: Path
    meta: MatrixMeta
    k: int
    max_items: int
    dim: int
    max_deltas: int
    layout: str
    engine: str
    fence: Callable[[], None] | None
