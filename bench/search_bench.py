"""Search by photo at N = 10,000 through the real selector: a temporary SQLite catalog.

    python -m bench.search_bench [--quick]

Cold = the first search after the catalog changed (loads the vectors from the database);
warm = later searches (vectors cached in the process). The baseline in the same run is a
search that re-reads every vector from the database on each query.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from bench.common import django_migrated, median_seconds, photo_png, sqlite_catalog_environment

N = 10_000


def _setup_django(tmp: Path) -> None:
    os.environ.update(sqlite_catalog_environment(tmp))
    django_migrated()


def _catalog(n: int) -> np.ndarray:
    from django.utils import timezone

    from catalog.models import Product
    from catalog.vectors import vector_key_current

    rng = np.random.default_rng(0)
    vectors = np.abs(rng.normal(0.3, 0.4, (n, 1280))).astype("<f4")
    now = timezone.now()
    Product.objects.bulk_create(
        [Product(name=f"Garment {i}", slug=f"garment-{i}", category="Bench", image=f"products/{i}.png",
                 status=Product.Status.READY, vector=vectors[i].tobytes(),
                 vector_key=vector_key_current(), status_changed_at=now) for i in range(n)],
        batch_size=1000,
    )
    return vectors


def _query_png() -> bytes:
    from similarity.evaluation.fashion_mnist import load_split

    return photo_png(load_split("test")[0][0])


def run(quick: bool = False) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        _setup_django(Path(tmp))
        from catalog.engine import embedder_get
        from catalog.selectors import photo_search as selectors

        n = 2_000 if quick else N
        _catalog(n)
        query = _query_png()
        embedder_get()  # the model loads once per process, at first use
        repeats = 3 if quick else 7

        def cold() -> None:
            selectors.search_index_clear()
            selectors.products_search_by_image(image_bytes=query)

        cold_s = median_seconds(cold, repeats=repeats)
        warm_s = median_seconds(lambda: selectors.products_search_by_image(image_bytes=query),
                                repeats=repeats)
    return [
        {"benchmark": f"search by photo, N = {n:,}, first query after a catalog change",
         "figure": f"{cold_s * 1000:.0f} ms", "ratio": "1.00x (re-reads every vector)"},
        {"benchmark": f"search by photo, N = {n:,}, later queries (embed + rank)",
         "figure": f"{warm_s * 1000:.0f} ms", "ratio": f"{cold_s / warm_s:.1f}x faster than cold"},
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N = 2,000 and fewer repeats")
    for row in run(parser.parse_args().quick):
        print(row)
