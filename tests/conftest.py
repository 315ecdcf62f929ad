"""Shared fixtures: the real converted model cache and real images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The data directory whose models/ holds the converted model (built by `make model`)."""
    path = Path(os.environ.get("LOOKALIKE_DATA_DIR", REPO / "var"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def model_path(data_dir: Path) -> Path:
    from similarity.runtime import ensure_model

    return ensure_model(data_dir / "models")


@pytest.fixture(scope="session")
def skimage_photos() -> dict[str, np.ndarray]:
    """scikit-image's sample photos with known ImageNet classes."""
    from skimage import data

    return {"chelsea": data.chelsea(), "coffee": data.coffee()}
