"""Shared helpers for the benchmarks: medians of repeated runs."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path


def median_seconds(fn: Callable[[], object], *, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def data_dir() -> Path:
    """The product's data directory, as its settings declare it."""
    from config.settings import base

    return Path(base.LOOKALIKE_DATA_DIR)


def model_dir() -> Path:
    """The converted model's directory, as the product's settings declare it."""
    from config.settings import base

    return Path(base.LOOKALIKE_MODEL_DIR)
