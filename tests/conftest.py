"""Shared fixtures: the real converted model cache and real images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

# The real Redis broker and the real Celery worker subprocess, shared by every package.
pytest_plugins = ["tests.worker_fixtures"]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The data directory whose models/ holds the converted model (built by `make model`)."""
    path = Path(os.environ.get("LOOKALIKE_DATA_DIR", REPO / "var"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def model_path(data_dir: Path) -> Path:
    from similarity.model.cache import ensure_model

    return ensure_model(data_dir / "models")


@pytest.fixture(scope="session")
def skimage_photos() -> dict[str, np.ndarray]:
    """scikit-image's sample photos with known ImageNet classes."""
    from skimage import data

    return {"chelsea": data.chelsea(), "coffee": data.coffee()}


# --- Django test database and storage (added by the catalog/workers side) -------------------


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    """SQLite tests use a file, not memory, so a real worker subprocess can open the same DB.

    PostgreSQL (DATABASE_URL) keeps pytest-django's ``test_<name>`` database.
    """
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        db.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("db") / "test.sqlite3")


@pytest.fixture(scope="session", autouse=True)
def lookalike_storage_dirs(tmp_path_factory) -> dict[str, Path]:
    """MEDIA_ROOT and the matrix directory in temp dirs for the whole session."""
    try:
        from django.conf import settings
        from django.test.utils import override_settings

        settings.INSTALLED_APPS  # noqa: B018 - raises if Django is not configured
    except Exception:  # Django not configured: engine-only test run
        yield {}
        return
    root = tmp_path_factory.mktemp("lookalike")
    dirs = {"MEDIA_ROOT": root / "media", "LOOKALIKE_MATRIX_DIR": root / "matrix"}
    for path in dirs.values():
        path.mkdir()
    override = override_settings(**dirs)
    override.enable()
    yield dirs
    override.disable()


@pytest.fixture(autouse=True)
def no_stored_category_vote(lookalike_storage_dirs):
    """A category vote a full rebuild stored in the session's matrix directory (a rebuild of
    one test's catalog) would make later tests' searches predict a category: every test starts
    and ends without one. Tests that want one store it themselves."""
    path = lookalike_storage_dirs.get("LOOKALIKE_MATRIX_DIR")
    if path is not None:
        (path / "category_vote.json").unlink(missing_ok=True)
    yield
    if path is not None:
        (path / "category_vote.json").unlink(missing_ok=True)
