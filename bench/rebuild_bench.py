"""How long the full rebuild of a colour catalog takes, step by step, in one process.

    LOOKALIKE_DATA_DIR=/tmp/rebuild-bench LOOKALIKE_MODEL_DIR=var/models \\
    LOOKALIKE_LOCK_URL=redis://127.0.0.1:6379/11 python -m bench.rebuild_bench [--n 2000]

A fresh SQLite database in ``$LOOKALIKE_DATA_DIR`` (which must not exist yet) gets ``--n``
products: dyed Fashion-MNIST garments (similarity/evaluation/shots.py, 8 dyes, every class alike),
shot the shop's way, written directly (no broker). Then ``similarity_rebuild`` runs in this
process under the settings' configuration (default: frame-margin@1, the robust projection on
``LOOKALIKE_PROJECTION_VIEWS`` augmented views, colour weight ``LOOKALIKE_COLOUR_WEIGHT``): embed
every product (vector + colour descriptor), embed the views, fit, build the matrix, write every
list. Prints the seconds of each step and the in-sample / held-out figures of
``evaluate_similarity``. The index writer's lock needs Redis (``LOOKALIKE_LOCK_URL``).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

from bench.common import django_migrated


def _setup(data_dir: Path) -> None:
    if data_dir.exists():
        raise SystemExit(f"{data_dir} exists: give a fresh LOOKALIKE_DATA_DIR")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    django_migrated()


def _products(n: int) -> None:
    from django.core.files.base import ContentFile

    from catalog.models import Product
    from similarity.evaluation.fashion_mnist import CLASS_NAMES, balanced_indices, load_split
    from similarity.evaluation.shots import DYE_NAMES, DYES, catalog_shot, render

    images, labels = load_split("train")
    picks = balanced_indices(labels, n // len(CLASS_NAMES))
    for j, i in enumerate(picks.tolist()):
        dye = DYE_NAMES[j % len(DYE_NAMES)]
        buf = io.BytesIO()
        render(images[i], DYES[dye], catalog_shot()).save(buf, format="PNG")
        cls = CLASS_NAMES[int(labels[i])]
        Product.objects.create(name=f"{dye} {cls} {j}", slug=f"g-{j}", category=cls,
                               image=ContentFile(buf.getvalue(), name=f"g{j}.png"))
    assert Product.objects.count() == len(picks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="products (a multiple of 10)")
    args = parser.parse_args(argv)
    _setup(Path(os.environ.get("LOOKALIKE_DATA_DIR", "var")).resolve())
    from django.conf import settings
    from django.core.management import call_command

    from catalog.services.rebuild import similarity_rebuild

    _products(args.n)
    print(f"{args.n} products; policy {settings.LOOKALIKE_PREPROCESS_POLICY}, "
          f"space {settings.LOOKALIKE_SPACE}, colour weight {settings.LOOKALIKE_COLOUR_WEIGHT}, "
          f"views {settings.LOOKALIKE_PROJECTION_VIEWS}",
          flush=True)
    seen: dict[str, float] = {}
    start = time.perf_counter()

    def progress(step: str, done: int, total: int) -> None:
        seen.setdefault(step, time.perf_counter())

    run = similarity_rebuild(trigger="bench", progress=progress)
    end = time.perf_counter()
    steps = sorted(seen.items(), key=lambda kv: kv[1])
    for (step, t0), (_, t1) in zip(steps, [*steps[1:], ("end", end)], strict=True):
        print(f"  {step}: {t1 - t0:.1f} s", flush=True)
    print(f"rebuild of {args.n}: {end - start:.1f} s ({run.message})", flush=True)
    t0 = time.perf_counter()
    call_command("evaluate_similarity")
    print(f"evaluate_similarity: {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
