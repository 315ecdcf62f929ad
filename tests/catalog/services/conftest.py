"""Service tests run in-process with the real engine; nothing is sent to a broker."""

from __future__ import annotations

import pytest

from tests.pipeline.helpers import fashion_images


@pytest.fixture(autouse=True)
def fresh_matrix(settings, tmp_path):
    """Each test gets its own empty matrix directory (and this process forgets its copy)."""
    from catalog import engine

    settings.LOOKALIKE_MATRIX_DIR = tmp_path / "matrix"
    engine.matrix_forget()
    yield settings.LOOKALIKE_MATRIX_DIR
    engine.matrix_forget()


@pytest.fixture(scope="session")
def garments(model_path) -> list[tuple[str, bytes]]:
    """20 Fashion-MNIST garments (2 per class) as 224 px PNGs; the model cache exists."""
    return fashion_images(2)


@pytest.fixture
def make_products(garments):
    """Create n products through the service (queued callbacks are discarded)."""
    from catalog.services.products import product_create
    from tests.pipeline.helpers import upload

    def make(n: int, start: int = 0):
        return [
            product_create(name=f"{cls} {i}", category=cls, image=upload(data, f"g{i}.png"))
            for i, (cls, data) in enumerate(garments[start : start + n], start=start)
        ]

    return make


@pytest.fixture(autouse=True)
def _sends_recorded(no_broker):
    """Callbacks run by ``django_capture_on_commit_callbacks(execute=True)`` send nothing."""
    return no_broker
