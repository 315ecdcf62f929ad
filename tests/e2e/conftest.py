"""End-to-end fixtures. The real broker and worker come from tests/worker_fixtures.py."""

from __future__ import annotations

import numpy as np
import pytest

from tests.pipeline.helpers import fashion_images, png_bytes


@pytest.fixture(autouse=True)
def fresh_caches():
    """An empty rate-limit cache and search index around every test."""
    from django.core.cache import cache

    from catalog.selectors.photo_search import search_index_clear

    cache.clear()
    search_index_clear()
    yield
    cache.clear()
    search_index_clear()


@pytest.fixture(scope="session")
def garments(model_path) -> list[tuple[str, bytes]]:
    """20 Fashion-MNIST garments (train split, 2 per class) as dark-on-white 224 px PNGs."""
    return fashion_images(2)


@pytest.fixture(scope="session")
def query_garments() -> list[tuple[str, bytes]]:
    """One garment of each class from the test split: never in any catalog."""
    from similarity.evaluation import fashion_mnist

    images, labels = fashion_mnist.load_split("test")
    return [
        (name, png_bytes(fashion_mnist.to_photo(images[np.flatnonzero(labels == c)[0]], 224)))
        for c, name in enumerate(fashion_mnist.CLASS_NAMES)
    ]
