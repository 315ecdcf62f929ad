"""What the benchmarks and experiments share: the repository root, the product's directories,
medians of repeated runs, the one-table format of ``make bench``, squared distances, garment
photo files and a throw-away SQLite catalog."""

from __future__ import annotations

import importlib.util
import io
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def median_seconds(fn: Callable[[], object], *, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def median_p95_ms(seconds: list[float]) -> dict[str, float]:
    """Median and 95th percentile, in milliseconds, of timings in seconds."""
    ms = sorted(s * 1e3 for s in seconds)
    return {"median_ms": statistics.median(ms), "p95_ms": ms[min(len(ms) - 1, int(0.95 * len(ms)))]}


def data_dir() -> Path:
    """The product's data directory, as its settings declare it."""
    return Path(product_settings().LOOKALIKE_DATA_DIR)


def model_dir() -> Path:
    """The converted model's directory, as the product's settings declare it."""
    return Path(product_settings().LOOKALIKE_MODEL_DIR)


def product_settings() -> ModuleType:
    """The product's settings as the environment declares them now (plain Python: its defaults,
    overridden by the environment). A private copy: importing config.settings.base would cache
    it, and a benchmark that points Django at its own database later in the same process would
    get the product's database instead."""
    spec = importlib.util.find_spec("config.settings.base")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def product_blend() -> dict[str, Any]:
    """The product's LDA-blend parameters (catalog/space.py), in the order the tables print."""
    from catalog import space

    return {"pca_dim": space.BLEND_PCA_DIM, "shrinkage": space.BLEND_SHRINKAGE,
            "weight": space.BLEND_WEIGHT}


def product_robust_blend() -> dict[str, Any]:
    """``product_blend`` plus the garment-invariant half the rebuild fits on augmented views."""
    from catalog import space

    return {**product_blend(), "invariant_dim": space.INVARIANT_DIM,
            "invariant_shrinkage": space.INVARIANT_SHRINKAGE}


def memory_status_kb() -> dict[str, int]:
    """This process's memory figures from /proc/self/status (VmHWM, VmRSS, RssAnon, ...), in KB.

    VmHWM is the peak RSS of this address space. ``ru_maxrss`` is not usable in a spawned
    process: Linux carries the forking parent's high-water mark across exec, so a child spawned
    by a big parent would report the parent's peak.
    """
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.startswith(("Vm", "Rss")):
            fields[key] = int(value.split()[0])
    return fields


def table(rows: list[dict]) -> str:
    """Benchmark rows (``benchmark``, ``figure``, ``ratio``) as ``make bench``'s markdown table."""
    lines = ["| benchmark | figure | ratio (same run) |", "|---|---|---|"]
    lines += [f"| {r['benchmark']} | {r['figure']} | {r['ratio']} |" for r in rows]
    return "\n".join(lines)


def sq_distances(queries: np.ndarray, catalog: np.ndarray) -> np.ndarray:
    """Squared euclidean (same order as euclidean), float64 throughout, as the notebook."""
    q = np.asarray(queries, dtype=np.float64)
    c = np.asarray(catalog, dtype=np.float64)
    return np.maximum((q * q).sum(1)[:, None] + (c * c).sum(1)[None, :] - 2.0 * q @ c.T, 0.0)


def photo_png(image28: np.ndarray) -> bytes:
    """A Fashion-MNIST garment as the PNG file of its 224 px photo."""
    from similarity.evaluation.fashion_mnist import to_photo

    buffer = io.BytesIO()
    to_photo(image28).save(buffer, "PNG")
    return buffer.getvalue()


def garment_jpegs(folder: Path, count: int) -> list[Path]:
    """The first ``count`` test garments written as 800x800 JPEG photos (what a shop uploads)."""
    from similarity.evaluation.fashion_mnist import load_split, to_photo

    images, _ = load_split("test")
    paths = []
    for i in range(count):
        path = folder / f"{i:04d}.jpg"
        to_photo(images[i], size=800).save(path, quality=90)
        paths.append(path)
    return paths


def shop_jpegs(folder: Path, count: int, size: int = 800) -> list[Path]:
    """``count`` dyed test garments shot the shop's way (every third) and the shopper's way,
    as ``size`` x ``size`` JPEG photos at quality 90 (similarity/evaluation/shots.py)."""
    from similarity.evaluation.fashion_mnist import load_split
    from similarity.evaluation.shots import DYE_NAMES, Shot, catalog_shot, dyed_colours, render, shopper_shot

    images, _ = load_split("test")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        shot = catalog_shot() if i % 3 == 0 else shopper_shot(rng)
        shot = Shot(size=(size, size), scale=shot.scale, dx=shot.dx, dy=shot.dy, tilt=shot.tilt,
                    background=shot.background, gradient=shot.gradient, noise=shot.noise, seed=shot.seed)
        path = folder / f"shop{i:04d}.jpg"
        render(images[i], dyed_colours(rng, DYE_NAMES[i % len(DYE_NAMES)]), shot).save(path, quality=90)
        paths.append(path)
    return paths


def sqlite_catalog_environment(tmp: Path) -> dict[str, str]:
    """The variables that point the product at a fresh SQLite catalog and media under ``tmp``."""
    return {
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": f"sqlite:///{tmp / 'bench.sqlite3'}",
        "LOOKALIKE_DATA_DIR": os.environ.get("LOOKALIKE_DATA_DIR", str(REPO / "var")),
        "MEDIA_ROOT": str(tmp / "media"),
    }


def django_migrated() -> None:
    """Set Django up in this process and create the catalog's tables."""
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
