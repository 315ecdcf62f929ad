"""catalog.engine.embed_threads: the setting first, then the worker pool's share of the cores."""

from __future__ import annotations

import pytest

from catalog import engine
from similarity.embedding.runtime import default_threads


@pytest.fixture
def pool_size():
    before = engine._worker_pool["size"]
    yield engine.worker_pool_size_set
    engine.worker_pool_size_set(before)


def test_outside_a_worker_litert_keeps_its_default(settings, pool_size):
    settings.LOOKALIKE_EMBED_THREADS = 0
    pool_size(0)
    assert engine.embed_threads() is None


def test_a_pool_child_takes_the_cores_shared_out_among_the_children(settings, pool_size):
    settings.LOOKALIKE_EMBED_THREADS = 0
    pool_size(2)
    assert engine.embed_threads() == max(1, default_threads() // 2)
    pool_size(64)
    assert engine.embed_threads() == 1


def test_the_setting_wins_over_the_pool_share(settings, pool_size):
    settings.LOOKALIKE_EMBED_THREADS = 3
    pool_size(2)
    assert engine.embed_threads() == 3
