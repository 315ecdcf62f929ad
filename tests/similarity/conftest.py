"""The int8 model, converted once per cache directory like the fp32 one (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def int8_model_path(data_dir: Path) -> Path:
    """The cached int8 model (its first conversion calibrates on garments: a few minutes)."""
    from similarity.model.cache import ensure_model
    from similarity.model.spec import ModelIdentity

    return ensure_model(data_dir / "models", ModelIdentity(precision="int8"))
